"""``config.model`` → the Wyner model's networks (wyner-model.md §4): one hashable ``Arch``
that knows the network family ('mlp' feature vectors §4.3, 'conv' images §4.1, 'sentence'
image features ↔ captions §4.2) and builds each network by its role (F_x, g_y, D_F, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from wyner_jax import nets, text_nets


@dataclasses.dataclass(frozen=True)
class Arch:
    """Hashable architecture description built from ``config.model`` and the data shapes."""

    family: str
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    dz: int
    du: int
    dv: int
    prior: str
    sn: bool
    bn_momentum: float
    bn_epsilon: float
    enc_slope: float
    dec_slope: float
    enc_hidden: tuple[int, ...]
    enc_features: int
    dec_hidden: tuple[int, ...]
    dec_act: str
    dec_out_act: str
    disc_hidden: tuple[int, ...]
    disc_features: int
    disc_batchnorm: bool
    gen_batchnorm: bool
    conv_base: int
    disc_bn_first: bool
    head_hidden: int
    head_layers: int
    disc_slope: float
    joint_noise_dim: int = 0
    marginal_noise_dim: int = 0
    # Conv family: channels stop doubling after this many layers (-1: never), so the deeper
    # stacks of large images keep the 32-px family's widest layer (8·base, 3 doublings).
    conv_max_doublings: int = -1
    # family 'sentence' (x feature vectors, y token captions; §4.2): the text_nets widths.
    sentence: Any = None

    @classmethod
    def from_config(cls, m, x_shape, y_shape, vocab_size: int = 0) -> "Arch":
        if m.family not in ("mlp", "conv", "sentence"):
            raise ValueError(
                f"config.model.family must be 'mlp', 'conv' or 'sentence', got {m.family!r}."
            )
        sentence = None
        if m.family == "sentence":
            if len(x_shape) != 1 or len(y_shape) != 1:
                raise ValueError(
                    f"config.model.family='sentence' needs feature vectors x and token-id "
                    f"captions y, but the data has x {x_shape} and y {y_shape}; use caption "
                    "data (config.data.name='cub')."
                )
            if m.joint_encoder_noise_dim or m.marginal_encoder_noise_dim:
                raise ValueError(
                    "Encoder noise columns (config.model.*_encoder_noise_dim > 0) cannot be "
                    "appended to token ids; set them to 0 with family='sentence'."
                )
            sentence = text_nets.SentenceArch.from_config(m.sentence, vocab_size, y_shape[0])
        if m.family == "conv" and (len(x_shape) != 3 or len(y_shape) != 3):
            raise ValueError(
                f"config.model.family='conv' needs HWC images, but the data has x {x_shape} and "
                f"y {y_shape}; use family='mlp' or image data (config.data.flatten=False)."
            )
        if m.family == "conv" and (m.joint_encoder_noise_dim or m.marginal_encoder_noise_dim):
            raise ValueError(
                "Encoder noise columns (config.model.*_encoder_noise_dim > 0) need "
                "feature vectors; set them to 0 with family='conv'."
            )
        if m.prior not in ("gaussian", "uniform"):
            raise ValueError(
                f"config.model.prior must be 'gaussian' or 'uniform', got {m.prior!r}."
            )
        return cls(
            family=m.family,
            x_shape=tuple(x_shape),
            y_shape=tuple(y_shape),
            dz=m.dz,
            du=m.du,
            dv=m.dv,
            prior=m.prior,
            sn=m.sn_on_feature_layers,
            bn_momentum=m.bn_momentum,
            bn_epsilon=m.bn_epsilon,
            enc_slope=m.encoder_negative_slope,
            dec_slope=m.decoder_negative_slope,
            enc_hidden=tuple(m.mlp.encoder_hidden),
            enc_features=m.mlp.encoder_features,
            dec_hidden=tuple(m.mlp.decoder_hidden),
            dec_act=m.mlp.decoder_act,
            dec_out_act=m.mlp.decoder_out_act,
            disc_hidden=tuple(m.mlp.disc_hidden),
            disc_features=m.mlp.disc_features,
            disc_batchnorm=m.mlp.disc_batchnorm,
            gen_batchnorm=bool(m.mlp.get("generator_batchnorm", True)),
            conv_base=m.conv.base,
            disc_bn_first=m.conv.disc_batchnorm_first,
            head_hidden=m.disc.hidden_dim,
            head_layers=m.disc.n_hidden_layers,
            disc_slope=m.disc.negative_slope,
            joint_noise_dim=m.joint_encoder_noise_dim,
            marginal_noise_dim=m.marginal_encoder_noise_dim,
            conv_max_doublings=int(m.conv.get("max_doublings", -1)),
            sentence=sentence,
        )

    def bn(self) -> dict[str, float]:
        return dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)

    def token_embedding(self, name: str):
        """The generator's caption embedding (family 'sentence'), else None."""
        return self.sentence.embedding(name) if self.sentence else None

    def pair(self, x, y):
        """The input of a joint network: (x, y) for captions, else ``nets.concat_pair``."""
        return (x, y) if self.sentence else nets.concat_pair(x, y)

    def y_output(self, y):
        """Generated y as returned by inference: token ids (argmax) for captions."""
        return jnp.argmax(y, axis=-1).astype(jnp.int32) if self.sentence else y

    def encoder_feature_map(self, name: str, embedding=None) -> nn.Module:
        """F_x, F_y or F_xy (conv on the channel-concatenated pair for F_xy)."""
        if self.sentence:
            return self.sentence.encoder_feature_map(
                name, embedding, self.enc_slope, self.sn, self.bn()
            )
        if self.family == "conv":
            return nets.ConvEncoder(
                base=self.conv_base,
                negative_slope=self.enc_slope,
                max_doublings=self.conv_max_doublings,
                name=name,
                **self.bn(),
            )
        return nets.MLP(
            hidden=self.enc_hidden,
            features=self.enc_features,
            last_act="lrelu",
            negative_slope=self.enc_slope,
            batchnorm=self.gen_batchnorm,
            spectral_norm=self.sn,
            name=name,
            **self.bn(),
        )

    def decoder(self, out_shape, name: str, embedding=None) -> nn.Module:
        if self.sentence:
            return self.sentence.decoder(
                name[-1], out_shape, name, embedding, self.dec_slope, self.sn, self.bn()
            )
        if self.family == "conv":
            return nets.ConvDecoder(
                out_shape=out_shape,
                base=2 * self.conv_base,
                spectral_norm=self.sn,
                negative_slope=self.dec_slope,
                name=name,
                **self.bn(),
            )
        return nets.MLPDecoder(
            out_shape=out_shape,
            hidden=self.dec_hidden,
            act=self.dec_act,
            negative_slope=self.dec_slope if self.dec_act == "lrelu" else 0.0,
            batchnorm=self.gen_batchnorm,
            spectral_norm=self.sn,
            out_act=self.dec_out_act,
            name=name,
        )

    def discriminator_feature_map(self) -> nn.Module:
        """D_F(x, y): one shared joint feature map for every estimator (§2.1)."""
        if self.sentence:
            return self.sentence.discriminator_feature_map(self.disc_slope, self.sn, self.bn())
        if self.family == "conv":
            return nets.ConvEncoder(
                base=2 * self.conv_base,
                batchnorm=True,
                batchnorm_first=self.disc_bn_first,
                negative_slope=self.disc_slope,
                max_doublings=self.conv_max_doublings,
                name="D_F",
                **self.bn(),
            )
        return nets.MLP(
            hidden=self.disc_hidden,
            features=self.disc_features,
            last_act="lrelu",
            negative_slope=self.disc_slope,
            batchnorm=self.disc_batchnorm,
            batchnorm_first=False,
            spectral_norm=self.sn,
            name="D_F",
            **self.bn(),
        )
