"""Fréchet distances (paper §6.4) against closed forms and an independent scipy sqrtm."""

import numpy as np
import pytest
import scipy.linalg

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
    assert frechet_distance(a, b) == pytest.approx(6.25, rel=1e-10)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.09]), np.array([9.0, 1.0, 0.01])
    a = exact_gaussian_samples(rng, 400, mu_a, np.diag(var_a))
    b = exact_gaussian_samples(rng, 400, mu_b, np.diag(var_b))
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_identical_sets_give_zero_and_translation_gives_squared_shift():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = rng.standard_normal(6)
    # Same covariance: FD is the squared distance of the means.
    assert frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-8)
    b = rng.standard_normal((150, 6)) * 2.0
    # Translating both sets by the same vector changes nothing.
    assert frechet_distance(a + shift, b + shift) == pytest.approx(
        frechet_distance(a, b), rel=1e-10
    )


def test_symmetric_and_matches_scipy_sqrtm():
    rng = np.random.default_rng(3)
    for d in (2, 8, 32):
        a = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) + 0.3
        b = rng.gamma(2.0, size=(250, d)) @ rng.standard_normal((d, d))
        fd_ab, fd_ba = frechet_distance(a, b), frechet_distance(b, a)
        assert fd_ab == pytest.approx(fd_ba, rel=1e-10)
        assert fd_ab == pytest.approx(scipy_fd(a, b), rel=1e-7)
        assert fd_ab > 0


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # scipy on singular input
def test_singular_covariances_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    # N < D: rank-deficient covariances; one constant feature column as well.
    a = rng.standard_normal((10, 40))
    b = rng.standard_normal((12, 40)) + 1.0
    a[:, 0] = b[:, 0] = 3.0
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    # The exact value from the statistics: sqrt of the symmetric PSD product (scipy's sqrtm
    # of the singular non-symmetric product is ill-conditioned, so compare on the symmetric form).
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r_a = scipy.linalg.sqrtm(s_a).real
    tr = np.trace(scipy.linalg.sqrtm(r_a @ s_b @ r_a).real)
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr
    assert fd == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_tiny_negative_eigenvalues_are_clipped():
    # A PSD matrix that rounding makes slightly indefinite.
    v = np.linalg.qr(np.random.default_rng(5).standard_normal((5, 5)))[0]
    sigma = (v * np.array([1.0, 0.5, 0.0, -1e-15, -1e-14])) @ v.T
    assert np.linalg.eigvalsh(sigma).min() < 0
    fd = frechet_distance_from_statistics(np.zeros(5), sigma, np.zeros(5), sigma)
    assert fd == pytest.approx(0.0, abs=1e-12)


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
    assert got == pytest.approx(expected, rel=1e-12)
    # Shuffling the sample order changes nothing; swapping generated labels does.
    perm = rng.permutation(90)
    assert conditional_frechet_distance(
        real, real_labels, gen[perm], gen_labels[perm], k
    ) == pytest.approx(got, rel=1e-12)
    assert conditional_frechet_distance(real, real_labels, gen, (gen_labels + 1) % k, k) != (
        pytest.approx(got, rel=1e-3)
    )


def test_conditional_fd_is_zero_when_generation_reproduces_each_class():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(4), 30)
    real = rng.standard_normal((120, 3)) + 2.0 * labels[:, None]
    # Same per-class sets in another order: each class's statistics agree exactly.
    perm = rng.permutation(120)
    fd = conditional_frechet_distance(real, labels, real[perm], labels[perm], 4)
    assert fd == pytest.approx(0.0, abs=1e-9)
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
    assert got == pytest.approx(np.mean(matrix), rel=1e-12)
    pooled = conditional_frechet_distance(real, real_labels, gen, gen_labels, k)
    assert pooled != pytest.approx(got, rel=1e-3)


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
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1))
