"""The IIAE objective (iiae.md §2) as a pure function of the networks' outputs:

    L = (β+λ)(R_x + R_y) + c_t(β+λ)(KL_x + KL_y) + c_t·β·KL_s + λ(KL_rx + KL_ry),

i.e. β·(joint VAE bound) + λ·(the bound with r(z^s|x), r(z^s|y) as the z^s prior) once
c_t = 1 − exp(−t/ar) has reached 1; every KL closed form. See ``iiae_loss``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from wyner_jax import losses

RECONSTRUCTIONS = {
    "l1": losses.l1_loss,
    "l2": losses.l2_loss,
    "token_ce": losses.caption_cross_entropy,  # captions (family 'sentence')
}
# The posteriors whose moments the loss reads.
GAUSSIANS = ("q_x", "q_y", "q_s", "r_x", "r_y")


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

    @classmethod
    def from_config(cls, c, family: str) -> "LossConfig":
        """From ``config.iiae`` and the network family (captions take the token
        cross-entropy on y; ``recon_loss`` 'auto' follows the family)."""
        recon = resolve_reconstruction(c.recon_loss, family)
        return cls(
            beta=float(c.beta),
            lam=float(c.lam),
            recon_weight=float(c.recon_weight),
            anneal_steps=float(c.anneal_steps),
            logvar_max=float(c.logvar_max),
            recon_x=recon,
            recon_y="token_ce" if family == "sentence" else recon,
        )


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


def resolve_reconstruction(setting: str, family: str) -> str:
    """'auto': 'l2' (MSE, ZS reference) for the mlp family, 'l1' (image reference) for conv."""
    if setting == "auto":
        return "l1" if family == "conv" else "l2"
    return setting
