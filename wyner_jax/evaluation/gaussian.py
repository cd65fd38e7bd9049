"""Closed-form checks on jointly Gaussian pairs (unit variances, per-coordinate correlation rho).

For the Wyner model on this data the ideal conditional generator y ~ p(y | x) has
E[y | x] = rho x and Var[y | x] = 1 - rho², and the Wyner common information is
artanh(|rho|) nats per coordinate pair.
"""

from __future__ import annotations

import numpy as np


def regression_slope_and_residual_variance(
    x: np.ndarray, y_generated: np.ndarray
) -> tuple[float, float]:
    """Least-squares fit y ≈ a + b x per dimension; returns (mean slope b, mean residual variance).

    Used on conditional samples y' ~ p_model(y | x) (paper: x2y generation). The exact
    conditional of the data gives slope rho and residual variance 1 - rho². The residual
    variance is the mean squared residual (divisor N; N is large here).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y_generated, np.float64)
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y_generated must have the same shape, got {x.shape} and {y.shape}."
        )
    if len(x) < 3:
        raise ValueError(
            f"Need at least 3 samples to fit a slope and a residual variance, got {len(x)}."
        )
    xc, yc = x - x.mean(0), y - y.mean(0)
    var_x = np.mean(xc**2, axis=0)
    if np.any(var_x == 0):
        raise ValueError("x is constant in some dimension, so the regression slope is undefined.")
    slope = np.mean(xc * yc, axis=0) / var_x
    resid = yc - slope * xc
    return float(slope.mean()), float(np.mean(resid**2, axis=0).mean())


def explained_variance(code: np.ndarray, target: np.ndarray) -> float:
    """R², the share of ``target``'s variance that a least-squares fit (with intercept) on
    ``code`` explains, per target column, averaged over the columns.

    Which common variable the joint encoder found: for Wyner's optimal Z of a Gaussian pair
    (x = √ρ·Z + √(1−ρ)·N_x, y likewise) R² is ρ for x and for y alike; a code that is x
    itself gives 1 for x and ρ² for y.
    """
    z = np.asarray(code, np.float64).reshape(len(code), -1)
    t = np.asarray(target, np.float64).reshape(len(target), -1)
    if len(z) != len(t) or len(z) <= z.shape[1] + 1:
        raise ValueError(
            f"Need as many code rows as target rows, and more rows than code dimensions + 1; "
            f"got {z.shape} and {t.shape}."
        )
    design = np.concatenate([np.ones((len(z), 1)), z], axis=1)
    coef, *_ = np.linalg.lstsq(design, t, rcond=None)
    resid = t - design @ coef
    return float(np.mean(1.0 - resid.var(axis=0) / t.var(axis=0)))


def joint_covariance(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per-coordinate moments of joint samples (x, y) ~ p_model(x, y), averaged over coordinates.

    Returns ``var_x``, ``var_y`` and ``cov_xy`` (divisor N). The data's joint law has
    [[1, rho], [rho, 1]] per coordinate pair; the model's joint samples (z, u, v from the prior
    through g_x, g_y) should match it.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"Need paired samples of one shape, got x {x.shape} and y {y.shape}.")
    xc, yc = x - x.mean(0), y - y.mean(0)
    return {
        "var_x": float(np.mean(xc**2)),
        "var_y": float(np.mean(yc**2)),
        "cov_xy": float(np.mean(xc * yc)),
    }


def gaussian_conditional_closed_form(rho: float) -> tuple[float, float]:
    """(slope, residual variance) = (rho, 1 - rho²) of the true p(y | x)."""
    return float(rho), float(1.0 - rho**2)


def wyner_common_information_gaussian(rho: float, dim: int = 1) -> float:
    """Wyner's common information C(X; Y) of jointly Gaussian pairs, in nats.

    Per coordinate pair with correlation rho it is ½ log((1 + |rho|) / (1 - |rho|)) =
    artanh(|rho|); independent coordinates add, hence the factor `dim`. Infinite for |rho| = 1.
    The evaluation reports it as ``gaussian/closed_form/wyner_ci``: a function of the config's
    rho, not a measurement of the model.
    """
    r = abs(float(rho))
    if r > 1.0:
        raise ValueError(f"rho is a correlation and must lie in [-1, 1], got {rho}.")
    return float("inf") if r == 1.0 else dim * float(np.arctanh(r))


def wyner_ci_under_instance_noise(
    rho: float, sigma_xy: float, sigma_z: float, dim: int = 1
) -> float:
    """I(X', Y'; Z') in nats for Wyner's optimal Z, seen through the CI discriminator's noise.

    The CI estimator (λ_var_ci, wyner-model.md §2.3) separates q(x, y, z) from q(x, y) q(z)
    with instance noise on every input: X' = X + σ_xy ε₁, Y' = Y + σ_xy ε₂, Z' = Z + σ_z ε₃.
    What a perfect estimator reports for the Wyner-optimal encoder is therefore this number,
    not C(X; Y) = artanh|ρ|.

    Per coordinate pair, the optimal Z ~ N(0, 1) gives X = √|ρ| Z + √(1 − |ρ|) U and
    Y = ±√|ρ| Z + √(1 − |ρ|) V with U, V independent N(0, 1). Given Z, X' and Y' are two
    independent observations of √|ρ| Z with noise variance s = 1 − |ρ| + σ_xy², so
    Var(Z | X', Y') = s / (s + 2|ρ|), and

        I(X', Y'; Z') = ½ log[(1 + σ_z²) / (σ_z² + s / (s + 2|ρ|))].

    At σ_xy = σ_z = 0 this is ½ log((1 + |ρ|) / (1 − |ρ|)) = artanh|ρ|. Independent
    coordinates add, hence ``dim``. It assumes Z scaled to the prior N(0, 1), which the joint
    matching enforces (noise on Z makes the value scale-dependent).
    """
    r = abs(float(rho))
    if r >= 1.0:
        raise ValueError(f"rho must lie strictly inside (-1, 1), got {rho}.")
    if sigma_xy < 0 or sigma_z < 0:
        raise ValueError(f"noise scales must be >= 0, got sigma_xy={sigma_xy}, sigma_z={sigma_z}.")
    s = 1.0 - r + sigma_xy**2
    posterior_var = s / (s + 2.0 * r)
    if sigma_z == 0.0 and posterior_var == 0.0:
        return float("inf")
    return dim * 0.5 * float(np.log((1.0 + sigma_z**2) / (sigma_z**2 + posterior_var)))


def gaussian_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(A; B) in nats of the Gaussian with the samples' covariance: ½ log(|Σ_A||Σ_B| / |Σ|).

    Exact for jointly Gaussian (A, B); for other laws it is the information of the Gaussian
    with the same second moments. Used on the model's own (x', y', z') draws as an estimate of
    the CI that does not go through the trained discriminator.
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if len(a) != len(b) or len(a) <= a.shape[1] + b.shape[1]:
        raise ValueError(f"Need more paired rows than dimensions, got {a.shape} and {b.shape}.")
    cov = np.cov(np.concatenate([a, b], axis=1), rowvar=False, ddof=0)
    k = a.shape[1]
    logdet_a, logdet_b, logdet = (np.linalg.slogdet(m)[1] for m in (cov[:k, :k], cov[k:, k:], cov))
    return 0.5 * float(logdet_a + logdet_b - logdet)
