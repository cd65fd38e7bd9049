"""Jointly Gaussian pairs against their closed forms (issue 21).

* ``gaussian/x2y_slope``, ``gaussian/x2y_resid_var``: least-squares fit of generated
  y ~ p(y|x) on the test x (closed forms ρ and 1 − ρ²); the same for ``y2x``;
* ``gaussian/joint_var_x``, ``joint_var_y``, ``joint_cov_xy``: second moments of joint samples
  (closed form [[1, ρ], [ρ, 1]]);
* ``gaussian/z_r2_x``, ``gaussian/z_r2_y``: the share of x's (y's) variance that a linear fit
  on the joint code z ~ q(z|x, y) explains: which common variable the model found. Wyner's
  optimal Z gives |ρ| on both sides (``gaussian/closed_form/z_r2``); a code that is x itself
  gives 1 and ρ²;
* ``gaussian/rho`` and ``gaussian/closed_form/wyner_ci`` (dim·artanh|ρ|): not measurements,
  the data's correlation and Wyner's common information computed from the config, for
  reference; the CI estimates of the trained model in ``gaussian_ci_metrics``.
"""

from __future__ import annotations

import jax
import numpy as np

from wyner_jax.evaluation import base
from wyner_jax.evaluation.gaussian import (
    explained_variance,
    gaussian_mutual_information,
    joint_covariance,
    regression_slope_and_residual_variance,
    wyner_ci_under_instance_noise,
    wyner_common_information_gaussian,
)
from wyner_jax.evaluation.inference import EVAL_SEED, Inference


def run(ctx: base.EvalContext) -> base.Result:
    dataset, config, gen, test = ctx.dataset, ctx.config, ctx.gen, ctx.dataset.test
    metrics = {}
    for direction, cond in (("x2y", test.x), ("y2x", test.y)):
        if direction in gen:
            slope, resid = regression_slope_and_residual_variance(cond, gen[direction])
            metrics[f"gaussian/{direction}_slope"] = float(slope)
            metrics[f"gaussian/{direction}_resid_var"] = float(resid)
    if "joint" in gen:
        for k, v in joint_covariance(*gen["joint"]).items():
            metrics[f"gaussian/joint_{k}"] = v
    metrics["gaussian/rho"] = float(config.data.rho)
    # From the config, not from the model: named closed_form/ so nobody reads it as an
    # estimate. The estimates follow (gaussian_ci_metrics).
    metrics["gaussian/closed_form/wyner_ci"] = float(
        wyner_common_information_gaussian(config.data.rho) * dataset.x_shape[0]
    )
    if "z_xy" in ctx.emb_test:
        # Which common variable was learned: Wyner's Z explains ρ of each side's variance.
        for side, target in (("x", test.x), ("y", test.y)):
            metrics[f"gaussian/z_r2_{side}"] = explained_variance(ctx.emb_test["z_xy"], target)
        metrics["gaussian/closed_form/z_r2"] = abs(float(config.data.rho))
    k_ci = jax.random.fold_in(ctx.key, 5)  # its own stream, apart from the context's four
    metrics.update(gaussian_ci_metrics(ctx.model, ctx.state, dataset, config, ctx.emb_test, k_ci))
    return metrics, {}


def gaussian_ci_metrics(model, state, dataset, config, emb_test, key) -> dict[str, float]:
    """The CI I(X,Y;Z) on Gaussian pairs: closed form under the CI discriminator's instance
    noise and two estimates of the trained model (Wyner model only; IIAE has no CI term).

    * ``gaussian/closed_form/ci_under_instance_noise``: what a perfect estimator reports for
      Wyner's optimal Z when x, y carry σ_xy and z carries σ_z noise (from the config).
    * ``gaussian/var_ci_estimate``: the trained CI discriminator's E_q[T] over the test set
      (the generator's ``gen/var_ci``, averaged over every test row, not one batch).
    * ``gaussian/ci_gaussian_fit``: the same information from the second moments of
      (x', y', z'), z from the evaluated joint encoder: no discriminator involved.
    """
    noise = config.loss.instance_noise
    if "z_xy" not in emb_test or not hasattr(model, "ci_estimate"):
        return {}
    sigma_xy, sigma_z = float(noise.xy), float(noise.z)
    test, dim = dataset.test, dataset.x_shape[0]
    out = {
        "gaussian/closed_form/ci_under_instance_noise": dim
        * wyner_ci_under_instance_noise(config.data.rho, sigma_xy, sigma_z)
    }
    rng = np.random.default_rng(EVAL_SEED)

    def noisy(a, sigma):
        return a + sigma * rng.standard_normal(a.shape)

    xy = np.concatenate([noisy(test.x, sigma_xy), noisy(test.y, sigma_xy)], axis=1)
    out["gaussian/ci_gaussian_fit"] = gaussian_mutual_information(
        xy, noisy(emb_test["z_xy"], sigma_z)
    )
    if "var_ci" in model.terms.ci:
        fn = Inference.compiled(model, "ci_estimate")
        bs, n = int(config.eval.batch_size), len(test.x)
        # Batch means weighted by batch sizes: the mean of T over every test row.
        total = sum(
            float(fn(state, test.x[s : s + bs], test.y[s : s + bs], jax.random.fold_in(key, i)))
            * len(test.x[s : s + bs])
            for i, s in enumerate(range(0, n, bs))
        )
        out["gaussian/var_ci_estimate"] = total / n
    return out


EVALUATOR = base.Evaluator("gaussian closed forms", base.gaussian_pairs, run)
