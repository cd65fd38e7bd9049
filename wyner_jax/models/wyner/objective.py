"""The Wyner objective (wyner-model.md §2.3–§2.5) as pure functions of the estimators' logits
and the generator's reconstruction pairs: no networks, no model object, jit-compilable and
testable alone (as ``iiae.iiae_loss`` is).

* ``discriminator_loss``: L_D = Σ_k w_k·(−J_k), J_k the density-ratio objective of estimator
  k (§2.3);
* ``generator_terms``: every generator term, unweighted, keyed by its λ name (§2.4–§2.5);
* ``generator_loss``: L_G = Σ_k λ_k·term_k, each term weighted by ``cfg.lambdas[k]``.

The CI penalty λ_CI·I(X,Y;Z) is the term ``var_ci``: ``losses.ci_penalty`` of the CI
estimator's logits on unshuffled samples, weighted by ``lambdas["var_ci"]``, both in
``generator_terms`` / ``generator_loss`` below.
"""

from __future__ import annotations

import dataclasses

import jax

from wyner_jax import losses, nets
from wyner_jax.models.wyner.terms import RECONSTRUCTIONS, Terms


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The settings of the Wyner objective, from ``config.loss`` (validated).

    lambdas: term name → λ (``config.loss.lambdas``; the names of ``terms.py``).
    discriminator: the density-ratio objective J (a key of ``losses.DENSITY_RATIO_OBJECTIVES``).
    generator: the plug-in divergence S (a key of ``losses.GENERATOR_PLUGINS``).
    recon_x, recon_y, recon_latent: the reconstruction losses of each side
      (keys of ``losses.RECONSTRUCTION_LOSSES``).
    label_smoothing: a of the JS objective (1 = none).
    uniform_disc_weights: L_D weighs every estimator by 1 (the reference) instead of its λ.
    """

    lambdas: dict[str, float]
    discriminator: str
    generator: str
    recon_x: str
    recon_y: str
    recon_latent: str
    label_smoothing: float
    uniform_disc_weights: bool

    @classmethod
    def from_config(cls, l, captions: bool) -> "LossConfig":
        """From ``config.loss``; ``captions``: y are token captions (family 'sentence')."""
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
        for side in ("recon_x", "recon_y", "recon_latent"):
            if (l[side] == "token_ce") != (captions and side == "recon_y"):
                raise ValueError(
                    f"config.loss.{side} = {l[side]!r}: 'token_ce' (token cross-entropy) is the "
                    "reconstruction of captions only, and captions need it: with "
                    "config.model.family='sentence' set --config.loss.recon_y=token_ce, "
                    "otherwise use l1, l2 or cosine."
                )
        return cls(
            lambdas={k: float(v) for k, v in l.lambdas.items()},
            discriminator=l.discriminator,
            generator=l.generator,
            recon_x=l.recon_x,
            recon_y=l.recon_y,
            recon_latent=l.recon_latent,
            label_smoothing=float(l.label_smoothing),
            uniform_disc_weights=bool(l.uniform_disc_weights),
        )


def discriminator_loss(
    logits: dict[str, tuple[jax.Array, jax.Array]], cfg: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_D = Σ_k w_k·(−J_k) over every estimator k of ``logits`` (§2.3).

    Args:
      logits: estimator name → (T_k on P-samples, T_k on Q-samples), T_k ≈ log P/Q.
      cfg: J (``cfg.discriminator``, with ``cfg.label_smoothing`` for 'js') and the weights:
        w_k = 1 with ``cfg.uniform_disc_weights`` (the reference), else λ_k.

    Returns:
      (L_D, {'disc/<k>': −J_k unweighted, ..., 'disc/total': L_D}).
    """
    objective = losses.DENSITY_RATIO_OBJECTIVES[cfg.discriminator]
    logits = nets.float32(logits)
    terms = {}
    total = 0.0
    for k, (t_p, t_q) in logits.items():
        j = (
            losses.js_objective(t_p, t_q, label_smoothing=cfg.label_smoothing)
            if cfg.discriminator == "js"
            else objective(t_p, t_q)
        )
        terms[f"disc/{k}"] = -j
        w = 1.0 if cfg.uniform_disc_weights else cfg.lambdas[k]
        if w:  # a weight-0 estimator is logged only: no backward pass through it
            total = total + w * (-j)
    terms["disc/total"] = total
    return total, terms


def generator_terms(
    logits: dict[str, tuple[jax.Array, jax.Array]], rec: dict, terms: Terms, cfg: LossConfig
) -> dict[str, jax.Array]:
    """Every active generator term, unweighted, keyed by its λ name (§2.4–§2.5).

    * distribution matching (``terms.pairs``: j, cx2y, cy2x, c, mx, my) and latent matching
      (``terms.agg``): S_k = the plug-in divergence ``cfg.generator`` of estimator k's logits
      (symmetric KL: mean_P T − mean_Q T);
    * CI penalties (``terms.ci``): ``var_ci`` is the paper's I(X,Y;Z) penalty, j_ci, cx2y_ci,
      cy2x_ci the same on the other sample sets: E_P[T_k], the mean logit on unshuffled
      (x, y, z) (``losses.ci_penalty``);
    * reconstructions (``terms.rec``): ``rec[k]`` = (target, prediction), the loss of the side
      ``terms.RECONSTRUCTIONS[k]`` names; several targets (j_rec_zuv's z, u, v) give one
      loss each, summed, not one mean over [z, u, v] that would weigh them by their widths.
    """
    plugin = losses.GENERATOR_PLUGINS[cfg.generator]
    logits, rec = nets.float32(logits), nets.float32(rec)
    recon = losses.RECONSTRUCTION_LOSSES
    side_loss = {
        "x": recon[cfg.recon_x],
        "y": recon[cfg.recon_y],
        "latent": recon[cfg.recon_latent],
    }
    values = {}
    for k in terms.pairs + terms.agg:
        values[k] = plugin(*logits[k])
    for k in terms.ci:  # var_ci: the CI penalty, weighted by λ_var_ci in generator_loss
        values[k] = losses.ci_penalty(logits[k][0])
    for k in terms.rec:
        target, pred = rec[k]
        loss = side_loss[RECONSTRUCTIONS[k]]
        if isinstance(target, tuple):
            values[k] = sum(loss(p, t) for p, t in zip(pred, target, strict=True))
        else:
            values[k] = loss(pred, target)
    return values


def generator_loss(
    logits: dict[str, tuple[jax.Array, jax.Array]], rec: dict, terms: Terms, cfg: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_G = Σ_k λ_k·term_k (§2.5): ``generator_terms`` weighted by ``cfg.lambdas[k]``.

    λ_k = 0 terms (the CI estimates the reference trains at λ_CI = 0) are logged but left out
    of the sum, so no backward pass runs through them: 0·∂term is no update.

    Returns:
      (L_G, {'gen/<k>': term_k unweighted, ..., 'gen/total': L_G}).
    """
    values = generator_terms(logits, rec, terms, cfg)
    total = sum(cfg.lambdas[k] * v for k, v in values.items() if cfg.lambdas[k])
    logged = {f"gen/{k}": v for k, v in values.items()}
    logged["gen/total"] = total
    return total, logged
