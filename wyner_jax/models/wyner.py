"""The Variational Wyner model (Ryu et al., arXiv 1905.10945): networks, sampling paths, losses
and the fused discriminator/generator/EMA update.

Paired data (x, y); common latent z, local latents u (x) and v (y), all with N(0, I) priors.
Networks are deterministic maps; randomness enters through the priors only (§1.2).

* decoders x = g_x(z, u), y = g_y(z, v);
* joint encoder z = f_xy(x, y); marginal encoders z = f_x(x), z = f_y(y);
* local heads u = l_x(z, F_x(x)), v = l_y(z, F_y(y)), shared by the variational and the
  marginal paths whichever encoder produced z.

Four joint distributions are induced (wyner-model.md §1.3) and matched pairwise by
density-ratio estimators (discriminators) that share one feature map D_F(x, y) (§2.1–2.2).
The generator minimises the plug-in divergence estimates, the CI penalty λ_CI·I(X,Y;Z),
latent matching and reconstruction consistency terms (§2.4); every term has a λ in
``config.loss.lambdas`` and the reference's guard.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct

from wyner_jax import losses, nets, optim, text_nets
from wyner_jax.instance_noise import Noisy, perturb

# Which sample set and which latents each distribution-matching estimator sees (§2.2).
# P is the first argument: T_k ≈ log P/Q.
PAIRS = {
    "j": (("var", "zuv"), ("j", "zuv")),
    "cx2y": (("var", "zv"), ("cx2y", "zv")),
    "cy2x": (("var", "zu"), ("cy2x", "zu")),
    "c": (("cx2y", "zuv"), ("cy2x", "zuv")),
    "mx": (("cx2y", "zuv"), ("j", "zuv")),
    "my": (("cy2x", "zuv"), ("j", "zuv")),
}
# CI estimators: (x, y, z) of a sample set against (x, y, shuffled z).
CI = {"var_ci": "var", "j_ci": "j", "cx2y_ci": "cx2y", "cy2x_ci": "cy2x"}
# Latent ("agg") matching on z alone: (P latent, Q latent). ``var_agg`` is broken in the
# reference (built, never computed); here it matches q(z) of the joint encoder to p(z).
AGG = {
    "var_agg": ("z_qxy", "z_p"),
    "cx2y_agg": ("z_qx", "z_p"),
    "cy2x_agg": ("z_qy", "z_p"),
    "c_agg": ("z_qx", "z_qy"),
}
# Reconstruction terms: which side they reconstruct (the loss is recon_x or recon_y).
RECONSTRUCTIONS = {
    "j_rec_x": "x",
    "j_rec_y": "y",
    "cx2y_rec_y": "y",
    "cy2x_rec_x": "x",
    "mx_rec_x": "x",
    "my_rec_y": "y",
    "j_rec_zuv": "latent",
}


# --------------------------------------------------------------------------- active terms


@dataclasses.dataclass(frozen=True)
class Terms:
    """The loss terms that are active, after the reference's guards (§2.4, §9)."""

    pairs: tuple[str, ...]
    ci: tuple[str, ...]
    agg: tuple[str, ...]
    rec: tuple[str, ...]

    @classmethod
    def from_lambdas(cls, lam) -> "Terms":
        lam = dict(lam)
        known = set(PAIRS) | set(CI) | set(AGG) | set(RECONSTRUCTIONS)
        unknown, missing = sorted(set(lam) - known), sorted(known - set(lam))
        if unknown or missing:
            raise ValueError(
                f"config.loss.lambdas has unknown keys {unknown} and lacks {missing}; it must "
                f"have exactly the λ of the Wyner objective, {sorted(known)} (start from "
                "configs/default.py's and change values, not names)."
            )
        on = lambda k: lam[k] > 0  # noqa: E731
        guards = {
            "c": on("cx2y") and on("cy2x"),
            "j_rec_x": on("j") or on("cy2x"),
            "j_rec_y": on("j") or on("cx2y"),
            "cx2y_rec_y": on("cx2y"),
            "cy2x_rec_x": on("cy2x"),
            "mx_rec_x": on("cx2y") and on("cy2x"),
            "my_rec_y": on("cx2y") and on("cy2x"),
            "j_rec_zuv": on("j"),
            # A CI estimator needs its sample set: j_ci the joint model, cx2y_ci the x→y path.
            "j_ci": on("j"),
            "cx2y_ci": on("cx2y"),
            "cy2x_ci": on("cy2x"),
            "var_ci": True,
        }
        pairs = tuple(k for k in PAIRS if on(k) and guards.get(k, True))
        agg = tuple(k for k in AGG if on(k))
        rec = tuple(k for k in RECONSTRUCTIONS if on(k) and guards[k])
        ci = tuple(k for k in CI if lam[k] >= 0 and guards[k])
        dropped = [
            k
            for k in list(PAIRS) + list(RECONSTRUCTIONS) + list(CI)
            if lam[k] > 0 and not guards.get(k, True)
        ]
        if dropped:
            logging.warning(
                "These loss terms have λ > 0 but are off by the reference's guards (their parent "
                "term has λ = 0): %s. See wyner-model.md §2.4.",
                ", ".join(dropped),
            )
        if not pairs:
            raise ValueError(
                "No distribution-matching term is active: set at least one of "
                "config.loss.lambdas.{j, cx2y, cy2x} > 0 (the reference has no working default)."
            )
        return cls(pairs, ci, agg, rec)

    def active(self) -> tuple[str, ...]:
        return self.pairs + self.ci + self.agg + self.rec

    @property
    def need_joint(self) -> bool:
        return (
            bool({"j", "mx", "my"} & set(self.pairs))
            or "j_ci" in self.ci
            or "j_rec_zuv" in self.rec
        )

    @property
    def need_cx2y(self) -> bool:
        return bool({"cx2y", "c", "mx"} & set(self.pairs)) or "cx2y_ci" in self.ci

    @property
    def need_cy2x(self) -> bool:
        return bool({"cy2x", "c", "my"} & set(self.pairs)) or "cy2x_ci" in self.ci

    @property
    def need_zqx(self) -> bool:
        return (
            self.need_cx2y
            or bool({"cx2y_agg", "c_agg"} & set(self.agg))
            or bool({"cx2y_rec_y", "mx_rec_x"} & set(self.rec))
        )

    @property
    def need_zqy(self) -> bool:
        return (
            self.need_cy2x
            or bool({"cy2x_agg", "c_agg"} & set(self.agg))
            or bool({"cy2x_rec_x", "my_rec_y"} & set(self.rec))
        )


# --------------------------------------------------------------------------- architecture


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


class LatentHead(nn.Module):
    """A latent head (f_x, f_xy, l_x, ...): Linear, with tanh for the uniform prior."""

    features: int
    uniform: bool
    sn: bool

    @nn.compact
    def __call__(self, h, train: bool):
        if self.uniform:  # reference: get_fc with last_act tanh, hence also the SN quirk
            return jnp.tanh(nets.Linear(self.features, spectral_norm=self.sn)(h, train))
        return nn.Dense(self.features, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)


# --------------------------------------------------------------------------- generator


class WynerGenerator(nn.Module):
    """Encoders f_xy, f_x, f_y, local heads l_x, l_y and decoders g_x, g_y (§1.1, §4)."""

    arch: Arch
    terms: Terms

    def setup(self):
        a = self.arch
        head = lambda d, name: LatentHead(d, a.prior == "uniform", a.sn, name=name)  # noqa: E731
        self.F_x = a.encoder_feature_map("F_x")
        # Captions: one token embedding shared by F_y, F_xy and g_y's tied inverse (§4.2).
        self.E_y = a.token_embedding("E_y")
        self.F_y = a.encoder_feature_map("F_y", self.E_y)
        self.F_xy = a.encoder_feature_map("F_xy", self.E_y)
        self.f_xy = head(a.dz, "f_xy")
        self.f_x = head(a.dz, "f_x")
        self.f_y = head(a.dz, "f_y")
        self.l_x = head(a.du, "l_x")
        self.l_y = head(a.dv, "l_y")
        self.g_x = a.decoder(a.x_shape, "g_x")
        self.g_y = a.decoder(a.y_shape, "g_y", self.E_y)

    # Building blocks -------------------------------------------------------------
    # Stochastic encoders (the reference's ``append_noise_and_concat``, wyner-model.md §1.2):
    # with noise_dim > 0, fresh N(0, 1) columns are appended to the input of every encoder
    # network on every call: to x and y before F_xy, to x before F_x, to F_xy(x, y) before
    # f_xy, to F_x(x) before f_x and to [z, F_x(x)] before l_x. Each append is its own draw,
    # so z and u of one x are not functions of one shared noise. The joint encoder uses
    # joint_noise_dim, the marginal encoders and local heads marginal_noise_dim. Off (dim 0)
    # by default, as in the reference: every encoder is then a deterministic map.
    def with_noise(self, h, dim: int):
        """[h, ε] with ``dim`` fresh N(0, 1) columns ε (h flattened to [B, -1]); h if dim = 0."""
        if dim == 0:
            return h
        h = h.reshape(h.shape[0], -1)
        eps = jax.random.normal(self.make_rng("encoder_noise"), (h.shape[0], dim), h.dtype)
        return jnp.concatenate([h, eps], axis=-1)

    @property
    def stochastic_marginal(self) -> bool:
        return self.arch.marginal_noise_dim > 0

    def features_x(self, x, train):
        """F_x(x) (with noise columns on x when the marginal encoders are stochastic)."""
        return self.F_x(self.with_noise(x, self.arch.marginal_noise_dim), train)

    def features_y(self, y, train):
        return self.F_y(self.with_noise(y, self.arch.marginal_noise_dim), train)

    def common_x(self, hx, train):
        """z = f_x(F_x(x)): q(z|x), from the features hx = F_x(x)."""
        return self.f_x(self.with_noise(hx, self.arch.marginal_noise_dim), train)

    def common_y(self, hy, train):
        return self.f_y(self.with_noise(hy, self.arch.marginal_noise_dim), train)

    def joint_encode(self, x, y, train):
        """z = f_xy(F_xy(x, y)): q(z|x,y)."""
        d = self.arch.joint_noise_dim
        if d:
            x, y = self.with_noise(x, d), self.with_noise(y, d)
        h = self.F_xy(self.arch.pair(x, y), train)
        return self.f_xy(self.with_noise(h, d), train)

    def local_x(self, z, hx, train):
        """u = l_x([z, F_x(x)]): q(u|z,x), shared by the variational and marginal paths."""
        zh = jnp.concatenate([z, hx], axis=-1)
        return self.l_x(self.with_noise(zh, self.arch.marginal_noise_dim), train)

    def local_y(self, z, hy, train):
        zh = jnp.concatenate([z, hy], axis=-1)
        return self.l_y(self.with_noise(zh, self.arch.marginal_noise_dim), train)

    def decode_x(self, z, u, train):
        return self.g_x(jnp.concatenate([z, u], axis=-1), train)

    def decode_y(self, z, v, train):
        return self.g_y(jnp.concatenate([z, v], axis=-1), train)

    def variational(self, x, y, train):
        """q(z|x,y) q(u|z,x) q(v|z,y); returns z, u, v and the marginal features F_x, F_y."""
        hx, hy = self.features_x(x, train), self.features_y(y, train)
        z = self.joint_encode(x, y, train)
        return z, self.local_x(z, hx, train), self.local_y(z, hy, train), hx, hy

    # The four sampling paths and the reconstructions (§1.3, §2.4) ------------------
    def __call__(self, x, y, prior, *, train: bool, recon: bool):
        t = self.terms
        z_qxy, u_qxy, v_qxy, hx, hy = self.variational(x, y, train)
        s: dict[str, Any] = {
            "var": dict(x=x, y=y, z=z_qxy, u=u_qxy, v=v_qxy),
            "latents": dict(z_qxy=z_qxy, z_p=prior["z"]),
        }
        if t.need_joint:
            z_p, u_p, v_p = prior["z"], prior["u"], prior["v"]
            s["j"] = dict(
                x=self.decode_x(z_p, u_p, train),
                y=self.decode_y(z_p, v_p, train),
                z=z_p,
                u=u_p,
                v=v_p,
            )
        if t.need_zqx:
            # The conditional path encodes x afresh (the reference's encode_x_zu): with
            # stochastic encoders its F_x(x) is another draw; deterministic, it is hx again.
            hx_c = self.features_x(x, train) if self.stochastic_marginal else hx
            z_qx = self.common_x(hx_c, train)
            s["latents"]["z_qx"] = z_qx
            u_qxm = self.local_x(z_qx, hx_c, train)
            if t.need_cx2y:
                s["cx2y"] = dict(
                    x=x, y=self.decode_y(z_qx, prior["v_c"], train), z=z_qx, u=u_qxm, v=prior["v_c"]
                )
        if t.need_zqy:
            hy_c = self.features_y(y, train) if self.stochastic_marginal else hy
            z_qy = self.common_y(hy_c, train)
            s["latents"]["z_qy"] = z_qy
            v_qym = self.local_y(z_qy, hy_c, train)
            if t.need_cy2x:
                s["cy2x"] = dict(
                    x=self.decode_x(z_qy, prior["u_c"], train), y=y, z=z_qy, u=prior["u_c"], v=v_qym
                )
        if recon:
            rec = {}
            if "j_rec_x" in t.rec:
                rec["j_rec_x"] = (x, self.decode_x(z_qxy, u_qxy, train))
            if "j_rec_y" in t.rec:
                rec["j_rec_y"] = (y, self.decode_y(z_qxy, v_qxy, train))
            if "cx2y_rec_y" in t.rec:  # common part from x, local part inferred from y given it
                rec["cx2y_rec_y"] = (y, self.decode_y(z_qx, self.local_y(z_qx, hy, train), train))
            if "cy2x_rec_x" in t.rec:
                rec["cy2x_rec_x"] = (x, self.decode_x(z_qy, self.local_x(z_qy, hx, train), train))
            if "mx_rec_x" in t.rec:
                rec["mx_rec_x"] = (x, self.decode_x(z_qx, u_qxm, train))
            if "my_rec_y" in t.rec:
                rec["my_rec_y"] = (y, self.decode_y(z_qy, v_qym, train))
            if "j_rec_zuv" in t.rec:  # re-encode the joint samples; gradients reach both sides
                jz, ju, jv, _, _ = self.variational(s["j"]["x"], s["j"]["y"], train)
                # Three latents, three losses summed (§2.4), not one mean over [z, u, v],
                # which would weight them by their widths.
                rec["j_rec_zuv"] = ((s["j"]["z"], s["j"]["u"], s["j"]["v"]), (jz, ju, jv))
            s["rec"] = rec
        return s

    # Inference (evaluation) ------------------------------------------------------
    def embed(self, x, y, train):
        out = {"z_xy": self.joint_encode(x, y, train)}
        if self.terms.need_zqx:
            out["z_x"] = self.common_x(self.features_x(x, train), train)
        if self.terms.need_zqy:
            out["z_y"] = self.common_y(self.features_y(y, train), train)
        return out

    def x2y(self, x, v, train):
        """y ~ p(y|x): z = f_x(x), v ~ p(v), y = g_y(z, v)."""
        y = self.decode_y(self.common_x(self.features_x(x, train), train), v, train)
        return self.arch.y_output(y)

    def y2x(self, y, u, train):
        return self.decode_x(self.common_y(self.features_y(y, train), train), u, train)

    def joint(self, z, u, v, train):
        return self.decode_x(z, u, train), self.arch.y_output(self.decode_y(z, v, train))

    def reconstruct(self, x, y, train):
        z, u, v, _, _ = self.variational(x, y, train)
        return self.decode_x(z, u, train), self.arch.y_output(self.decode_y(z, v, train))


# --------------------------------------------------------------------------- discriminator


def xavier_block(fan_in: int):
    """Xavier-uniform init for a block of rows of an [fan_in, width] kernel: the bound
    √(6/(fan_in + width)) of the whole kernel, so a kernel kept in blocks is drawn from the
    same distribution as the reference's single one."""

    def init(key, shape, dtype=jnp.float32):
        bound = np.sqrt(6.0 / (fan_in + shape[-1]))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class RatioHead(nn.Module):
    """H_k: the density-ratio head on [D_F(x, y), E_k(latent)] (§2.1), the reference's
    ``get_fc`` with ``layers`` hidden layers and a scalar output.

    The first layer's kernel is kept in two blocks, W_h for the D_F features and W_e for the
    latent embedding, [h, e]·W = h·W_h + e·W_e: one call takes several embeddings that share
    h (the CI estimators' P = (h, z) and Q = (h, shuffled z), §2.2) and computes h·W_h once for
    all of them, and once its cotangent in the backward pass. The head has no BatchNorm, so
    each output is exactly that of a separate call. (Slicing one [d_h + d_e, width] kernel
    instead costs XLA:CPU a copy of each block per call and a padded gradient: as much time as
    the product saved.)
    """

    width: int
    layers: int
    negative_slope: float

    @nn.compact
    def __call__(self, h, es: tuple, train: bool) -> tuple:
        """T_k on the rows [h, e] for each e in ``es``: a tuple of [batch] logits."""
        width = self.width if self.layers else 1
        init = xavier_block(h.shape[-1] + es[0].shape[-1])
        w_h = self.param("kernel_h", init, (h.shape[-1], width))
        w_e = self.param("kernel_e", init, (es[0].shape[-1], width))
        bias = self.param("bias", nn.initializers.zeros, (width,))
        h, w_h, w_e, bias = nn.dtypes.promote_dtype(h, w_h, w_e, bias, dtype=nets.layer_dtype())
        common = h @ w_h + bias
        rest = None
        if self.layers:
            rest = nets.MLP(
                hidden=(self.width,) * (self.layers - 1),
                features=1,
                negative_slope=self.negative_slope,
                name="rest",
            )
        out = []
        for e in es:
            t = common + e.astype(w_e.dtype) @ w_e
            if rest is not None:
                t = rest(nn.leaky_relu(t, self.negative_slope), train)
            out.append(t[:, 0])
        return tuple(out)


class WynerDiscriminator(nn.Module):
    """Every density-ratio estimator: shared D_F(x, y), per-key latent embedder E_k and head H_k
    on [D_F, E_k(latent)], and latent-only MLPs for the agg terms (§2.1).

    Instance noise (§1.2) is added to everything the discriminator sees: x and y (scaled per
    feature when configured), z, and u/v, each input of each call with its own draw (all of a
    call's drawn at once from the 'noise' RNG stream, ``instance_noise.perturb``); the CI
    product samples use the 'permute' stream.
    """

    arch: Arch
    terms: Terms
    sigma_z: float
    sigma_uv: float

    def setup(self):
        a = self.arch
        self.D_F = a.discriminator_feature_map()
        keys = self.terms.pairs + self.terms.ci
        self.E = {k: nets.Linear(a.head_hidden, spectral_norm=a.sn, name=f"E_{k}") for k in keys}
        self.H = {
            k: RatioHead(a.head_hidden, a.head_layers, a.disc_slope, name=f"H_{k}") for k in keys
        }
        self.A = {
            k: nets.MLP(
                hidden=(a.head_hidden,), features=1, negative_slope=a.disc_slope, name=f"A_{k}"
            )
            for k in self.terms.agg
        }

    def embed_latent(self, key, latent, train):
        return nn.leaky_relu(self.E[key](latent, train), self.arch.disc_slope)

    def ratio(self, key, h, latent, train):
        return self.H[key](h, (self.embed_latent(key, latent, train),), train)[0]

    def __call__(
        self, samples, sigma_x, sigma_y, *, train: bool, noise: bool, detach_ci_features: bool
    ):
        """Returns {key: (T_k on P-samples, T_k on Q-samples)} for every active estimator."""
        t = self.terms
        sets = sorted({s for k in t.pairs for s, _ in PAIRS[k]} | {CI[k] for k in t.ci})
        sigma = dict(x=sigma_x, y=sigma_y, z=self.sigma_z, u=self.sigma_uv, v=self.sigma_uv)

        def latent(sample, which: str):
            return tuple(Noisy(sample[c], sigma[c]) for c in which)

        z_shuffled = {
            k: losses.shuffle_latent(samples[CI[k]]["z"], self.make_rng("permute")) for k in t.ci
        }
        # Every input of this call, each perturbed with its own draw (one normal draw for all).
        inputs = perturb(
            self.make_rng("noise") if noise else None,
            {
                "xy": {n: latent(samples[n], "xy") for n in sets},
                "pairs": {k: tuple(latent(samples[s], c) for s, c in PAIRS[k]) for k in t.pairs},
                "ci": {
                    k: (
                        Noisy(samples[CI[k]]["z"], self.sigma_z),
                        Noisy(z_shuffled[k], self.sigma_z),
                    )
                    for k in t.ci
                },
                "agg": {
                    k: tuple(Noisy(samples["latents"][c], self.sigma_z) for c in AGG[k])
                    for k in t.agg
                },
            },
        )
        # D_F is applied separately to each sample set, so BatchNorm statistics are per set.
        h = {}
        for name in sets:
            # The caption D_F also perturbs its word embeddings when noise is on (§4.2).
            extra = {"noise": noise} if self.arch.sentence else {}
            h[name] = self.D_F(self.arch.pair(*inputs["xy"][name]), train, **extra)
        logits = {}
        for k in t.pairs:
            logits[k] = tuple(
                self.ratio(k, h[s], jnp.concatenate(lat, -1), train)
                for (s, _), lat in zip(PAIRS[k], inputs["pairs"][k])
            )
        for k in t.ci:
            # The CI heads train on detached shared features in the D step (§2.2).
            hk = h[CI[k]]
            hk = jax.lax.stop_gradient(hk) if detach_ci_features else hk
            # P = (h, z) and Q = (h, shuffled z) share h: one H_k call computes h·W_h once.
            z, zs = inputs["ci"][k]
            logits[k] = self.H[k](
                hk, (self.embed_latent(k, z, train), self.embed_latent(k, zs, train)), train
            )
        for k in t.agg:
            p, q = inputs["agg"][k]
            logits[k] = (self.A[k](p, train)[:, 0], self.A[k](q, train)[:, 0])
        return logits


# --------------------------------------------------------------------------- state, update


@struct.dataclass
class WynerState:
    step: jax.Array
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)
    gen_params: Any
    gen_stats: Any  # BatchNorm running averages and spectral-norm vectors
    disc_params: Any
    disc_stats: Any
    gen_opt: Any
    disc_opt: Any
    ema_params: Any


def ema_decay(decay: float, num_updates, warmup: bool):
    """torch_ema's decay with ``use_num_updates``: min(d, (1+n)/(10+n)) after n updates."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    n = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def ema_update(ema, params, decay):
    """Shadow update s ← s − (1 − d)(s − θ)."""
    return jax.tree_util.tree_map(lambda s, p: s - (1.0 - decay) * (s - p), ema, params)


class WynerModel:
    """The Variational Wyner model behind the ``PairedModel`` interface."""

    name = "wyner"

    def __init__(self, config, dataset):
        self.config = config
        self.arch = Arch.from_config(
            config.model, dataset.x_shape, dataset.y_shape, getattr(dataset, "vocab_size", 0)
        )
        self.terms = Terms.from_lambdas(config.loss.lambdas)
        self.lambdas = {k: float(v) for k, v in config.loss.lambdas.items()}
        noise = config.loss.instance_noise
        self.generator = WynerGenerator(self.arch, self.terms)
        self.discriminator = WynerDiscriminator(
            self.arch, self.terms, sigma_z=noise.z, sigma_uv=noise.uv
        )
        scale_x = dataset.x_std if noise.scale_by_data_std else 1.0
        scale_y = dataset.y_std if noise.scale_by_data_std else 1.0
        self.sigma_x = np.asarray(noise.xy * scale_x, np.float32)
        self.sigma_y = np.asarray(noise.xy * scale_y, np.float32)
        self.noise_in_g_step = bool(noise.in_generator_step)
        l = config.loss
        if l.discriminator not in losses.DENSITY_RATIO_OBJECTIVES:
            raise ValueError(
                f"config.loss.discriminator {l.discriminator!r} is not one of "
                f"{sorted(losses.DENSITY_RATIO_OBJECTIVES)}; set --config.loss.discriminator "
                "to one of them."
            )
        if l.generator not in losses.GENERATOR_PLUGINS:
            raise ValueError(
                f"config.loss.generator {l.generator!r} is not one of "
                f"{sorted(losses.GENERATOR_PLUGINS)}; set --config.loss.generator to one of them."
            )
        for side in ("recon_x", "recon_y", "recon_latent"):
            if l[side] not in losses.RECONSTRUCTION_LOSSES:
                raise ValueError(
                    f"config.loss.{side} {l[side]!r} is not one of "
                    f"{sorted(losses.RECONSTRUCTION_LOSSES)}; set --config.loss.{side} to one of "
                    "them."
                )
        captions = self.arch.sentence is not None
        for side in ("recon_x", "recon_y", "recon_latent"):
            if (l[side] == "token_ce") != (captions and side == "recon_y"):
                raise ValueError(
                    f"config.loss.{side} = {l[side]!r}: 'token_ce' (token cross-entropy) is the "
                    "reconstruction of captions only, and captions need it: with "
                    "config.model.family='sentence' set --config.loss.recon_y=token_ce, "
                    "otherwise use l1, l2 or cosine."
                )
        steps = int(config.train.num_steps)
        self.gen_opt = optim.make_optimizer(config.optim, config.optim.lr_generator, steps)
        self.disc_opt = optim.make_optimizer(config.optim, config.optim.lr_discriminator, steps)
        self.compute_dtype = nets.check_compute_dtype(config.model.compute_dtype)

    # ------------------------------------------------------------------ randomness
    def sample_prior(self, key, shape):
        if self.arch.prior == "uniform":
            return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        return jax.random.normal(key, shape)

    def sample_priors(self, key, batch_size: int):
        """Independent draws: z, u, v for the joint model; u_c, v_c for the conditionals."""
        a = self.arch
        dims = dict(z=a.dz, u=a.du, v=a.dv, u_c=a.du, v_c=a.dv)
        keys = jax.random.split(key, len(dims))
        return {n: self.sample_prior(k, (batch_size, d)) for k, (n, d) in zip(keys, dims.items())}

    # ------------------------------------------------------------------ init
    def init(self, rng, batch):
        rng = jnp.asarray(rng)
        k_gen, k_disc, k_prior, k_noise, k_perm, k_enc = jax.random.split(rng, 6)
        x, y = batch["x"], batch["y"]
        prior = self.sample_priors(k_prior, x.shape[0])
        gen_vars = self.generator.init(
            {"params": k_gen, "encoder_noise": k_enc}, x, y, prior, train=True, recon=True
        )
        samples, _ = self.generator.apply(
            gen_vars,
            x,
            y,
            prior,
            train=True,
            recon=False,
            rngs={"encoder_noise": k_enc},
            mutable=["batch_stats"],
        )
        disc_vars = self.discriminator.init(
            {"params": k_disc, "noise": k_noise, "permute": k_perm},
            samples,
            self.sigma_x,
            self.sigma_y,
            train=True,
            noise=True,
            detach_ci_features=True,
        )
        gen_params = gen_vars["params"]
        disc_params = disc_vars["params"]
        return WynerState(
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.fold_in(rng, 1),
            gen_params=gen_params,
            gen_stats=gen_vars.get("batch_stats", {}),
            disc_params=disc_params,
            disc_stats=disc_vars.get("batch_stats", {}),
            gen_opt=self.gen_opt.init(gen_params),
            disc_opt=self.disc_opt.init(disc_params),
            ema_params=gen_params,
        )

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, logits):
        """L_D = Σ_k w_k · (−J_k), J the density-ratio objective (§2.3)."""
        objective = losses.DENSITY_RATIO_OBJECTIVES[self.config.loss.discriminator]
        logits = nets.float32(logits)
        a = self.config.loss.label_smoothing
        terms = {}
        total = 0.0
        for k, (t_p, t_q) in logits.items():
            j = (
                losses.js_objective(t_p, t_q, label_smoothing=a)
                if self.config.loss.discriminator == "js"
                else objective(t_p, t_q)
            )
            terms[f"disc/{k}"] = -j
            w = 1.0 if self.config.loss.uniform_disc_weights else self.lambdas[k]
            if w:  # a weight-0 estimator is logged only: no backward pass through it
                total = total + w * (-j)
        terms["disc/total"] = total
        return total, terms

    def generator_loss(self, logits, rec):
        """L_G = Σ λ_k S_k + Σ λ_CI E_P[T_CI] + Σ λ_agg S_agg + Σ λ_r R_r (§2.5)."""
        plugin = losses.GENERATOR_PLUGINS[self.config.loss.generator]
        logits, rec = nets.float32(logits), nets.float32(rec)
        recon = losses.RECONSTRUCTION_LOSSES
        side_loss = {
            "x": recon[self.config.loss.recon_x],
            "y": recon[self.config.loss.recon_y],
            "latent": recon[self.config.loss.recon_latent],
        }
        # Keyed by the term's name, which is also its weight's name in config.loss.lambdas.
        terms = {}
        for k in self.terms.pairs + self.terms.agg:
            terms[k] = plugin(*logits[k])
        for k in self.terms.ci:  # var_ci: the CI penalty, weighted by λ_var_ci
            terms[k] = losses.ci_penalty(logits[k][0])
        for k in self.terms.rec:
            target, pred = rec[k]
            loss = side_loss[RECONSTRUCTIONS[k]]
            if isinstance(target, tuple):  # several targets (j_rec_zuv): one loss each, summed
                terms[k] = sum(loss(p, t) for p, t in zip(pred, target, strict=True))
            else:
                terms[k] = loss(pred, target)
        # λ = 0 terms (the CI estimates the reference trains at λ_CI = 0) are logged but left
        # out of the sum, so no backward pass runs through them: 0·∂term is no update.
        total = sum(self.lambdas[k] * v for k, v in terms.items() if self.lambdas[k])
        terms = {f"gen/{k}": v for k, v in terms.items()}
        terms["gen/total"] = total
        return total, terms

    # ------------------------------------------------------------------ the update
    def train_step(self, state: WynerState, batch):
        """D update, then G update on the same batch with fresh draws, then EMA (§3.2).

        The networks compute in ``config.model.compute_dtype``; parameters, optimiser state,
        EMA and the losses are float32."""
        with nets.compute_dtype(self.compute_dtype):
            return self._train_step(state, batch)

    def _generate(self, params, stats, x, y, prior, key, *, recon: bool):
        """The generator's sample sets in training mode; returns (samples, batch-stat update)."""
        return self.generator.apply(
            {"params": params, "batch_stats": stats},
            x,
            y,
            prior,
            train=True,
            recon=recon,
            rngs={"encoder_noise": key},
            mutable=["batch_stats"],
        )

    def _discriminate(self, params, stats, samples, noise_key, perm_key, *, noise, detach):
        """Every estimator's logits on ``samples``; returns (logits, batch-stat update)."""
        return self.discriminator.apply(
            {"params": params, "batch_stats": stats},
            samples,
            self.sigma_x,
            self.sigma_y,
            train=True,
            noise=noise,
            detach_ci_features=detach,
            rngs={"noise": noise_key, "permute": perm_key},
            mutable=["batch_stats"],
        )

    def _train_step(self, state: WynerState, batch):
        x, y = batch["x"], batch["y"]
        n = x.shape[0]
        key = jax.random.fold_in(state.rng, state.step)
        k_d_prior, k_d_noise, k_d_perm, k_d_enc, k_g_prior, k_g_noise, k_g_perm, k_g_enc = (
            jax.random.split(key, 8)
        )

        # Discriminator step: generator outputs are constants.
        prior = self.sample_priors(k_d_prior, n)
        samples, gen_upd = self._generate(
            state.gen_params, state.gen_stats, x, y, prior, k_d_enc, recon=False
        )
        samples = jax.lax.stop_gradient(samples)
        gen_stats = gen_upd["batch_stats"]

        def disc_loss_fn(disc_params):
            logits, upd = self._discriminate(
                disc_params, state.disc_stats, samples, k_d_noise, k_d_perm, noise=True, detach=True
            )
            total, terms = self.discriminator_loss(logits)
            return total, (terms, upd["batch_stats"])

        (_, (d_terms, disc_stats)), d_grads = jax.value_and_grad(disc_loss_fn, has_aux=True)(
            state.disc_params
        )
        d_updates, disc_opt = self.disc_opt.update(d_grads, state.disc_opt, state.disc_params)
        disc_params = optax.apply_updates(state.disc_params, d_updates)

        # Generator step: the discriminator is frozen but differentiated through.
        prior = self.sample_priors(k_g_prior, n)

        def gen_loss_fn(gen_params):
            s, g_upd = self._generate(gen_params, gen_stats, x, y, prior, k_g_enc, recon=True)
            logits, d_upd = self._discriminate(
                disc_params,
                disc_stats,
                s,
                k_g_noise,
                k_g_perm,
                noise=self.noise_in_g_step,
                detach=False,
            )
            total, terms = self.generator_loss(logits, s.get("rec", {}))
            return total, (terms, g_upd["batch_stats"], d_upd["batch_stats"])

        (_, (g_terms, gen_stats, disc_stats)), g_grads = jax.value_and_grad(
            gen_loss_fn, has_aux=True
        )(state.gen_params)
        g_updates, gen_opt = self.gen_opt.update(g_grads, state.gen_opt, state.gen_params)
        gen_params = optax.apply_updates(state.gen_params, g_updates)

        decay = ema_decay(self.config.ema.decay, state.step + 1, self.config.ema.warmup)
        ema_params = ema_update(state.ema_params, gen_params, decay)

        new_state = state.replace(
            step=state.step + 1,
            gen_params=gen_params,
            gen_stats=gen_stats,
            disc_params=disc_params,
            disc_stats=disc_stats,
            gen_opt=gen_opt,
            disc_opt=disc_opt,
            ema_params=ema_params,
        )
        metrics = {**d_terms, **g_terms}
        return new_state, metrics

    # ------------------------------------------------------------------ inference
    def eval_variables(self, state: WynerState):
        return {"params": state.ema_params, "batch_stats": state.gen_stats}

    def _apply(self, variables, *args, method, key=None):
        train = bool(self.config.model.bn_batch_stats_at_eval)
        # Encoder noise (when configured) stays on at evaluation, as in the reference; without
        # a key (embeddings, reconstructions) a fixed one keeps evaluation deterministic.
        key = jax.random.PRNGKey(0) if key is None else jax.random.fold_in(key, 1)
        # In "train" mode BatchNorm and spectral norm write updated statistics; evaluation
        # discards them so it never changes the training state.
        with nets.compute_dtype(self.compute_dtype):
            out, _ = self.generator.apply(
                variables,
                *args,
                train=train,
                method=method,
                rngs={"encoder_noise": key},
                mutable=["batch_stats"],
            )
        return nets.float32(out)

    def embed(self, variables, x, y):
        return self._apply(variables, x, y, method=WynerGenerator.embed)

    def translate_x2y(self, variables, x, key):
        v = self.sample_prior(key, (x.shape[0], self.arch.dv))
        return self._apply(variables, x, v, method=WynerGenerator.x2y, key=key)

    def translate_y2x(self, variables, y, key):
        u = self.sample_prior(key, (y.shape[0], self.arch.du))
        return self._apply(variables, y, u, method=WynerGenerator.y2x, key=key)

    def sample_joint(self, variables, key, n):
        kz, ku, kv = jax.random.split(key, 3)
        a = self.arch
        return self._apply(
            variables,
            self.sample_prior(kz, (n, a.dz)),
            self.sample_prior(ku, (n, a.du)),
            self.sample_prior(kv, (n, a.dv)),
            method=WynerGenerator.joint,
        )

    def reconstruct(self, variables, x, y):
        return self._apply(variables, x, y, method=WynerGenerator.reconstruct)

    def ci_estimate(self, state: WynerState, x, y, key):
        """The trained CI estimator's value E_q[T_var_ci] on (x, y): the generator's
        ``gen/var_ci`` term (≈ I(X', Y'; Z'), the CI under instance noise, §2.3) averaged
        over the rows given instead of one training batch.

        It reads the networks the estimator was trained against: the raw (not EMA) generator
        and the discriminator, as in a D step (batch statistics, instance noise on, fresh
        encoder noise); nothing is written back.
        """
        if "var_ci" not in self.terms.ci:
            raise ValueError(
                "This run has no CI estimator (config.loss.lambdas.var_ci < 0 removes it)."
            )
        k_prior, k_enc, k_noise, k_perm = jax.random.split(key, 4)
        prior = self.sample_priors(k_prior, x.shape[0])
        with nets.compute_dtype(self.compute_dtype):
            samples, _ = self._generate(
                state.gen_params, state.gen_stats, x, y, prior, k_enc, recon=False
            )
            logits, _ = self._discriminate(
                state.disc_params,
                state.disc_stats,
                samples,
                k_noise,
                k_perm,
                noise=True,
                detach=True,
            )
        return losses.ci_penalty(nets.float32(logits["var_ci"][0]))

    def capabilities(self, state) -> set[str]:
        """Which inference methods this trained configuration supports (its networks exist)."""
        have = set(state.gen_params)
        caps = {"embed"}
        if {"f_x", "g_y"} <= have:
            caps.add("x2y")
        if {"f_y", "g_x"} <= have:
            caps.add("y2x")
        if {"g_x", "g_y"} <= have:
            caps |= {"joint", "reconstruct"}
        return caps
