"""Evaluators: linear probe, digit classifier, coherence, Gaussian closed forms, figures."""

import numpy as np
import pytest
from PIL import Image

from tests.tolerances import approx, sampling_tolerance, tolerance
from wyner_jax.data import load_digits_add1
from wyner_jax.evaluation import (
    add_one,
    coherence,
    gaussian_mutual_information,
    image_grid,
    joint_covariance,
    linear_probe_accuracy,
    regression_slope_and_residual_variance,
    save_png,
    scatter_plot,
    train_image_classifier,
    wyner_ci_under_instance_noise,
    wyner_common_information_gaussian,
)


def _blobs(rng, n, means):
    labels = rng.integers(0, len(means), n)
    return means[labels] + 0.5 * rng.normal(size=(n, means.shape[1])), labels


def test_probe_separable_data():
    rng = np.random.default_rng(0)
    means = 3.0 * rng.normal(size=(4, 16))
    xtr, ytr = _blobs(rng, 600, means)
    xte, yte = _blobs(rng, 600, means)
    assert linear_probe_accuracy(xtr, ytr, xte, yte, num_classes=4) >= 0.98


def test_probe_random_labels_is_chance():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(600, 16)), rng.normal(size=(2000, 16))
    ytr, yte = rng.integers(0, 4, 600), rng.integers(0, 4, 2000)
    # Test labels independent of everything: the accuracy is a mean of 2000 Bernoulli(1/4)
    # draws, so a sampling tolerance of five standard errors √(¼·¾/2000).
    chance = pytest.approx(0.25, abs=sampling_tolerance(np.sqrt(0.25 * 0.75), len(yte)))
    assert linear_probe_accuracy(xtr, ytr, xte, yte, num_classes=4) == chance


def test_probe_rejects_bad_labels():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="num_classes"):
        linear_probe_accuracy(x, [0, 1, 2, 5], x, [0, 1, 0, 1], num_classes=3)


def test_digit_classifier_accuracy():
    domain = load_digits_add1(multiplier=1).domains["x"]
    result = train_image_classifier(domain, num_classes=10, seed=0)
    assert result.test_accuracy >= 0.95
    logits = result.apply(domain.test_images[:5])
    assert logits.shape == (5, 10)


def test_digit_classifier_deterministic_and_flat_input():
    domain = load_digits_add1(multiplier=1, flatten=True).domains["x"]
    runs = [
        train_image_classifier(domain, 10, seed=s, steps=20, image_shape=(8, 8)) for s in (0, 0, 1)
    ]
    logits = [r.apply(domain.test_images[:50]) for r in runs]
    np.testing.assert_array_equal(logits[0], logits[1])
    assert not np.array_equal(logits[0], logits[2])


def test_coherence_and_add_one():
    np.testing.assert_array_equal(add_one(np.array([0, 8, 9])), [1, 9, 0])
    assert coherence(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="shape"):
        coherence(np.array([1, 2]), np.array([1]))


def test_gaussian_slope_and_residual_variance():
    rho, n = 0.7, 200_000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2))
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=(n, 2))  # exact sample of p(y | x)
    slope, resid = regression_slope_and_residual_variance(x, y)
    # Sampling tolerances (five standard errors of one dimension's fit over n rows; the mean
    # of two dimensions is tighter): the slope's is √(1 − ρ²)/√n, the mean squared residual's
    # (1 − ρ²)·√(2/n).
    assert slope == pytest.approx(rho, abs=sampling_tolerance(np.sqrt(1 - rho**2), n))
    resid_tol = sampling_tolerance((1 - rho**2) * np.sqrt(2), n)
    assert resid == pytest.approx(1 - rho**2, abs=resid_tol)
    # A noiseless affine map is recovered exactly: float64 means over n rows (depth n); the
    # residual variance is a mean of squared rounding errors of y.
    y = 2.0 * x[:, 0] + 3.0
    slope, resid = regression_slope_and_residual_variance(x[:, 0], y)
    assert slope == approx(2.0, dtype=np.float64, depth=n)
    assert resid == pytest.approx(0.0, abs=tolerance(y, dtype=np.float64, depth=n) ** 2)


def test_joint_covariance_against_numpy_cov():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)) * [1.0, 2.0, 0.5]
    y = 0.3 * x + rng.normal(size=(500, 3)) + 4.0  # a mean shift changes no moment
    got = joint_covariance(x, y)
    covs = [np.cov(x[:, d], y[:, d], ddof=0) for d in range(3)]
    n = len(x)
    assert got["var_x"] == approx(np.mean([c[0, 0] for c in covs]), dtype=np.float64, depth=n)
    assert got["var_y"] == approx(np.mean([c[1, 1] for c in covs]), dtype=np.float64, depth=n)
    assert got["cov_xy"] == approx(np.mean([c[0, 1] for c in covs]), dtype=np.float64, depth=n)
    with pytest.raises(ValueError, match="paired samples"):
        joint_covariance(x, y[:10])


def test_wyner_common_information_gaussian():
    # artanh vs ½ log of a ratio, float64: a few roundings
    want = 0.5 * np.log(1.7 / 0.3)
    assert wyner_common_information_gaussian(0.7) == approx(want, dtype=np.float64, depth=4)
    want = 1.5 * np.log(1.7 / 0.3)
    assert wyner_common_information_gaussian(-0.7, dim=3) == approx(want, dtype=np.float64, depth=4)
    assert wyner_common_information_gaussian(0.0) == 0.0


def _wyner_noisy_covariance(rho, sigma_xy, sigma_z):
    """Covariance of (X', Y', Z') for X = √ρ Z + √(1−ρ) U, Y = √ρ Z + √(1−ρ) V, noise added:
    written entry by entry from the model, independently of the closed form's derivation."""
    a = np.sqrt(rho)
    return np.array(
        [
            [1 + sigma_xy**2, rho, a],
            [rho, 1 + sigma_xy**2, a],
            [a, a, 1 + sigma_z**2],
        ]
    )


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7, 0.9, -0.5])
@pytest.mark.parametrize("sigma_xy,sigma_z", [(0.0, 0.0), (0.1, 0.25), (0.25, 0.25), (0.5, 0.0)])
def test_ci_under_instance_noise_equals_the_log_det_of_the_noisy_covariance(rho, sigma_xy, sigma_z):
    r = abs(rho)
    if sigma_xy == sigma_z == 0.0:
        want = np.arctanh(r)  # no noise: Wyner's common information itself
    else:
        cov = _wyner_noisy_covariance(r, sigma_xy, sigma_z)
        det = np.linalg.det  # a 3×3 and 2×2 determinant, no log-det helper shared with the code
        want = 0.5 * np.log(det(cov[:2, :2]) * cov[2, 2] / det(cov))
    got = wyner_ci_under_instance_noise(rho, sigma_xy, sigma_z)
    assert got == approx(want, dtype=np.float64, depth=8)
    assert wyner_ci_under_instance_noise(rho, sigma_xy, sigma_z, dim=3) == approx(
        3 * want, dtype=np.float64, depth=8
    )
    # Noise only loses information (data processing): never above C(X; Y).
    assert got <= wyner_common_information_gaussian(rho) * (1 + 1e-12)


def test_ci_under_instance_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="strictly inside"):
        wyner_ci_under_instance_noise(1.0, 0.1, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        wyner_ci_under_instance_noise(0.5, -0.1, 0.1)


def test_gaussian_mutual_information_on_samples_of_the_wyner_model():
    rho, sigma_xy, sigma_z, n = 0.7, 0.1, 0.25, 400_000
    rng = np.random.default_rng(3)
    z, u, v = rng.normal(size=(3, n, 1))
    x = np.sqrt(rho) * z + np.sqrt(1 - rho) * u + sigma_xy * rng.normal(size=(n, 1))
    y = np.sqrt(rho) * z + np.sqrt(1 - rho) * v + sigma_xy * rng.normal(size=(n, 1))
    zn = z + sigma_z * rng.normal(size=(n, 1))
    got = gaussian_mutual_information(np.concatenate([x, y], 1), zn)
    # The plug-in estimate's standard error is about √(k/n) nats for k ≈ the joint dimension;
    # five of them.
    assert got == pytest.approx(
        wyner_ci_under_instance_noise(rho, sigma_xy, sigma_z), abs=sampling_tolerance(np.sqrt(3), n)
    )
    # Independent blocks carry no information.
    assert gaussian_mutual_information(x, rng.normal(size=(n, 2))) == pytest.approx(
        0.0, abs=sampling_tolerance(np.sqrt(3), n)
    )
    with pytest.raises(ValueError, match="more paired rows"):
        gaussian_mutual_information(x[:2], zn[:2])


def test_image_grid_and_png(tmp_path):
    images = np.zeros((2, 3, 4, 5, 1), np.float32)
    images[0, 0] = -1.0
    images[1, 2] = 1.0
    grid = image_grid(images)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 1) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[0, 0, 0] == 255  # first image black, border white
    assert grid[6 + 1, 12 + 1, 0] == 255  # last image white
    rgb = image_grid(np.zeros((1, 2, 4, 4, 3)))
    assert rgb.shape == (6, 11, 3)
    path = tmp_path / "sub" / "grid.png"
    save_png(str(path), grid)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid[..., 0])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left
    with pytest.raises(ValueError, match="rows"):
        image_grid(np.zeros((4, 8, 8, 1)))


def test_scatter_plot(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "scatter.png"
    scatter_plot(str(path), rng.normal(size=(100, 1)), rng.normal(size=(100, 1)), "x vs y")
    assert Image.open(path).size[0] > 0


def test_explained_variance_tells_wyners_common_variable_from_x_itself():
    """Closed forms on samples of the Wyner decomposition x = √ρ Z + √(1−ρ) N_x (y alike):
    Z explains ρ of x's and of y's variance; a code equal to x explains all of x and ρ² of y.
    In one dimension R² is the squared correlation (an independent computation)."""
    from wyner_jax.evaluation.gaussian import explained_variance

    rho, n = 0.5, 200_000
    rng = np.random.default_rng(0)
    z, nx, ny = rng.standard_normal((3, n, 1))
    x = np.sqrt(rho) * z + np.sqrt(1 - rho) * nx
    y = np.sqrt(rho) * z + np.sqrt(1 - rho) * ny
    # Sampling error of an R² near ρ over n rows: ~2·√(ρ(1−ρ)²·...)/√n < 0.005.
    assert explained_variance(z, x) == pytest.approx(rho, abs=0.005)
    assert explained_variance(z, y) == pytest.approx(rho, abs=0.005)
    assert explained_variance(-3.0 * x + 1.0, x) == pytest.approx(1.0, abs=1e-9)
    assert explained_variance(x, y) == pytest.approx(rho**2, abs=0.005)
    assert explained_variance(z, x) == pytest.approx(
        np.corrcoef(z[:, 0], x[:, 0])[0, 1] ** 2, abs=1e-9
    )
    # Two targets: the mean of the columns' R²; an unused code dimension changes nothing much.
    both = np.concatenate([x, y], 1)
    two = np.concatenate([z, rng.standard_normal((n, 1))], 1)
    assert explained_variance(two, both) == pytest.approx(rho, abs=0.005)
    with pytest.raises(ValueError, match="as many code rows"):
        explained_variance(z[:10], x[:11])
