"""The Interaction Information Auto-Encoder, IIAE (Hwang et al., NeurIPS 2020), as the
authors' TensorFlow code computes it (iiae.md §1–§2): the baseline next to the Variational
Wyner model, behind the same ``PairedModel`` interface.

Paired data (x, y); three latents with N(0, I) priors: z^x exclusive to x, z^y exclusive to
y and z^s shared. Every distribution is a diagonal Gaussian whose network emits one tensor
split in half along the last axis: the mean, then a *linear* log-variance clipped from above
at ``logvar_max`` = ln 1e4 (no lower clip, §1.1).

* exclusive encoders q(z^x|x), q(z^y|y): separate networks;
* auxiliary shared encoders r(z^s|x), r(z^s|y): a trunk, whose features h_x / h_y are also
  returned, then a head;
* joint shared encoder q(z^s|x,y) on concat(h_x, h_y), so it shares the r-trunks' lower
  layers and reconstruction gradients reach them through q(z^s|x,y);
* decoders p(x|z^x,z^s) = Dec_x([z^s, z^x]) and p(y|z^y,z^s) = Dec_y([z^s, z^y]) (z^s first).

Training decodes one reparameterised sample per example of q(z^s|x,y), q(z^x|x), q(z^y|y)
and minimises (§2)

    L = (β+λ)(R_x + R_y) + c_t(β+λ)(KL_x + KL_y) + c_t·β·KL_s + λ(KL_rx + KL_ry),

i.e. β·(joint VAE bound) + λ·(the bound with r(z^s|x), r(z^s|y) as the z^s prior) once
c_t = 1 − exp(−t/ar) has reached 1. See ``iiae_loss``.

Network families (``config.model.family``):

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

Initialisation as §8: Glorot-uniform Dense kernels, N(0, 0.02) conv kernels, zero biases,
BatchNorm scale ~ N(1, 0.02); BatchNorm momentum 0.9, eps 1e-5, batch statistics in
training and running averages at evaluation (the reference's test mode), unless
``config.iiae.bn_batch_stats_at_eval``. A bias right before BatchNorm is left out (BN
cancels it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from wyner_jax import losses, nets, optim
from wyner_jax.conv2x import Conv2x
from wyner_jax.subpixel import ConvTranspose2x

LRELU_SLOPE = 0.2  # the reference's lrelu(x, 0.2)
CONV_INIT = nn.initializers.normal(stddev=0.02)
BN_SCALE_STDDEV = 0.02  # BatchNorm gamma ~ N(1, 0.02) (ops.batchnorm)
RECONSTRUCTIONS = {
    "l1": losses.l1_loss,
    "l2": losses.l2_loss,
    "token_ce": losses.caption_cross_entropy,  # captions (family 'sentence')
}
# The posteriors whose moments the loss reads, and the ones sampled in training.
GAUSSIANS = ("q_x", "q_y", "q_s", "r_x", "r_y")
SAMPLED = ("q_x", "q_y", "q_s")


# --------------------------------------------------------------------------- the loss


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The weights of the IIAE objective (iiae.md §2) and the reconstruction losses.

    recon_x / recon_y: 'l2' = mean over batch×dims of (x̂ − x)² (the ZS reference, whose
    flag says L1 but computes MSE) or 'l1' = mean |x̂ − x| (the image reference).
    anneal_steps: ar of c_t = 1 − exp(−t/ar); ≤ 0 switches annealing off (c_t = 1).
    """

    beta: float
    lam: float
    recon_weight: float
    anneal_steps: float
    logvar_max: float
    recon_x: str = "l2"
    recon_y: str = "l2"

    def __post_init__(self):
        for side in ("recon_x", "recon_y"):
            if getattr(self, side) not in RECONSTRUCTIONS:
                raise ValueError(
                    f"IIAE {side} loss {getattr(self, side)!r} is not one of {sorted(RECONSTRUCTIONS)}; "
                    "set config.iiae.recon_loss to 'l2', 'l1' or 'auto'."
                )


def split_moments(out: jax.Array, logvar_max: float) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) of a Gaussian head: the two halves of the last axis, the
    log-variance clipped from above only (§1.1). The hard min has zero gradient above the
    cap, as the reference's."""
    mean, logvar = jnp.split(out, 2, axis=-1)
    return mean, jnp.minimum(logvar, logvar_max)


def join_codes(z_s: jax.Array, z_e: jax.Array) -> jax.Array:
    """The decoder input [z^s, z^e] (z^s first). A spatial z^s [N, h, w, C] takes the
    exclusive vector z^e tiled over its grid as extra channels (§1.3, 8×8×(128+8))."""
    if z_s.ndim > 2:
        grid = z_s.shape[1:-1]
        z_e = jnp.broadcast_to(z_e[:, None, None, :], (z_e.shape[0],) + grid + z_e.shape[-1:])
    return jnp.concatenate([z_s, z_e.astype(z_s.dtype)], axis=-1)


def anneal_factor(step: jax.Array, anneal_steps: float) -> jax.Array:
    """KL annealing c_t = 1 − exp(−t/ar), t = updates done before this one, stop-gradient.

    It multiplies only the N(0, I)-prior KLs, never KL_rx / KL_ry (§2, §7.5).
    """
    if anneal_steps <= 0:
        return jnp.ones((), jnp.float32)
    t = jnp.asarray(step, jnp.float32)
    return jax.lax.stop_gradient(1.0 - jnp.exp(-t / anneal_steps))


def iiae_loss(
    outputs: dict[str, Any], x: jax.Array, y: jax.Array, step: jax.Array, cfg: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The IIAE objective of iiae.md §2 from the networks' outputs.

    Args:
      outputs: 'q_x', 'q_y', 'q_s', 'r_x', 'r_y' → (mean, log-variance) of q(z^x|x),
        q(z^y|y), q(z^s|x,y), r(z^s|x), r(z^s|y); 'x_hat', 'y_hat' → decoder means of
        x and y from the sampled latents. Log-variances are clipped at ``cfg.logvar_max``
        here as well (the clip is idempotent, so the model's already clipped moments pass
        unchanged), which makes this function the whole §2 formula on its own.
      x, y: the data batch.
      step: t, the number of updates before this one (0 at the first).
      cfg: the weights.

    Returns:
      (L, terms) with

        L = (β+λ)·w·(rec_x + rec_y) + c_t(β+λ)(kl_x + kl_y) + c_t·β·kl_s + λ(kl_rx + kl_ry),

      w = ``recon_weight``; the terms unweighted: rec_x = mean error of x̂ (so the
      reference's R_x = w·rec_x), kl_x = KL(q(z^x|x) ‖ N(0, I)), kl_s = KL(q(z^s|x,y) ‖
      N(0, I)), kl_rx = KL(q(z^s|x,y) ‖ r(z^s|x)) (gradients into both sides), each closed
      form, summed over latent dims and averaged over the batch; anneal = c_t; total = L.
    """
    m = {k: (outputs[k][0], jnp.minimum(outputs[k][1], cfg.logvar_max)) for k in GAUSSIANS}
    terms = {
        "rec_x": RECONSTRUCTIONS[cfg.recon_x](outputs["x_hat"], x),
        "rec_y": RECONSTRUCTIONS[cfg.recon_y](outputs["y_hat"], y),
        "kl_x": losses.gaussian_kl_standard_normal(*m["q_x"]),
        "kl_y": losses.gaussian_kl_standard_normal(*m["q_y"]),
        "kl_s": losses.gaussian_kl_standard_normal(*m["q_s"]),
        "kl_rx": losses.gaussian_kl(*m["q_s"], *m["r_x"]),
        "kl_ry": losses.gaussian_kl(*m["q_s"], *m["r_y"]),
        "anneal": anneal_factor(step, cfg.anneal_steps),
    }
    c, b, lam = terms["anneal"], cfg.beta, cfg.lam
    terms["total"] = (
        (b + lam) * cfg.recon_weight * (terms["rec_x"] + terms["rec_y"])
        + c * (b + lam) * (terms["kl_x"] + terms["kl_y"])
        + c * b * terms["kl_s"]
        + lam * (terms["kl_rx"] + terms["kl_ry"])
    )
    return terms["total"], terms


# --------------------------------------------------------------------------- architecture


def _widths(value) -> tuple[int, ...]:
    """A width or a sequence of widths from the config, as a tuple."""
    return (int(value),) if isinstance(value, (int, float)) else tuple(int(v) for v in value)


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
        hidden = _widths(c.hidden)
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
            joint_hidden=_widths(c.joint_hidden),
            decoder_hidden=_widths(c.decoder_hidden),
            conv_base=int(c.conv_base),
            conv_hidden=_widths(c.conv_hidden),
            decoder_dropout=float(c.decoder_dropout),
            out_act_x=out_acts[0],
            out_act_y=out_acts[1],
            bn_momentum=float(c.bn_momentum),
            bn_epsilon=float(c.bn_epsilon),
        )

    @property
    def shared_shape(self) -> tuple[int, ...]:
        """Shape of one z^s: a vector here; a grid for ``iiae_spatial.SpatialArch``."""
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
        for i in range(nets.num_halvings(h.shape[1])):
            h = Conv2x(
                self.base * 2**i,
                (4, 4),
                padding="SAME",
                kernel_init=CONV_INIT,
                use_bias=False,
                dtype=nets.layer_dtype(),
            )(h)
            h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
            h = nn.leaky_relu(h, LRELU_SLOPE)
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
            h = ConvTranspose2x(
                width,
                (4, 4),
                padding="SAME",
                kernel_init=CONV_INIT,
                use_bias=last,
                dtype=nets.layer_dtype(),
            )(h)
            if not last:
                h = self.block(h, i + 1, train, dropout)
        if n_up == 0:  # 4×4 images: the Dense block already produced the grid
            h = nn.Dense(channels, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)
        return nets.activation(self.out_act)(h)


# --------------------------------------------------------------------------- networks


class IIAENetworks(nn.Module):
    """q(z^x|x), q(z^y|y), r(z^s|x), r(z^s|y), q(z^s|x,y) and the decoders (§1)."""

    arch: Arch
    logvar_max: float

    def setup(self):
        a = self.arch
        self.q_x = a.exclusive_encoder("q_x")
        self.q_y = a.exclusive_encoder("q_y")
        self.r_x_trunk = a.shared_trunk("r_x_trunk")
        self.r_y_trunk = a.shared_trunk("r_y_trunk")
        self.r_x_head = a.shared_head("r_x_head")
        self.r_y_head = a.shared_head("r_y_head")
        self.q_s = a.joint_encoder("q_s")
        self.dec_x = a.decoder(a.x_shape, a.out_act_x, "dec_x")
        self.dec_y = a.decoder(a.y_shape, a.out_act_y, "dec_y")

    def moments(self, out):
        return split_moments(out, self.logvar_max)

    def encode(self, x, y, train):
        """(mean, clipped log-variance) of every posterior; the r-trunks run once and feed
        both their heads and q(z^s|x,y)."""
        h_x, h_y = self.r_x_trunk(x, train), self.r_y_trunk(y, train)
        return {
            "q_x": self.moments(self.q_x(x, train)),
            "q_y": self.moments(self.q_y(y, train)),
            "q_s": self.moments(self.q_s(jnp.concatenate([h_x, h_y], axis=-1), train)),
            "r_x": self.moments(self.r_x_head(h_x, train)),
            "r_y": self.moments(self.r_y_head(h_y, train)),
        }

    def decode_x(self, z_s, z_x, train, dropout=False):
        return self.dec_x(join_codes(z_s, z_x), train, dropout)

    def decode_y(self, z_s, z_y, train, dropout=False):
        return self.dec_y(join_codes(z_s, z_y), train, dropout)

    def __call__(self, x, y, eps, *, train: bool, dropout: bool):
        """The training pass: every posterior, and x̂ = Dec_x(z^s, z^x), ŷ = Dec_y(z^s, z^y)
        from one reparameterised sample z = μ + e^{ℓ/2}·ε of q(z^s|x,y), q(z^x|x), q(z^y|y)
        (``eps`` holds the standard-normal ε for each)."""
        out = self.encode(x, y, train)
        z = {k: out[k][0] + jnp.exp(0.5 * out[k][1]) * eps[k] for k in SAMPLED}
        out["x_hat"] = self.decode_x(z["q_s"], z["q_x"], train, dropout)
        out["y_hat"] = self.decode_y(z["q_s"], z["q_y"], train, dropout)
        return out

    # Inference (evaluation, §3.4 and §5.4) ------------------------------------------
    def embed(self, x, y, train):
        """Retrieval/probe codes: the means of r(z^s|x), r(z^s|y) and q(z^s|x,y)."""
        m = self.encode(x, y, train)
        return {"z_x": m["r_x"][0], "z_y": m["r_y"][0], "z_xy": m["q_s"][0]}

    def x2y(self, x, z_y, train):
        """y = Dec_y(mean of r(z^s|x), z^y) (the reference's translation with a drawn z^y)."""
        z_s = self.moments(self.r_x_head(self.r_x_trunk(x, train), train))[0]
        return self.decode_y(z_s, z_y, train)

    def y2x(self, y, z_x, train):
        z_s = self.moments(self.r_y_head(self.r_y_trunk(y, train), train))[0]
        return self.decode_x(z_s, z_x, train)

    def joint(self, z_s, z_x, z_y, train):
        return self.decode_x(z_s, z_x, train), self.decode_y(z_s, z_y, train)

    def exclusive(self, x, y, train):
        """Exclusive codes: the means of q(z^x|x) and q(z^y|y) (the reference's eR_X2Y,
        eR_Y2X, whose cross-domain retrieval should sit at chance, §5.3)."""
        return {
            "e_x": self.moments(self.q_x(x, train))[0],
            "e_y": self.moments(self.q_y(y, train))[0],
        }

    def x2y_style(self, x, y_style, train):
        """Dec_y(mean of r(z^s|x), mean of q(z^y|y_style)): x's content in another y's
        exclusive factor (§5.4; with y_style = x's partner this is ``outputsY_fromX``)."""
        return self.x2y(x, self.moments(self.q_y(y_style, train))[0], train)

    def y2x_style(self, y, x_style, train):
        return self.y2x(y, self.moments(self.q_x(x_style, train))[0], train)

    def reconstruct(self, x, y, train):
        """Decoders on the posterior means of q(z^s|x,y), q(z^x|x), q(z^y|y)."""
        m = self.encode(x, y, train)
        return (
            self.decode_x(m["q_s"][0], m["q_x"][0], train),
            self.decode_y(m["q_s"][0], m["q_y"][0], train),
        )


# --------------------------------------------------------------------------- state, update


@struct.dataclass
class IIAEState:
    step: jax.Array
    rng: jax.Array  # per-step keys are fold_in(rng, step)
    params: Any
    batch_stats: Any  # BatchNorm running averages (used at evaluation)
    opt_state: Any


def resample_bn_scales(params, key):
    """BatchNorm scales γ ~ N(1, 0.02) as the reference's ``batchnorm`` (Flax starts at 1)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        names = [getattr(p, "key", "") for p in path]
        is_bn_scale = names[-1] == "scale" and len(names) > 1 and "BatchNorm" in names[-2]
        out.append(
            1.0 + BN_SCALE_STDDEV * jax.random.normal(k, leaf.shape, leaf.dtype)
            if is_bn_scale
            else leaf
        )
    return jax.tree_util.tree_unflatten(treedef, out)


def _is_image(dataset, side: str) -> bool:
    return len(getattr(dataset, f"{side}_shape")) == 3 or (
        getattr(dataset, f"{side}_image_shape", None) is not None
    )


def resolve_output_activations(setting: str, dataset) -> tuple[str, str]:
    """'auto': tanh for image data in [−1, 1] (the image reference), linear for feature
    vectors (the ZS reference); or one of 'tanh', 'none' for both sides."""
    if setting == "auto":
        return tuple("tanh" if _is_image(dataset, s) else "none" for s in ("x", "y"))
    if setting not in ("tanh", "none"):
        raise ValueError(
            f"config.iiae.decoder_out_act must be 'auto', 'tanh' or 'none', got " f"{setting!r}."
        )
    return setting, setting


def resolve_reconstruction(setting: str, family: str) -> str:
    """'auto': 'l2' (MSE, ZS reference) for the mlp family, 'l1' (image reference) for conv."""
    if setting == "auto":
        return "l1" if family == "conv" else "l2"
    return setting


class IIAEModel:
    """The Interaction Information Auto-Encoder behind the ``PairedModel`` interface."""

    name = "iiae"

    def __init__(self, config, dataset):
        self.config = config
        c = config.iiae
        family = config.model.family
        arch_cls = Arch
        shared_code = c.get("shared_code", "flat")
        if shared_code == "spatial":  # the 256-px networks' 8×8×C z^s (§1.3)
            from wyner_jax.models.iiae_spatial import SpatialArch as arch_cls
        elif shared_code == "flat_fc":  # the Cars conv + FC networks (§1.3 "flat")
            from wyner_jax.models.iiae_flat import FlatArch as arch_cls
        elif shared_code != "flat":
            raise ValueError(
                "config.iiae.shared_code must be 'flat' (small images), 'spatial' (the 256-px "
                f"conv networks) or 'flat_fc' (the Cars networks), got {shared_code!r}."
            )
        if family == "sentence":  # captions (CUB): wyner_jax/models/iiae_sentence.py
            from wyner_jax.models.iiae_sentence import SentenceIIAEArch

            arch_cls = SentenceIIAEArch.for_dataset(
                getattr(dataset, "vocab_size", 0), config.model.sentence
            )
        self.arch = arch_cls.from_config(
            family,
            c,
            dataset.x_shape,
            dataset.y_shape,
            resolve_output_activations(c.decoder_out_act, dataset),
        )
        recon = resolve_reconstruction(c.recon_loss, family)
        self.loss_cfg = LossConfig(
            beta=float(c.beta),
            lam=float(c.lam),
            recon_weight=float(c.recon_weight),
            anneal_steps=float(c.anneal_steps),
            logvar_max=float(c.logvar_max),
            recon_x=recon,
            recon_y="token_ce" if family == "sentence" else recon,
        )
        self.net = IIAENetworks(self.arch, float(c.logvar_max))
        # Generated captions are returned as argmax token ids; other y as they are.
        self.y_output = getattr(self.arch, "y_output", lambda y: y)
        # One Adam over every network: lr 2e-4, β1 0.5, β2 0.999, eps 1e-8 (§5.2, §8).
        self.optimizer = optim.make_optimizer(c, c.lr)
        self.bn_batch_stats_at_eval = bool(c.bn_batch_stats_at_eval)
        self.compute_dtype = nets.check_compute_dtype(config.model.compute_dtype)

    # ------------------------------------------------------------------ randomness
    def sample_eps(self, key, n: int) -> dict[str, jax.Array]:
        """Standard-normal ε for the reparameterised samples of q_x, q_y, q_s."""
        shapes = {
            "q_x": (self.arch.exclusive_dim,),
            "q_y": (self.arch.exclusive_dim,),
            "q_s": self.arch.shared_shape,
        }
        keys = jax.random.split(key, len(shapes))
        return {k: jax.random.normal(kk, (n,) + d) for kk, (k, d) in zip(keys, shapes.items())}

    # ------------------------------------------------------------------ init
    def init(self, rng, batch) -> IIAEState:
        rng = jnp.asarray(rng)
        k_params, k_dropout, k_eps, k_bn = jax.random.split(rng, 4)
        x, y = batch["x"], batch["y"]
        variables = self.net.init(
            {"params": k_params, "dropout": k_dropout},
            x,
            y,
            self.sample_eps(k_eps, x.shape[0]),
            train=True,
            dropout=True,
        )
        params = resample_bn_scales(variables["params"], k_bn)
        return IIAEState(
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.fold_in(rng, 1),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.optimizer.init(params),
        )

    # ------------------------------------------------------------------ the update
    def loss_and_stats(self, params, batch_stats, batch, step, key):
        """L (§2) on one batch, with its terms and the updated BatchNorm statistics."""
        x, y = batch["x"], batch["y"]
        k_eps, k_dropout = jax.random.split(key)
        out, upd = self.net.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            y,
            self.sample_eps(k_eps, x.shape[0]),
            train=True,
            dropout=True,
            rngs={"dropout": k_dropout},
            mutable=["batch_stats"],
        )
        total, terms = iiae_loss(nets.float32(out), x, y, step, self.loss_cfg)
        return total, (terms, upd["batch_stats"])

    def train_step(self, state: IIAEState, batch):
        """One Adam step on L; BatchNorm running averages take this batch's statistics.

        The networks compute in ``config.model.compute_dtype``; parameters and L are float32."""
        with nets.compute_dtype(self.compute_dtype):
            return self._train_step(state, batch)

    def _train_step(self, state: IIAEState, batch):
        key = jax.random.fold_in(state.rng, state.step)
        (_, (terms, batch_stats)), grads = jax.value_and_grad(self.loss_and_stats, has_aux=True)(
            state.params, state.batch_stats, batch, state.step, key
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )
        return new_state, {f"loss/{k}": v for k, v in terms.items()}

    # ------------------------------------------------------------------ inference
    def eval_variables(self, state: IIAEState):
        """The trained weights themselves: the reference keeps no EMA."""
        return {"params": state.params, "batch_stats": state.batch_stats}

    def _apply(self, variables, *args, method):
        with nets.compute_dtype(self.compute_dtype):
            if self.bn_batch_stats_at_eval:
                # Batch statistics write new running averages; evaluation discards them so it
                # never changes the training state.
                out, _ = self.net.apply(
                    variables, *args, train=True, method=method, mutable=["batch_stats"]
                )
            else:
                out = self.net.apply(variables, *args, train=False, method=method)
        return nets.float32(out)

    def embed(self, variables, x, y):
        return self._apply(variables, x, y, method=IIAENetworks.embed)

    def translate_x2y(self, variables, x, key):
        z_y = jax.random.normal(key, (x.shape[0], self.arch.exclusive_dim))
        return self.y_output(self._apply(variables, x, z_y, method=IIAENetworks.x2y))

    def translate_y2x(self, variables, y, key):
        z_x = jax.random.normal(key, (y.shape[0], self.arch.exclusive_dim))
        return self._apply(variables, y, z_x, method=IIAENetworks.y2x)

    def sample_joint(self, variables, key, n):
        k_s, k_x, k_y = jax.random.split(key, 3)
        a = self.arch
        x, y = self._apply(
            variables,
            jax.random.normal(k_s, (n,) + a.shared_shape),
            jax.random.normal(k_x, (n, a.exclusive_dim)),
            jax.random.normal(k_y, (n, a.exclusive_dim)),
            method=IIAENetworks.joint,
        )
        return x, self.y_output(y)

    def reconstruct(self, variables, x, y):
        rx, ry = self._apply(variables, x, y, method=IIAENetworks.reconstruct)
        return rx, self.y_output(ry)

    # Optional inference methods (the evaluation uses them when a model has them).
    def embed_exclusive(self, variables, x, y):
        """{'e_x', 'e_y'}: the exclusive codes of x alone and y alone."""
        return self._apply(variables, x, y, method=IIAENetworks.exclusive)

    def translate_x2y_style(self, variables, x, y_style):
        """y with x's shared content and the exclusive code of y_style (row by row)."""
        return self._apply(variables, x, y_style, method=IIAENetworks.x2y_style)

    def translate_y2x_style(self, variables, y, x_style):
        return self._apply(variables, y, x_style, method=IIAENetworks.y2x_style)

    def capabilities(self, state) -> set[str]:
        """Every IIAE network always exists, so every inference method is available."""
        del state
        return {"embed", "x2y", "y2x", "joint", "reconstruct"}
