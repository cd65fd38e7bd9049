"""IIAE's networks with a *flat* shared code (iiae.md §1.2–§1.3), ``config.iiae.shared_code
= 'flat'``, and the ``Arch`` that the other families (``spatial``, ``flat_fc``, ``sentence``)
extend. ``Arch`` builds each network by its role: the exclusive encoders q(z^x|x), q(z^y|y),
the r-trunks and r-heads of r(z^s|x), r(z^s|y), the joint encoder q(z^s|x,y), the decoders.

* 'mlp': the reference ZS-SBIR networks (§1.2) on flat vectors. Encoders
  Dense(h₁) → BN+LReLU → Dense(h₂) → BN+LReLU → Dense(2d) with (h₁, h₂) =
  ``config.iiae.hidden``; the r-trunk is the first block (h = its output), the r-head the
  rest; q(z^s|x,y) is Dense(``joint_hidden``) → BN+LReLU → Dense(2d) on concat(h_x, h_y);
  decoders Dense(``decoder_hidden``) → BN → ReLU → Dense(out).
* 'conv': the reference's image networks (§1.3) scaled down to small HWC images (8×8
  digits, 32×32). Choice: the *flat* shared code of the reference's Cars variant, not the
  spatial 8×8×128 z^s of its 256-px networks, because at 8×8 a spatial code would be a
  1×1 grid, and because the probes and retrieval compare vectors. Encoders: 4×4 stride-2
  "SAME" convolutions, channels ``conv_base``·2^i, each → BN+LReLU, down to 2×2, flattened
  (the trunk); q(z^x|x) adds Dense(2d); r(z^s|x) adds Dense(``conv_hidden``) → BN+LReLU →
  Dense(2d); q(z^s|x,y) is Dense(``joint_hidden``) → BN+LReLU → Dense(2d) on the two
  flattened trunks. Decoder: Dense to 4×4×C → BN → dropout → ReLU, then 4×4 stride-2
  transposed convolutions halving C (BN → dropout → ReLU, dropout on the first two) up to
  the image, channels from 2·``conv_base``, then the output activation.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn

from wyner_jax import nets
from wyner_jax.models.iiae.common import LRELU_SLOPE, conv4x4, down_blocks, widths


@dataclasses.dataclass(frozen=True)
class Arch:
    """Hashable architecture description built from ``config.iiae`` and the data shapes."""

    family: str
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    shared_dim: int
    exclusive_dim: int
    hidden: tuple[int, ...]
    joint_hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    conv_base: int
    conv_hidden: tuple[int, ...]
    decoder_dropout: float
    out_act_x: str
    out_act_y: str
    bn_momentum: float
    bn_epsilon: float

    @classmethod
    def from_config(cls, family: str, c, x_shape, y_shape, out_acts) -> "Arch":
        if family not in ("mlp", "conv"):
            raise ValueError(f"config.model.family must be 'mlp' or 'conv', got {family!r}.")
        if family == "conv" and (len(x_shape) != 3 or len(y_shape) != 3):
            raise ValueError(
                f"config.model.family='conv' needs HWC images, but the data has x {tuple(x_shape)} "
                f"and y {tuple(y_shape)}; use family='mlp' or image data (config.data.flatten=False)."
            )
        hidden = widths(c.hidden)
        if family == "mlp" and not hidden:
            raise ValueError(
                "config.iiae.hidden must name at least one width: the first hidden "
                "layer is the r-trunk that q(z^s|x,y) reads, e.g. (512, 256)."
            )
        if not 0.0 <= c.decoder_dropout < 1.0:
            raise ValueError(
                f"config.iiae.decoder_dropout must be in [0, 1), got {c.decoder_dropout}."
            )
        return cls(
            family=family,
            x_shape=tuple(x_shape),
            y_shape=tuple(y_shape),
            shared_dim=int(c.shared_dim),
            exclusive_dim=int(c.exclusive_dim),
            hidden=hidden,
            joint_hidden=widths(c.joint_hidden),
            decoder_hidden=widths(c.decoder_hidden),
            conv_base=int(c.conv_base),
            conv_hidden=widths(c.conv_hidden),
            decoder_dropout=float(c.decoder_dropout),
            out_act_x=out_acts[0],
            out_act_y=out_acts[1],
            bn_momentum=float(c.bn_momentum),
            bn_epsilon=float(c.bn_epsilon),
        )

    def y_output(self, y):
        """Generated y as inference returns it (token ids for captions, ``sentence.py``)."""
        return y

    @property
    def shared_shape(self) -> tuple[int, ...]:
        """Shape of one z^s: a vector here; a grid for ``spatial.SpatialArch``."""
        return (self.shared_dim,)

    def mlp(self, hidden, features, name, last_act=None) -> nets.MLP:
        """Dense → BN+LReLU blocks and a final Dense (the reference's ZS layer recipe)."""
        return nets.MLP(
            hidden=tuple(hidden),
            features=features,
            act="lrelu",
            last_act=last_act,
            negative_slope=LRELU_SLOPE,
            batchnorm=True,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )

    def conv_trunk(self, name) -> "ConvTrunk":
        return ConvTrunk(
            base=self.conv_base, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, name=name
        )

    def exclusive_encoder(self, name) -> nn.Module:
        """q(z^x|x) or q(z^y|y): its own network, 2·exclusive_dim outputs."""
        if self.family == "conv":
            return ConvGaussianEncoder(
                base=self.conv_base,
                features=2 * self.exclusive_dim,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=name,
            )
        return self.mlp(self.hidden, 2 * self.exclusive_dim, name)

    def shared_trunk(self, name) -> nn.Module:
        """The r-encoder layers whose output h also feeds q(z^s|x,y)."""
        if self.family == "conv":
            return self.conv_trunk(name)
        return self.mlp((), self.hidden[0], name, last_act="lrelu")

    def shared_head(self, name) -> nn.Module:
        """The rest of r(z^s|x) or r(z^s|y), on h."""
        hidden = self.conv_hidden if self.family == "conv" else self.hidden[1:]
        return self.mlp(hidden, 2 * self.shared_dim, name)

    def joint_encoder(self, name) -> nn.Module:
        """q(z^s|x,y) on concat(h_x, h_y)."""
        return self.mlp(self.joint_hidden, 2 * self.shared_dim, name)

    def decoder(self, out_shape, out_act, name) -> nn.Module:
        if self.family == "conv":
            return ConvDecoder(
                out_shape=out_shape,
                base=2 * self.conv_base,
                dropout=self.decoder_dropout,
                out_act=out_act,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=name,
            )
        return MLPDecoder(
            out_shape=out_shape,
            hidden=self.decoder_hidden,
            out_act=out_act,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )


class ConvTrunk(nn.Module):
    """4×4 stride-2 "SAME" convs, channels base·2^i, each → BN → LReLU(0.2), down to 2×2,
    flattened (the reference's conv stack, §1.3, scaled to small images)."""

    base: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, h, train: bool):
        layers = nets.num_halvings(h.shape[1])
        h = down_blocks(
            h, [self.base * 2**i for i in range(layers)], train, self.bn_momentum, self.bn_epsilon
        )
        return h.reshape(h.shape[0], -1)


class ConvGaussianEncoder(nn.Module):
    """A conv trunk and a linear Gaussian head (the reference's exclusive image encoder)."""

    base: int
    features: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, x, train: bool):
        h = ConvTrunk(self.base, self.bn_momentum, self.bn_epsilon)(x, train)
        return nn.Dense(self.features, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)


class MLPDecoder(nn.Module):
    """Dense(hidden) → BN → ReLU → Dense(out) → output activation (ZS decoder, §1.2)."""

    out_shape: tuple[int, ...]
    hidden: tuple[int, ...]
    out_act: str
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, latent, train: bool, dropout: bool = False):
        del dropout  # the ZS decoder has none (it is commented out in the reference)
        out = nets.MLP(
            hidden=self.hidden,
            features=math.prod(self.out_shape),
            act="relu",
            batchnorm=True,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
        )(latent, train)
        out = nets.activation(self.out_act)(out)
        return out.reshape((latent.shape[0],) + tuple(self.out_shape))


class ConvDecoder(nn.Module):
    """Dense → 4×4×C → BN → dropout → ReLU, then 4×4 stride-2 transposed convs halving C
    (BN → dropout → ReLU) up to the image, then the output activation (§1.3, flat branch).

    As the reference, dropout acts on the first blocks only (the Dense block and the first
    two transposed convs) and only in training (``dropout=True``), never at evaluation.
    """

    out_shape: tuple[int, int, int]
    base: int
    dropout: float
    out_act: str
    bn_momentum: float
    bn_epsilon: float

    def block(self, h, index: int, train: bool, dropout: bool):
        h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
        if self.dropout > 0 and index < 3:
            h = nn.Dropout(self.dropout, deterministic=not dropout)(h)
        return nn.relu(h)

    @nn.compact
    def __call__(self, latent, train: bool, dropout: bool = False):
        size, _, channels = self.out_shape
        n_up = nets.num_halvings(size) - 1  # from 4×4
        width = self.base * 2**n_up
        h = nn.Dense(
            4 * 4 * width, kernel_init=nets.XAVIER, use_bias=False, dtype=nets.layer_dtype()
        )(latent)
        h = self.block(h.reshape(h.shape[0], 4, 4, width), 0, train, dropout)
        for i in range(n_up):
            last = i == n_up - 1
            width = channels if last else width // 2
            h = conv4x4(width, transpose=True, use_bias=last)(h)
            if not last:
                h = self.block(h, i + 1, train, dropout)
        if n_up == 0:  # 4×4 images: the Dense block already produced the grid
            h = nn.Dense(channels, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)
        return nets.activation(self.out_act)(h)
