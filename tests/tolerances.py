"""Float tolerances that follow the computation being compared.

Two float implementations of the same function (ours and Flax's, one device and four, a
fused and an unfused program) agree only up to rounding, and XLA:CPU picks its kernels and
summation orders by instruction set and core count: a fixed `atol=1e-5` that holds on one
CPU fails on another as soon as the compared values are of order 10. The bound used here is
the textbook one for a chain of `depth` roundings, taken relative to the magnitude the
errors are relative to:

    |actual - expected| <= k · eps(dtype) · depth · scale,     scale = max|expected|

`scale` is one number for the whole array (an elementwise relative tolerance fails on the
entries that come out near zero by cancellation while their operands were large);
`depth` is how many rounding steps the two sides may take differently (a network's layer
count, a reduction's length where the order differs); `k` absorbs the constant of the bound
for both sides. A wrong implementation is off by O(scale), many orders of magnitude above
this.

Where exactness is claimed (bit-identical resume, one-step vs several-step calls) compare
with `np.testing.assert_array_equal` on the same machine instead. Where a quantity is an
estimate from samples, the tolerance is its sampling error: `sampling_tolerance`.
"""

import numpy as np
import pytest


def eps(dtype=np.float32) -> float:
    """Machine epsilon of `dtype` (float32: 1.19e-7, float64: 2.2e-16)."""
    return float(np.finfo(dtype).eps)


def _scale(expected) -> float:
    leaves = [np.abs(np.asarray(a, np.float64)) for a in _leaves(expected)]
    finite = [a[np.isfinite(a)] for a in leaves]
    return max((float(a.max()) for a in finite if a.size), default=0.0)


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def tolerance(expected, *, depth: float = 1, k: float = 8, dtype=np.float32, scale=None) -> float:
    """Absolute tolerance k · eps(dtype) · depth · scale for comparing with `expected`.

    `scale` defaults to max|expected| (over every leaf of a tree); pass the operands'
    magnitude where the result is a small difference of large terms. Never below the
    smallest normal number of `dtype`, so an all-zero `expected` still compares sanely.
    """
    s = _scale(expected) if scale is None else float(scale)
    return max(k * eps(dtype) * depth * s, float(np.finfo(dtype).tiny))


def assert_close(actual, expected, *, depth=1, k=8, dtype=np.float32, scale=None, err_msg=""):
    """`actual` equals `expected` up to `tolerance(expected, ...)`, elementwise."""
    atol = tolerance(expected, depth=depth, k=k, dtype=dtype, scale=scale)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=0, atol=atol,
        err_msg=f"{err_msg} (tolerance {atol:.3g} = {k}·eps·{depth}·scale)",
    )


def assert_trees_close(actual, expected, *, depth=1, k=8, dtype=np.float32):
    """Two pytrees of the same structure agree leaf by leaf, each leaf at its own scale."""
    import jax

    a_leaves, a_def = jax.tree_util.tree_flatten(actual)
    e_leaves, e_def = jax.tree_util.tree_flatten(expected)
    assert a_def == e_def, f"tree structures differ:\n{a_def}\n{e_def}"
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]]
    for path, a, e in zip(paths, a_leaves, e_leaves):
        assert_close(a, e, depth=depth, k=k, dtype=dtype, err_msg=path)


def approx(expected, *, depth=1, k=8, dtype=np.float32, scale=None):
    """`pytest.approx` with the absolute tolerance of `tolerance` (for `==` on scalars)."""
    return pytest.approx(
        expected, rel=0, abs=tolerance(expected, depth=depth, k=k, dtype=dtype, scale=scale)
    )


def sampling_tolerance(std: float, n: int, *, z: float = 5.0) -> float:
    """z standard errors of a mean of n draws with standard deviation `std`.

    For estimates compared with their closed form: at z = 5 a correct estimator fails
    once in ~3.5 million seeds (and the tests use fixed seeds, so never), while a bias larger
    than the bound fails every time.
    """
    return z * float(std) / np.sqrt(n)
