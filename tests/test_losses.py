"""Tests of wyner_jax.losses against closed forms, quadrature and independent NumPy code.

Fixed seeds throughout. Monte Carlo estimates are compared with their closed forms at five
standard errors of the estimate (`_mc_tolerance`, from the per-sample terms themselves), and
float32 results with float64 NumPy at the rounding tolerance of `tests/tolerances.py`.

Speed: on CPU every eager JAX op (per shape) is a separate XLA compilation, which costs far
more than the arithmetic here. So data are drawn with NumPy, each loss is evaluated through
one cached `jax.jit` wrapper (the eager path is compared with the jitted one in the last
test), and the trained-discriminator tests train all their networks in one jitted `lax.scan`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

from tests.tolerances import approx, assert_close, sampling_tolerance, tolerance
from wyner_jax import losses


@functools.cache
def _jitted(fn):
    """One jit wrapper per loss function, so repeated calls with one shape compile once."""
    static = ("label_smoothing",) if fn is losses.js_objective else ()
    return jax.jit(fn, static_argnames=static)


def _value(fn, *args, **kwargs) -> float:
    """fn(*args) evaluated under jit, as a Python float."""
    return float(_jitted(fn)(*args, **kwargs))


# P = N(0, 1), Q = N(1, 1.2²). σ_Q² < 2σ_P² and σ_P² < 2σ_Q², so p/q and q/p have finite
# variance under Q and P: the exponential terms of DV and NJW have finite-variance MC estimates.
MU_P, SD_P = 0.0, 1.0
MU_Q, SD_Q = 1.0, 1.2


def _kl_normal(mu1, sd1, mu2, sd2):
    """Closed-form KL(N(mu1, sd1²) ‖ N(mu2, sd2²)) in 1-d."""
    return math.log(sd2 / sd1) + (sd1**2 + (mu1 - mu2) ** 2) / (2 * sd2**2) - 0.5


KL_PQ = _kl_normal(MU_P, SD_P, MU_Q, SD_Q)
KL_QP = _kl_normal(MU_Q, SD_Q, MU_P, SD_P)
SYM_KL = KL_PQ + KL_QP


def _log_ratio(x, mu_p=MU_P, sd_p=SD_P, mu_q=MU_Q, sd_q=SD_Q):
    """Exact log p(x)/q(x) for (elementwise) Gaussians, in NumPy float64."""
    return stats.norm.logpdf(x, mu_p, sd_p) - stats.norm.logpdf(x, mu_q, sd_q)


@functools.cache
def _exact_logits(n=200_000, seed=0):
    """T = log P/Q on n samples of P and of Q, as float32 jnp arrays (shared by tests)."""
    rng = np.random.default_rng(seed)
    x_p = rng.normal(MU_P, SD_P, n)
    x_q = rng.normal(MU_Q, SD_Q, n)
    return (jnp.asarray(_log_ratio(x_p), jnp.float32), jnp.asarray(_log_ratio(x_q), jnp.float32))


def _quad(f):
    """∫ f over the real line (the densities are negligible outside ±30)."""
    return integrate.quad(f, -30.0, 30.0, limit=200)[0]


def _p(x):
    return stats.norm.pdf(x, MU_P, SD_P)


def _q(x):
    return stats.norm.pdf(x, MU_Q, SD_Q)


def _two_jsd_quadrature():
    """2·JSD(P, Q) = KL(P‖M) + KL(Q‖M), M = (P+Q)/2, by numerical quadrature."""

    def integrand(x):
        p, q = _p(x), _q(x)
        m = 0.5 * (p + q)
        return p * np.log(p / m) + q * np.log(q / m)

    return _quad(integrand)


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _f64(t):
    return np.asarray(t, np.float64)


def _mc_tolerance(*per_sample):
    """Five standard errors of a sum of independent sample means, one per array of per-sample
    terms (first-order: for log-means, pass the influence terms, see the DV test)."""
    variance = sum(np.var(_f64(a)) / np.size(a) for a in per_sample)
    return sampling_tolerance(np.sqrt(variance), 1)


def _mean_depth(n):
    """Rounding depth of a float32 mean over n terms computed by two different programs:
    the partial sums' rounding errors add like a random walk, √n. (The worst-case bound n,
    8,000 for the 4,096-sample ties below, would be far looser than any difference observed
    and too loose to tell a tie from the differences a wrong formula makes.)"""
    return math.sqrt(n)


def _mc_approx(expected, *per_sample):
    return pytest.approx(expected, rel=0, abs=_mc_tolerance(*per_sample))


def _js_terms(t_p, t_q):
    """Per-sample terms of the JS objective at a = 1: log σ(T_P) and log(1 - σ(T_Q))."""
    t_p, t_q = _f64(t_p), _f64(t_q)
    return -np.logaddexp(0.0, -t_p), -np.logaddexp(0.0, t_q)


# ---------------------------------------------------------------------------------------------
# 1. Plug-ins with the exact log-ratio.
# ---------------------------------------------------------------------------------------------


def test_gaussian_kl_in_one_dimension_equals_quadrature():
    """The library's gaussian_kl at the 1-d P and Q of these tests (a batch of one) against
    ∫ p log(p/q) by quadrature, in both directions; the closed forms KL_PQ and KL_QP that the
    Monte Carlo tests below compare with are the same numbers."""
    quad_pq = _quad(lambda x: _p(x) * np.log(_p(x) / _q(x)))
    quad_qp = _quad(lambda x: _q(x) * np.log(_q(x) / _p(x)))
    mean = lambda mu: np.full((1, 1), mu, np.float32)  # noqa: E731
    logvar = lambda sd: np.full((1, 1), 2.0 * math.log(sd), np.float32)  # noqa: E731
    got_pq = _value(losses.gaussian_kl, mean(MU_P), logvar(SD_P), mean(MU_Q), logvar(SD_Q))
    got_qp = _value(losses.gaussian_kl, mean(MU_Q), logvar(SD_Q), mean(MU_P), logvar(SD_P))
    # float32: about eight roundings of terms of order (μ_p - μ_q)² / σ² ≤ 2.
    assert got_pq == approx(quad_pq, depth=8, scale=2.0)
    assert got_qp == approx(quad_qp, depth=8, scale=2.0)
    assert KL_PQ == approx(quad_pq, depth=8, scale=2.0)
    assert KL_QP == approx(quad_qp, depth=8, scale=2.0)


def test_plugins_with_exact_log_ratio_1d():
    t_p, t_q = _exact_logits()
    assert _value(losses.symmetric_kl_plugin, t_p, t_q) == _mc_approx(SYM_KL, t_p, t_q)
    assert _value(losses.forward_kl_plugin, t_p, t_q) == _mc_approx(KL_PQ, t_p)
    assert _value(losses.reverse_kl_plugin, t_p, t_q) == _mc_approx(KL_QP, t_q)
    assert _value(losses.GENERATOR_PLUGINS["js"], t_p, t_q) == _mc_approx(
        _two_jsd_quadrature(), *_js_terms(t_p, t_q)
    )


def test_plugins_with_exact_log_ratio_multivariate_diag():
    # 3-d diagonal Gaussians: the log-ratio and the KLs are sums over dimensions.
    mu_p, sd_p = np.array([0.0, 0.5, -1.0]), np.array([1.0, 0.8, 1.5])
    mu_q, sd_q = np.array([1.0, 0.0, -0.5]), np.array([1.2, 1.0, 1.3])
    rng = np.random.default_rng(1)
    x_p = rng.normal(mu_p, sd_p, (100_000, 3))
    x_q = rng.normal(mu_q, sd_q, (100_000, 3))
    t_p = jnp.asarray(_log_ratio(x_p, mu_p, sd_p, mu_q, sd_q).sum(-1), jnp.float32)
    t_q = jnp.asarray(_log_ratio(x_q, mu_p, sd_p, mu_q, sd_q).sum(-1), jnp.float32)
    kl_pq = sum(_kl_normal(*a) for a in zip(mu_p, sd_p, mu_q, sd_q))
    kl_qp = sum(_kl_normal(*a) for a in zip(mu_q, sd_q, mu_p, sd_p))
    assert _value(losses.symmetric_kl_plugin, t_p, t_q) == _mc_approx(kl_pq + kl_qp, t_p, t_q)
    assert _value(losses.forward_kl_plugin, t_p, t_q) == _mc_approx(kl_pq, t_p)
    assert _value(losses.reverse_kl_plugin, t_p, t_q) == _mc_approx(kl_qp, t_q)


def test_plugin_formulas_and_unequal_batches():
    t_p = jnp.array([0.5, -1.0, 2.0])
    t_q = jnp.array([[1.0, 3.0], [-2.0, 0.0]])  # any shape, other size: means over all elements
    # float32 means of the logits (|T| ≤ 3): the result 0.5 - 0.5 is a difference of means, so
    # the tolerance follows the logits, not the result (1.5e-8 comes out on some CPUs).
    assert _value(losses.symmetric_kl_plugin, t_p, t_q) == approx(0.5 - 0.5, depth=7, scale=3.0)
    assert _value(losses.forward_kl_plugin, t_p, t_q) == approx(0.5, depth=3, scale=3.0)
    assert _value(losses.reverse_kl_plugin, t_p, t_q) == approx(-0.5, depth=4, scale=3.0)
    # The JS plug-in is the JS objective itself (|log σ(T)| ≤ 3 + log 2 here).
    assert _value(losses.js_plugin, t_p, t_q) == approx(
        _value(losses.js_objective, t_p, t_q), depth=7, scale=4.0
    )
    assert losses.GENERATOR_PLUGINS == {
        "symmetric_kl": losses.symmetric_kl_plugin,
        "forward_kl": losses.forward_kl_plugin,
        "reverse_kl": losses.reverse_kl_plugin,
        "js": losses.js_plugin,
    }


# ---------------------------------------------------------------------------------------------
# 2.-3. Density-ratio objectives with the exact log-ratio.
# ---------------------------------------------------------------------------------------------


def test_js_objective_with_exact_log_ratio_is_two_jsd():
    t_p, t_q = _exact_logits()
    two_jsd = _two_jsd_quadrature()
    assert 0.1 < two_jsd < 2 * math.log(2)
    assert _value(losses.js_objective, t_p, t_q) == _mc_approx(two_jsd, *_js_terms(t_p, t_q))


def _js_smoothed_numpy(t_p, t_q, a):
    """Direct NumPy evaluation of the (label-smoothed) JS objective, in float64."""
    t_p, t_q = np.asarray(t_p, np.float64), np.asarray(t_q, np.float64)
    h = -(a / 2) * np.log(a / 2) - (1 - a / 2) * np.log(1 - a / 2)
    if a == 1.0:
        return np.mean(np.log(_sigmoid(t_p))) + np.mean(np.log(1 - _sigmoid(t_q))) + 2 * h
    p_term = a * np.log(a * _sigmoid(t_p)) + (1 - a) * np.log(1 - a * _sigmoid(t_p))
    return np.mean(p_term) + np.mean(np.log(1 - a * _sigmoid(t_q))) + 2 * h


@pytest.mark.parametrize("a", [1.0, 0.9, 0.5])
def test_js_objective_label_smoothing_matches_numpy(a):
    rng = np.random.default_rng(0)
    t_p = rng.normal(0.5, 2.0, size=37).astype(np.float32)
    t_q = rng.normal(-0.5, 2.0, size=(5, 7)).astype(np.float32)  # other size and shape
    got = _value(losses.js_objective, jnp.asarray(t_p), jnp.asarray(t_q), label_smoothing=a)
    # Means of 37 and 35 log-sigmoids, each of magnitude up to |T| + log 2.
    scale = np.abs(np.concatenate([t_p.ravel(), t_q.ravel()])).max() + math.log(2)
    assert got == approx(_js_smoothed_numpy(t_p, t_q, a), depth=37 + 35, scale=scale)


def test_js_objective_label_smoothing_limits_and_value_at_optimum():
    t_p, t_q = _exact_logits()
    # a -> 1 is continuous with the a = 1 (log_sigmoid) path: at a = 1 - δ the two differ by
    # δ·∂J/∂a analytically (∂J/∂a of order max|T|), plus the rounding of two different
    # float32 programs over the same 4,096 logits (|log σ(T)| ≤ max|T| + log 2).
    s_p, s_q = t_p[:4096], t_q[:4096]
    delta = 1e-6
    scale = float(np.abs(np.concatenate([s_p, s_q])).max()) + math.log(2)
    assert _value(losses.js_objective, s_p, s_q, label_smoothing=1.0 - delta) == pytest.approx(
        _value(losses.js_objective, s_p, s_q, label_smoothing=1.0),
        rel=0,
        abs=10 * delta * scale + tolerance(0.0, depth=4 + _mean_depth(2 * 4096), scale=scale),
    )
    # J = 0 when P = Q at T = log P/Q = 0, for any a: a cancellation of terms of order log 2.
    zeros = jnp.zeros(8)
    for a in (1.0, 0.7, 0.3):
        assert _value(losses.js_objective, zeros, zeros, label_smoothing=a) == approx(
            0.0, depth=2 * 8 + 4, scale=2 * math.log(2)
        )
    # At T = log P/Q with a = 0.8, the MC value matches the same functional by quadrature.
    a = 0.8
    h = -(a / 2) * math.log(a / 2) - (1 - a / 2) * math.log(1 - a / 2)

    def integrand(x):
        p, q = _p(x), _q(x)
        s = p / (p + q)
        return p * (a * np.log(a * s) + (1 - a) * np.log(1 - a * s)) + q * np.log(1 - a * s)

    expected = _quad(integrand) + 2 * h
    s_p, s_q = _sigmoid(_f64(t_p)), _sigmoid(_f64(t_q))
    p_terms = a * np.log(a * s_p) + (1 - a) * np.log(1 - a * s_p)
    assert _value(losses.js_objective, t_p, t_q, label_smoothing=a) == _mc_approx(
        expected, p_terms, np.log(1 - a * s_q)
    )


def test_js_objective_rejects_bad_label_smoothing():
    for a in (0.0, 1.5):
        with pytest.raises(ValueError, match="label_smoothing"):
            losses.js_objective(jnp.zeros(2), jnp.zeros(2), label_smoothing=a)


@pytest.mark.parametrize("a", [1.0, 0.9])
def test_js_objective_is_stable_for_large_logits(a):
    big = jnp.array([80.0, -80.0, 200.0])
    value, grad = jax.jit(
        jax.value_and_grad(lambda t: losses.js_objective(t, -t, label_smoothing=a))
    )(big)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("name", ["dv", "njw"])
def test_dv_and_njw_with_exact_log_ratio_are_symmetric_kl(name):
    t_p, t_q = _exact_logits()
    objective = losses.DENSITY_RATIO_OBJECTIVES[name]
    e_p, e_q = np.exp(-_f64(t_p)), np.exp(_f64(t_q))
    if name == "dv":  # log-means: first-order (influence) terms of log mean e^{∓T}
        terms = (_f64(t_p) - e_p / e_p.mean(), -_f64(t_q) - e_q / e_q.mean())
    else:
        terms = (_f64(t_p) - e_p, -_f64(t_q) - e_q)
    assert _value(objective, t_p, t_q) == _mc_approx(SYM_KL, *terms)


def _dv_shift_tolerance(t_p, t_q):
    """DV(T + s) = DV(T) exactly in real arithmetic; in float32 the two differ by the rounding
    of means over the samples of terms up to e^{max|T|} (the log-mean-exps)."""
    t = np.abs(np.concatenate([np.ravel(t_p), np.ravel(t_q)]))
    return tolerance(0.0, depth=4 + _mean_depth(t.size), scale=float(t.max()) + 1.0)


def test_dv_is_shift_invariant_and_njw_is_not():
    t_p, t_q = (t[:4096] for t in _exact_logits())
    base_dv = _value(losses.dv_objective, t_p, t_q)
    assert _value(losses.dv_objective, t_p + 0.7, t_q + 0.7) == pytest.approx(
        base_dv, rel=0, abs=_dv_shift_tolerance(t_p, t_q)
    )
    assert (
        _value(losses.njw_objective, t_p + 0.7, t_q + 0.7)
        < _value(losses.njw_objective, t_p, t_q) - 0.1
    )


def test_lc_objective_with_exact_log_ratio_is_le_cam_divergence():
    t_p, t_q = _exact_logits()
    le_cam = 0.5 * _quad(lambda x: (_p(x) - _q(x)) ** 2 / (_p(x) + _q(x)))
    terms = (-2 * _sigmoid(-_f64(t_p)) ** 2, -2 * _sigmoid(_f64(t_q)) ** 2)
    assert _value(losses.lc_objective, t_p, t_q) == _mc_approx(le_cam, *terms)


def test_dv_njw_lc_formulas_match_numpy_with_unequal_batches():
    rng = np.random.default_rng(1)
    t_p = rng.normal(0.3, 1.0, size=11)
    t_q = rng.normal(-0.3, 1.0, size=(3, 5))
    dv = t_p.mean() - t_q.mean() - np.log(np.mean(np.exp(-t_p))) - np.log(np.mean(np.exp(t_q)))
    njw = t_p.mean() - t_q.mean() - np.mean(np.exp(-t_p)) - np.mean(np.exp(t_q)) + 2
    lc = 1 - 2 * np.mean(_sigmoid(-t_p) ** 2) - 2 * np.mean(_sigmoid(t_q) ** 2)
    args = (jnp.asarray(t_p, jnp.float32), jnp.asarray(t_q, jnp.float32))
    # Means of 11 and 15 terms of magnitude up to e^{max|T|}; the float32 inputs themselves
    # are rounded (relative eps), which moves e^{T} by eps·|T|·e^{T}.
    scale = math.exp(np.abs(np.concatenate([t_p, t_q.ravel()])).max()) * 4
    for fn, expected in ((losses.dv_objective, dv), (losses.njw_objective, njw)):
        assert _value(fn, *args) == approx(expected, depth=11 + 15, scale=scale)
    assert _value(losses.lc_objective, *args) == approx(lc, depth=11 + 15, scale=4.0)
    assert set(losses.DENSITY_RATIO_OBJECTIVES) == {"js", "dv", "njw", "lc"}


def _reference_literal_lc(t_p, t_q):
    """The reference's `lc_var` as written, 1 - 2 mean(σ(T_P)² + σ(-T_Q)²) (see lc_objective)."""
    return 1 - 2 * jnp.mean(jax.nn.sigmoid(t_p) ** 2) - 2 * jnp.mean(jax.nn.sigmoid(-t_q) ** 2)


@pytest.mark.parametrize("name", ["js", "dv", "njw", "lc"])
def test_objectives_are_maximised_at_the_log_ratio(name):
    """On fixed samples, perturbing T* = log P/Q (scale or shift) lowers J (DV: shifts tie)."""
    t_p, t_q = _exact_logits()
    objective = _jitted(losses.DENSITY_RATIO_OBJECTIVES[name])
    best = float(objective(t_p, t_q))
    for scale, shift in [(0.8, 0.0), (1.25, 0.0), (1.0, 0.4), (1.0, -0.4), (-1.0, 0.0)]:
        value = float(objective(scale * t_p + shift, scale * t_q + shift))
        if name == "dv" and scale == 1.0:
            # A tie in real arithmetic; the float32 means over 200,000 samples round apart.
            assert value == pytest.approx(best, rel=0, abs=_dv_shift_tolerance(t_p, t_q))
        else:
            assert value < best, (scale, shift)
    if name == "lc":
        # The literal reference formula prefers -T* (optimum log Q/P): the sign bug that
        # lc_objective fixes. Both reach the same optimal value (the Le Cam divergence):
        # the same means of squared sigmoids (≤ 1), rounded in another order.
        assert _value(_reference_literal_lc, -t_p, -t_q) > _value(_reference_literal_lc, t_p, t_q)
        assert _value(_reference_literal_lc, -t_p, -t_q) == approx(
            best, depth=4 + _mean_depth(t_p.size + t_q.size), scale=4.0
        )


# ---------------------------------------------------------------------------------------------
# 4.-5. Trained discriminators.
# ---------------------------------------------------------------------------------------------


def _init_mlps(rng, k, sizes):
    """K independent MLPs with stacked parameters (leading axis K), LeCun-normal weights."""
    return [
        (
            jnp.asarray(rng.normal(0.0, 1.0 / math.sqrt(m), (k, m, n)), jnp.float32),
            jnp.zeros((k, n), jnp.float32),
        )
        for m, n in zip(sizes[:-1], sizes[1:])
    ]


def _mlp(params, x):
    """One tanh MLP: x [N, d] -> logits [N]."""
    h = x
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params[-1]
    return (h @ w + b)[:, 0]


# K MLPs with stacked parameters: x [N, d] -> logits [K, N].
_stacked_mlp = jax.vmap(_mlp, in_axes=(0, None))


def _train_discriminators(objectives, data, make_pq, *, seed, lr=1e-2, hidden=32):
    """Train one MLP per objective, each maximising objective(T(P-samples), T(Q-samples)).

    `data` is a pytree of arrays with a leading [steps] axis (a fresh minibatch per step);
    make_pq(minibatch, key) -> (P-samples, Q-samples), each [batch, dim]. The K networks have
    disjoint parameters, so minimising Σ_k -J_k with Adam (a per-parameter optimiser) trains
    each exactly as if alone; stacking them only saves compilations. The learning rate is
    cosine-decayed so the final parameters are not dominated by the last minibatches' noise.
    """
    steps = jax.tree.leaves(data)[0].shape[0]
    first = jax.tree.map(lambda a: a[0], data)
    dim = jax.eval_shape(make_pq, first, jax.random.PRNGKey(0))[0].shape[-1]
    params = _init_mlps(np.random.default_rng(seed), len(objectives), [dim, hidden, hidden, 1])
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))

    def neg_objectives(p, minibatch, key):
        x_p, x_q = make_pq(minibatch, key)
        t_p, t_q = _stacked_mlp(p, x_p), _stacked_mlp(p, x_q)
        return -sum(obj(t_p[k], t_q[k]) for k, obj in enumerate(objectives))

    def step(carry, inputs):
        p, opt_state = carry
        loss, grads = jax.value_and_grad(neg_objectives)(p, *inputs)
        updates, opt_state = opt.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), loss

    @jax.jit
    def train(p, data):
        keys = jax.random.split(jax.random.PRNGKey(seed), steps)
        (p, _), loss_curve = jax.lax.scan(step, (p, opt.init(p)), (data, keys))
        return p, loss_curve

    params, loss_curve = train(params, data)
    assert np.all(np.isfinite(np.asarray(loss_curve)))
    return params


_OBJECTIVE_NAMES = ("js", "dv", "njw", "lc")


@pytest.fixture(scope="module")
def symmetric_kl_estimates():
    """P = N(0,1), Q = N(1,1) in 1-d (symmetric KL = 1): a discriminator trained with each
    objective, then the symmetric-KL plug-in on fresh samples."""
    steps, batch = 300, 512
    rng = np.random.default_rng(0)
    data = (
        rng.normal(0.0, 1.0, (steps, batch, 1)).astype(np.float32),
        rng.normal(1.0, 1.0, (steps, batch, 1)).astype(np.float32),
    )
    params = _train_discriminators(
        [losses.DENSITY_RATIO_OBJECTIVES[n] for n in _OBJECTIVE_NAMES],
        data,
        lambda minibatch, key: minibatch,
        seed=0,
    )

    @jax.jit
    def estimates(params, x_p, x_q):
        return jax.vmap(losses.symmetric_kl_plugin)(
            _stacked_mlp(params, x_p), _stacked_mlp(params, x_q)
        )

    x_p = rng.normal(0.0, 1.0, (50_000, 1)).astype(np.float32)
    x_q = rng.normal(1.0, 1.0, (50_000, 1)).astype(np.float32)
    return dict(zip(_OBJECTIVE_NAMES, np.asarray(estimates(params, x_p, x_q)).tolist()))


@pytest.mark.parametrize("name", _OBJECTIVE_NAMES)
def test_trained_discriminator_recovers_symmetric_kl(name, symmetric_kl_estimates):
    # An accuracy claim for a trained estimator (its bias dominates: the 50,000-sample
    # sampling error is ~0.01), not a rounding tolerance: within 10 % of the value 1.
    assert symmetric_kl_estimates[name] == pytest.approx(1.0, rel=0.10)


# Correlated Gaussian triple: z ~ N(0,1), x = z + e1, y = z + e2 with e1, e2 ~ N(0,1).
_SIGMA_XYZ = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]])


def _mutual_information_xy_z(cov):
    """I(X,Y;Z) = ½ log(det Σ_xy · det Σ_z / det Σ_xyz) for a jointly Gaussian (x, y, z)."""
    return 0.5 * math.log(np.linalg.det(cov[:2, :2]) * cov[2, 2] / np.linalg.det(cov))


def _xyz_samples(rng, shape):
    return rng.multivariate_normal(np.zeros(3), _SIGMA_XYZ, shape).astype(np.float32)


def _joint_and_product(xyz, key):
    """P = (x, y, z) joint samples, Q = (x, y, z[π]) with π from `shuffle_latent`."""
    shuffled_z = losses.shuffle_latent(xyz[:, 2:], key)
    return xyz, jnp.concatenate([xyz[:, :2], shuffled_z], axis=-1)


def test_ci_penalty_with_exact_log_ratio():
    mi = _mutual_information_xy_z(_SIGMA_XYZ)
    # det Σ_xy = 3, det Σ_z = 1, det Σ = 1 (float64 determinants of 3×3 integer matrices).
    assert mi == approx(0.5 * math.log(3.0), dtype=np.float64, depth=27)
    xyz = _xyz_samples(np.random.default_rng(7), 100_000).astype(np.float64)
    log_ratio = (
        stats.multivariate_normal(np.zeros(3), _SIGMA_XYZ).logpdf(xyz)
        - stats.multivariate_normal(np.zeros(2), _SIGMA_XYZ[:2, :2]).logpdf(xyz[:, :2])
        - stats.norm.logpdf(xyz[:, 2])
    )
    assert _value(losses.ci_penalty, jnp.asarray(log_ratio, jnp.float32)) == _mc_approx(
        mi, log_ratio
    )


def test_ci_penalty_with_js_trained_discriminator():
    """A JS-trained discriminator on (x,y,z) vs (x,y,shuffled z) recovers I(X,Y;Z)."""
    mi = _mutual_information_xy_z(_SIGMA_XYZ)
    rng = np.random.default_rng(1)
    params = _train_discriminators(
        [losses.js_objective], _xyz_samples(rng, (400, 512)), _joint_and_product, seed=1
    )
    joint = _xyz_samples(rng, 50_000)
    estimate = float(jax.jit(lambda p, x: losses.ci_penalty(_stacked_mlp(p, x)[0]))(params, joint))
    # An accuracy claim for a trained estimator, not a rounding tolerance (see above).
    assert estimate == pytest.approx(mi, rel=0.10)


def test_shuffle_latent_permutes_rows():
    z = jnp.arange(24.0).reshape(8, 3)
    key = jax.random.PRNGKey(5)
    shuffled = np.asarray(losses.shuffle_latent(z, key))
    perm = np.asarray(jax.random.permutation(key, 8))
    np.testing.assert_array_equal(shuffled, np.asarray(z)[perm])
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, np.asarray(z)))  # rows intact
    assert not np.array_equal(shuffled, np.asarray(z))
    other = np.asarray(losses.shuffle_latent(z, jax.random.PRNGKey(6)))
    assert not np.array_equal(shuffled, other)


# ---------------------------------------------------------------------------------------------
# 6. Gaussian KLs.
# ---------------------------------------------------------------------------------------------


def _kl_full_covariance(mu_q, cov_q, mu_r, cov_r):
    """Brute force: the general KL between multivariate Gaussians with full covariances."""
    k = mu_q.shape[0]
    cov_r_inv = np.linalg.inv(cov_r)
    diff = mu_r - mu_q
    return 0.5 * (
        np.trace(cov_r_inv @ cov_q)
        + diff @ cov_r_inv @ diff
        - k
        + np.linalg.slogdet(cov_r)[1]
        - np.linalg.slogdet(cov_q)[1]
    )


def _random_gaussian_params(seed, shape):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0.0, 1.0, shape).astype(np.float32),
        rng.normal(0.0, 0.5, shape).astype(np.float32),
    )


def test_gaussian_kls_against_full_covariance_formula():
    shape = (4, 2, 3)  # trailing dims are flattened per example and summed
    mean_q, logvar_q = _random_gaussian_params(0, shape)
    mean_r, logvar_r = _random_gaussian_params(1, shape)
    expected_kl, expected_std = [], []
    for i in range(shape[0]):
        mq, lq, mr, lr = (
            a[i].reshape(-1).astype(np.float64) for a in (mean_q, logvar_q, mean_r, logvar_r)
        )
        expected_kl.append(_kl_full_covariance(mq, np.diag(np.exp(lq)), mr, np.diag(np.exp(lr))))
        expected_std.append(
            _kl_full_covariance(mq, np.diag(np.exp(lq)), np.zeros_like(mq), np.eye(mq.size))
        )
    got = _value(losses.gaussian_kl, mean_q, logvar_q, mean_r, logvar_r)
    got_std = _value(losses.gaussian_kl_standard_normal, mean_q, logvar_q)
    # Per dimension a handful of float32 roundings of terms of order (μ_q - μ_r)² e^{-ℓ_r}
    # and e^{ℓ_q - ℓ_r}; summed over 6 dimensions, averaged over 4 rows.
    per_dim = np.concatenate([
        ((mean_q - mean_r) ** 2 + np.exp(logvar_q)) / np.exp(logvar_r),
        mean_q**2 + np.exp(logvar_q),
        np.abs(logvar_q) + np.abs(logvar_r) + 1,
    ])
    depth = 6 + 4 + 8
    assert got == approx(np.mean(expected_kl), depth=depth, scale=per_dim.max() * 6)
    assert got_std == approx(np.mean(expected_std), depth=depth, scale=per_dim.max() * 6)
    # KL to N(0, I) is the special case μ_r = 0, ℓ_r = 0, with arrays or scalars.
    zeros = np.zeros(shape, np.float32)
    assert _value(losses.gaussian_kl, mean_q, logvar_q, zeros, zeros) == approx(
        got_std, depth=depth, scale=per_dim.max() * 6
    )
    assert _value(losses.gaussian_kl, mean_q, logvar_q, 0.0, 0.0) == approx(
        got_std, depth=depth, scale=per_dim.max() * 6
    )
    assert _value(losses.gaussian_kl, mean_q, logvar_q, mean_q, logvar_q) == approx(
        0.0, depth=depth, scale=per_dim.max() * 6
    )


def test_gaussian_kls_against_monte_carlo():
    shape, n = (3, 4), 100_000
    mean_q, logvar_q = _random_gaussian_params(2, shape)
    mean_r, logvar_r = _random_gaussian_params(3, shape)
    rng = np.random.default_rng(4)
    sd_q = np.exp(0.5 * logvar_q.astype(np.float64))
    z = mean_q + sd_q * rng.standard_normal((n, *shape))  # [n, B, D] samples of q
    log_q = stats.norm.logpdf(z, mean_q, sd_q)
    log_r = stats.norm.logpdf(z, mean_r, np.exp(0.5 * logvar_r.astype(np.float64)))
    # Per sample (of n) the batch-mean of the dimension sums: mean over samples & batch.
    per_kl = np.mean(np.sum(log_q - log_r, axis=-1), axis=-1)
    per_std = np.mean(np.sum(log_q - stats.norm.logpdf(z), axis=-1), axis=-1)
    # Here the Monte Carlo value is the reference and the library the exact one.
    assert _value(losses.gaussian_kl, mean_q, logvar_q, mean_r, logvar_r) == _mc_approx(
        per_kl.mean(), per_kl
    )
    assert _value(losses.gaussian_kl_standard_normal, mean_q, logvar_q) == _mc_approx(
        per_std.mean(), per_std
    )


# ---------------------------------------------------------------------------------------------
# 7. Reconstruction losses.
# ---------------------------------------------------------------------------------------------


def _token_ce_numpy(logits, tokens, ignore_index):
    total, count = 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(tokens.shape[1]):
            if tokens[b, t] == ignore_index:
                continue
            row = logits[b, t].astype(np.float64)
            log_z = np.log(np.sum(np.exp(row - row.max()))) + row.max()
            total += log_z - row[tokens[b, t]]
            count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize("ignore_index", [1, -100])
def test_token_cross_entropy_matches_numpy_loop(ignore_index):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (3, 5, 7)).astype(np.float32)
    tokens = rng.integers(0, 7, (3, 5))
    tokens[0, 2:] = ignore_index  # padding tail
    tokens[2, 0] = ignore_index
    assert (tokens == ignore_index).sum() >= 4
    got = _value(losses.token_cross_entropy, logits, tokens, ignore_index)
    # log-sum-exp over 7 logits, minus a logit, averaged over ≤ 15 tokens.
    scale = np.abs(logits).max() + math.log(7)
    assert got == approx(_token_ce_numpy(logits, tokens, ignore_index), depth=7 + 15, scale=scale)


def test_token_cross_entropy_all_ignored_is_zero_with_finite_gradient():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 4)), jnp.float32)
    tokens = jnp.ones((2, 3), jnp.int32)
    value, grad = jax.jit(jax.value_and_grad(losses.token_cross_entropy))(logits, tokens, 1)
    assert float(value) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_token_cross_entropy_bfloat16_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 6)).astype(np.float32)
    tokens = rng.integers(0, 6, (2, 4))
    bf16 = jnp.asarray(logits, jnp.bfloat16)
    got = _jitted(losses.token_cross_entropy)(bf16, tokens, -1)
    assert got.dtype == jnp.float32
    # Computed in float32 from the bfloat16 logits: the float32 rounding tolerance against
    # the NumPy loop on those same (rounded) logits.
    rounded = np.asarray(bf16, np.float32)
    scale = np.abs(rounded).max() + math.log(6)
    assert float(got) == approx(_token_ce_numpy(rounded, tokens, -1), depth=6 + 8, scale=scale)


def test_l1_l2_match_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    ja, jb = a.astype(np.float32), b.astype(np.float32)
    # Means of 24 terms; the float32 inputs are themselves rounded (relative eps).
    d = np.abs(a - b).max() + np.abs(a).max() + np.abs(b).max()
    assert _value(losses.l1_loss, ja, jb) == approx(np.mean(np.abs(a - b)), depth=24, scale=d)
    assert _value(losses.l2_loss, ja, jb) == approx(np.mean((a - b) ** 2), depth=24, scale=d * d)
    assert losses.RECONSTRUCTION_LOSSES == {
        "l1": losses.l1_loss,
        "l2": losses.l2_loss,
        "cosine": losses.cosine_loss,
        "token_ce": losses.caption_cross_entropy,
    }


def test_cosine_loss_matches_numpy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))
    fa, fb = a.reshape(5, -1), b.reshape(5, -1)
    cos = np.sum(fa * fb, -1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1))
    got = _value(losses.cosine_loss, a.astype(np.float32), b.astype(np.float32))
    # Per row: two 6-long dot products and norms, a division; 1 - cos of order 1; 5 rows.
    assert got == approx(np.mean(1 - cos), depth=6 + 6 + 5, scale=2.0)
    # Parallel rows give 0 whatever the scale; opposite rows give 2.
    x = a.astype(np.float32)
    assert _value(losses.cosine_loss, x, 3.0 * x) == approx(0.0, depth=6 + 6 + 5, scale=2.0)
    assert _value(losses.cosine_loss, x, -x) == approx(2.0, depth=6 + 6 + 5)


def test_cosine_loss_zero_row_is_finite():
    a = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    b = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    value, grad = jax.jit(jax.value_and_grad(losses.cosine_loss))(a, b)
    assert float(value) == approx(0.5, depth=4)  # zero row: cos = 0; second row: cos = 1
    assert np.all(np.isfinite(np.asarray(grad)))


# ---------------------------------------------------------------------------------------------
# 8. Everything compiles under jit, and jit agrees with eager execution.
# ---------------------------------------------------------------------------------------------


def _call_every_loss(key):
    """Calls every public loss once; returns name -> value."""
    t_p, t_q = jnp.linspace(-2.0, 2.0, 6), jnp.linspace(-1.0, 3.0, 4)
    a, b = jnp.ones((3, 2, 2)), jnp.linspace(0.0, 1.0, 12).reshape(3, 2, 2)
    out = {f"objective_{k}": fn(t_p, t_q) for k, fn in losses.DENSITY_RATIO_OBJECTIVES.items()}
    out.update({f"plugin_{k}": fn(t_p, t_q) for k, fn in losses.GENERATOR_PLUGINS.items()})
    # token_ce takes (logits, token ids); it is the "token_ce" entry below.
    rec = {k: fn for k, fn in losses.RECONSTRUCTION_LOSSES.items() if k != "token_ce"}
    out.update({f"rec_{k}": fn(a, b) for k, fn in rec.items()})
    out["js_smoothed"] = losses.js_objective(t_p, t_q, label_smoothing=0.9)
    out["ci_penalty"] = losses.ci_penalty(t_p)
    out["shuffle_latent"] = losses.shuffle_latent(a, key)
    out["token_ce"] = losses.token_cross_entropy(
        jnp.zeros((2, 3, 5)), jnp.array([[0, 1, 2], [3, 4, 1]]), 1
    )
    out["kl_std"] = losses.gaussian_kl_standard_normal(a, b)
    out["kl"] = losses.gaussian_kl(a, b, b, a)
    return out


def test_every_loss_is_jit_compilable():
    # One compilation covering every public function (eager calls would cost one XLA
    # compilation per op). Values are checked against NumPy on these simple inputs.
    out = jax.jit(_call_every_loss)(jax.random.PRNGKey(0))
    for name, value in out.items():
        assert np.all(np.isfinite(np.asarray(value))), name
    t_p, t_q = np.linspace(-2.0, 2.0, 6), np.linspace(-1.0, 3.0, 4)
    a, b = np.ones((3, 2, 2)), np.linspace(0.0, 1.0, 12).reshape(3, 2, 2)
    expected = {
        "objective_js": _js_smoothed_numpy(t_p, t_q, 1.0),
        "js_smoothed": _js_smoothed_numpy(t_p, t_q, 0.9),
        "objective_dv": (
            t_p.mean() - t_q.mean() - np.log(np.mean(np.exp(-t_p))) - np.log(np.mean(np.exp(t_q)))
        ),
        "objective_njw": t_p.mean() - t_q.mean() - np.exp(-t_p).mean() - np.exp(t_q).mean() + 2,
        "objective_lc": 1 - 2 * np.mean(_sigmoid(-t_p) ** 2) - 2 * np.mean(_sigmoid(t_q) ** 2),
        "plugin_symmetric_kl": t_p.mean() - t_q.mean(),
        "plugin_forward_kl": t_p.mean(),
        "plugin_reverse_kl": -t_q.mean(),
        "plugin_js": _js_smoothed_numpy(t_p, t_q, 1.0),
        "rec_l1": np.abs(a - b).mean(),
        "rec_l2": ((a - b) ** 2).mean(),
        "ci_penalty": t_p.mean(),
        "token_ce": math.log(5.0),
        "kl_std": np.mean(np.sum(0.5 * (-1 - b + a**2 + np.exp(b)), axis=(1, 2))),
        "kl": np.mean(
            np.sum(0.5 * (-1 - b + a + ((a - b) ** 2 + np.exp(b)) / np.exp(a)), axis=(1, 2))
        ),
    }
    # Inputs of magnitude ≤ 3, so every term is ≤ e³ ≈ 20 (the exponentials of DV and NJW);
    # reductions over ≤ 12 elements, a few operations each.
    for name, value in expected.items():
        assert_close(out[name], value, depth=12 + 4, scale=max(abs(value), 20.0), err_msg=name)
    assert 0.0 <= float(out["rec_cosine"]) <= 2.0
    assert sorted(map(tuple, np.asarray(out["shuffle_latent"]).reshape(3, -1))) == sorted(
        map(tuple, a.reshape(3, -1))
    )
