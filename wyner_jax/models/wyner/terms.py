"""The Wyner objective's term table (wyner-model.md §2.2–§2.4): which estimator sees which
sample sets, and which terms are active after the reference's guards.

Every term has one name, used alike as its λ in ``config.loss.lambdas``, its estimator's
parameter names (``E_<name>``, ``H_<name>``, ``A_<name>``) and its logged value
(``gen/<name>``, ``disc/<name>``). The terms' values and weights are computed in
``objective.py``; the networks that produce their inputs are ``generator.py`` and
``discriminator.py``.
"""

from __future__ import annotations

import dataclasses

from absl import logging

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
# CI estimators (§2.2): (x, y, z) of a sample set against (x, y, shuffled z). ``var_ci`` is
# the paper's common-information penalty λ_CI·I(X,Y;Z); ``objective.generator_terms`` computes
# it (``losses.ci_penalty``) and weighs it by λ_var_ci.
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


@dataclasses.dataclass(frozen=True)
class Terms:
    """The loss terms that are active, after the reference's guards (§2.4, §9)."""

    pairs: tuple[str, ...]
    ci: tuple[str, ...]
    agg: tuple[str, ...]
    rec: tuple[str, ...]

    @classmethod
    def from_lambdas(cls, lam) -> "Terms":
        """The terms of ``config.loss.lambdas`` that are active: λ > 0 (λ ≥ 0 for a CI
        estimator, which is trained and logged at λ = 0) and the reference's guard met."""
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
