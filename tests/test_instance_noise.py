"""Instance noise drawn for a whole discriminator call at once (wyner_jax/instance_noise.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tolerances import assert_close, sampling_tolerance
from wyner_jax.instance_noise import Noisy, perturb


def test_each_leaf_gets_its_own_slice_of_one_normal_draw():
    """Brute force: value + σ·ε where ε are consecutive slices, in tree order, of one
    N(0, 1) draw of the total float size; integer leaves pass through and take no slice."""
    key = jax.random.PRNGKey(4)
    a, b = jnp.arange(6.0).reshape(2, 3), jnp.ones((4,))
    tokens = jnp.array([3, 1, 2], jnp.int32)
    sigma_a = jnp.array([0.5, 1.0, 2.0])  # per feature
    out = perturb(key, {"a": Noisy(a, sigma_a), "t": Noisy(tokens, 9.0), "b": Noisy(b, 0.25)})
    eps = np.asarray(jax.random.normal(key, (10,)))  # flatten order: a, b, t
    # one product and one sum each (perhaps fused): depth 2
    assert_close(out["a"], a + sigma_a * eps[:6].reshape(2, 3), depth=2)
    assert_close(out["b"], b + 0.25 * eps[6:], depth=2)
    np.testing.assert_array_equal(out["t"], tokens)
    assert out["t"].dtype == jnp.int32


def test_no_key_returns_the_values_and_the_structure_is_kept():
    x = jnp.ones((2, 2))
    tree = {"p": (Noisy(x, 1.0), Noisy(2 * x, 1.0)), "q": [Noisy(3 * x, 1.0)]}
    out = perturb(None, tree)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(
        {"p": (x, x), "q": [x]}
    )
    np.testing.assert_array_equal(out["p"][1], 2 * x)
    np.testing.assert_array_equal(out["q"][0], 3 * x)


def test_noise_scale_and_independence_between_inputs():
    """The same array twice gets two independent draws; each has mean 0 and the σ of its
    column (closed form: N(0, σ²)), within sampling error over 20,000 rows."""
    n = 20_000
    zeros = jnp.zeros((n, 3))
    sigma = jnp.array([0.1, 1.0, 4.0])
    p, q = perturb(jax.random.PRNGKey(0), (Noisy(zeros, sigma), Noisy(zeros, sigma)))
    p, q = np.asarray(p), np.asarray(q)
    # Sampling tolerances, five standard errors, in units of σ: the mean of n draws of
    # N(0, 1) has standard error 1/√n; the std, √(mean of ε²) with Var ε² = 2, has 1/√(2n)
    # (delta method); the correlation of two independent columns has 1/√n.
    for out in (p, q):
        got_std = out.std(0) / np.asarray(sigma)
        np.testing.assert_allclose(got_std, 1.0, atol=sampling_tolerance(np.sqrt(0.5), n))
        got_mean = out.mean(0) / np.asarray(sigma)
        np.testing.assert_allclose(got_mean, 0.0, atol=sampling_tolerance(1.0, n))
    corr = np.corrcoef(p[:, 1], q[:, 1])[0, 1]
    assert abs(corr) < sampling_tolerance(1.0, n)


def test_low_precision_values_stay_in_their_dtype():
    out = perturb(jax.random.PRNGKey(1), Noisy(jnp.ones((3,), jnp.bfloat16), 0.25))
    assert out.dtype == jnp.bfloat16


def test_a_leaf_that_is_not_noisy_is_refused():
    with pytest.raises(TypeError, match="Noisy"):
        perturb(jax.random.PRNGKey(0), {"a": jnp.ones(2)})
