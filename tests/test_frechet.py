"""Fréchet distances (paper §6.4) against closed forms and an independent scipy sqrtm."""

import numpy as np
import pytest
import scipy.linalg

from tests.tolerances import approx, assert_close, tolerance
from wyner_jax.evaluation import frechet
from wyner_jax.evaluation.frechet import (
    conditional_frechet_distance,
    frechet_distance,
    frechet_distance_from_statistics,
)


def exact_gaussian_samples(rng, n, mean, cov):
    """n samples whose sample mean and unbiased covariance are exactly ``mean`` and ``cov``
    (whitened, then coloured), so closed forms apply without sampling error."""
    d = len(mean)
    z = rng.standard_normal((n, d))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T
    return z @ np.linalg.cholesky(cov).T + mean


def fd_approx(expected, *sets):
    """`pytest.approx` at `fd_tolerance(*sets)`."""
    return pytest.approx(expected, rel=0, abs=fd_tolerance(*sets))


def fd_tolerance(*sets):
    """Rounding tolerance of a float64 Fréchet distance of the feature sets `sets` =
    (a, b, a2, b2, ...) taken pairwise: FD is a difference of ||Δμ||², Tr Σa, Tr Σb and
    2 Tr (Σa Σb)^½, so its rounding is relative to their size (scale), and comes from sums
    over the N samples and D×D eigendecompositions (depth N + D)."""
    pairs = list(zip(sets[::2], sets[1::2]))
    scale = max(fd_terms(a, b) for a, b in pairs)
    depth = max(len(a) + len(b) + a.shape[1] for a, b in pairs)
    return tolerance(None, dtype=np.float64, depth=depth, scale=scale)


def fd_terms(a, b):
    """||μa − μb||² + Tr Σa + Tr Σb: the size of the terms a Fréchet distance is made of."""
    diff = a.mean(0) - b.mean(0)
    traces = [np.trace(np.atleast_2d(np.cov(s, rowvar=False))) for s in (a, b)]
    return diff @ diff + sum(traces)


def scipy_fd(a, b):
    """pytorch-fid's formula with scipy.linalg.sqrtm of the non-symmetric product."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * covmean.real))


def test_one_dimensional_closed_form():
    rng = np.random.default_rng(0)
    a = exact_gaussian_samples(rng, 500, np.array([1.5]), np.array([[0.25]]))
    b = exact_gaussian_samples(rng, 300, np.array([-0.5]), np.array([[4.0]]))
    # (μ1 − μ2)² + (σ1 − σ2)² = 4 + (0.5 − 2)² = 6.25
    assert frechet_distance(a, b) == fd_approx(6.25, a, b)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.09]), np.array([9.0, 1.0, 0.01])
    a = exact_gaussian_samples(rng, 400, mu_a, np.diag(var_a))
    b = exact_gaussian_samples(rng, 400, mu_b, np.diag(var_b))
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == fd_approx(expected, a, b)


def test_identical_sets_give_zero_and_translation_gives_squared_shift():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(a, a) == fd_approx(0.0, a, a)
    shift = rng.standard_normal(6)
    # Same covariance: FD is the squared distance of the means.
    assert frechet_distance(a, a + shift) == fd_approx(shift @ shift, a, a + shift)
    b = rng.standard_normal((150, 6)) * 2.0
    # Translating both sets by the same vector changes nothing.
    want = fd_approx(frechet_distance(a, b), a + shift, b + shift, a, b)
    assert frechet_distance(a + shift, b + shift) == want


def test_symmetric_and_matches_scipy_sqrtm():
    rng = np.random.default_rng(3)
    for d in (2, 8, 32):
        a = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) + 0.3
        b = rng.gamma(2.0, size=(250, d)) @ rng.standard_normal((d, d))
        fd_ab, fd_ba = frechet_distance(a, b), frechet_distance(b, a)
        assert fd_ab == fd_approx(fd_ba, a, b)
        assert fd_ab == fd_approx(scipy_fd(a, b), a, b)
        assert fd_ab > 0


def test_singular_covariances_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    # N < D: rank-deficient covariances; one constant feature column as well.
    a = rng.standard_normal((10, 40))
    b = rng.standard_normal((12, 40)) + 1.0
    a[:, 0] = b[:, 0] = 3.0
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    # The exact value without any matrix square root: with Σa = AᵀA, Σb = BᵀB (centred rows
    # over √(N − 1)), the nonzero eigenvalues of Σa Σb are those of (ABᵀ)(ABᵀ)ᵀ, so
    # Tr (Σa Σb)^½ is the sum of the singular values of the 10×12 matrix ABᵀ.
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    A = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    B = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    tr = np.linalg.svd(A @ B.T, compute_uv=False).sum()
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr
    # Ours takes square roots of eigenvalues that are 0 up to rounding, δ = k·eps·D·||Σa||·||Σb||:
    # each of Σa's D − rank null directions adds up to √δ to Tr (Σa Σb)^½, so the error is of
    # order √eps here, on top of the usual rounding of `fd_approx`.
    for x, y, want in ((a, b, expected), (a, a, 0.0)):
        c_x, c_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        nulls = x.shape[1] - np.linalg.matrix_rank(c_x)
        norms = np.linalg.norm(c_x, 2) * np.linalg.norm(c_y, 2)
        delta = tolerance(None, dtype=np.float64, depth=x.shape[1], scale=norms)
        atol = fd_tolerance(x, y) + 2 * nulls * np.sqrt(delta)
        assert frechet_distance(x, y) == pytest.approx(want, rel=0, abs=atol)


def test_tiny_negative_eigenvalues_are_clipped():
    # A PSD matrix that rounding makes slightly indefinite.
    v = np.linalg.qr(np.random.default_rng(5).standard_normal((5, 5)))[0]
    sigma = (v * np.array([1.0, 0.5, 0.0, -1e-15, -1e-14])) @ v.T
    assert np.linalg.eigvalsh(sigma).min() < 0
    fd = frechet_distance_from_statistics(np.zeros(5), sigma, np.zeros(5), sigma)
    # 2 Tr Σ − 2 Tr (Σ²)^½ from two 5×5 eigendecompositions, relative to 2 Tr Σ = 3
    assert fd == approx(0.0, dtype=np.float64, depth=5, scale=2 * np.trace(sigma))


def test_input_errors():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(rng.standard_normal((1, 3)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(rng.standard_normal(5), rng.standard_normal(5))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(rng.standard_normal((5, 3)), rng.standard_normal((5, 4)))
    bad = rng.standard_normal((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(bad, rng.standard_normal((5, 3)))


def test_conditional_fd_is_the_mean_of_per_class_fds():
    rng = np.random.default_rng(7)
    k, d = 3, 4
    real_labels = np.repeat(np.arange(k), [50, 60, 70])
    real = rng.standard_normal((180, d)) + real_labels[:, None]
    gen_labels = np.repeat(np.arange(k), [40, 30, 20])
    gen = rng.standard_normal((90, d)) * 1.5 + 0.8 * gen_labels[:, None]
    expected = np.mean(
        [frechet_distance(gen[gen_labels == c], real[real_labels == c]) for c in range(k)]
    )
    got = conditional_frechet_distance(real, real_labels, gen, gen_labels, k)
    per_class = [x for c in range(k) for x in (gen[gen_labels == c], real[real_labels == c])]
    assert got == fd_approx(expected, *per_class)
    # Shuffling the sample order changes nothing; swapping generated labels does.
    perm = rng.permutation(90)
    shuffled = conditional_frechet_distance(real, real_labels, gen[perm], gen_labels[perm], k)
    assert shuffled == fd_approx(got, *per_class)
    swapped = conditional_frechet_distance(real, real_labels, gen, (gen_labels + 1) % k, k)
    assert swapped > 2 * got  # every class compared with the wrong one: far, not rounding


def test_conditional_fd_is_zero_when_generation_reproduces_each_class():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(4), 30)
    real = rng.standard_normal((120, 3)) + 2.0 * labels[:, None]
    # Same per-class sets in another order: each class's statistics agree exactly.
    perm = rng.permutation(120)
    fd = conditional_frechet_distance(real, labels, real[perm], labels[perm], 4)
    per_class = [real[labels == c] for c in range(4) for _ in range(2)]
    assert fd == fd_approx(0.0, *per_class)
    # Mislabelled generation (every class shifted by one) is far.
    assert conditional_frechet_distance(real, labels, real, (labels + 1) % 4, 4) > 1.0


def test_conditional_fd_per_condition_groups_follow_the_reference_average():
    rng = np.random.default_rng(9)
    k, d, refs, per_ref = 2, 3, 3, 25
    real_labels = np.repeat(np.arange(k), 80)
    real = rng.standard_normal((160, d)) + real_labels[:, None]
    gen_labels = np.repeat(np.arange(k), refs * per_ref)
    groups = np.repeat(np.arange(k * refs), per_ref)
    gen = rng.standard_normal((len(groups), d)) + 0.5 * groups[:, None]
    # Reference: the mean of the k × refs matrix of per-condition FDs.
    matrix = [
        frechet_distance(gen[groups == g], real[real_labels == g // refs]) for g in range(k * refs)
    ]
    got = conditional_frechet_distance(real, real_labels, gen, gen_labels, k, gen_groups=groups)
    per_group = [
        x for g in range(k * refs) for x in (gen[groups == g], real[real_labels == g // refs])
    ]
    assert got == fd_approx(np.mean(matrix), *per_group)
    pooled = conditional_frechet_distance(real, real_labels, gen, gen_labels, k)
    # The per-condition FDs average ||Δμ_g||² over groups whose means differ by 0.5 per
    # dimension; pooling averages the means first: differs by O(0.1), far above rounding.
    assert abs(pooled - got) > 0.1 * got


def test_conditional_fd_errors_name_the_class():
    rng = np.random.default_rng(10)
    real, gen = rng.standard_normal((20, 2)), rng.standard_normal((20, 2))
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(ValueError, match="class 2"):
        conditional_frechet_distance(real, labels, gen, labels, 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        conditional_frechet_distance(real, labels, gen, labels + 1, 2)
    with pytest.raises(ValueError, match="one class per sample"):
        conditional_frechet_distance(real, labels[:5], gen, labels, 2)


def test_statistics_are_unbiased_float64():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=np.float32)
    mu, sigma = frechet.gaussian_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    want = np.cov(x.astype(np.float64), rowvar=False, ddof=1)
    assert_close(sigma, want, dtype=np.float64, depth=len(x))  # sums over the 3 rows
