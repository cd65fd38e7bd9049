"""Paired datasets: digits-Add1 pairing, deterministic resumable batches, Gaussian pairs."""

import hashlib

import ml_collections
import numpy as np
import pytest

from tests.tolerances import sampling_tolerance
from wyner_jax import data
from wyner_jax.data import load_digits_add1, load_gaussian

MULTIPLIER = 3


@pytest.fixture(scope="module")
def digits():
    return load_digits_add1(multiplier=MULTIPLIER)


def _hashes(images):
    return [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]


def test_digits_shapes_and_range(digits):
    assert digits.x_shape == digits.y_shape == (8, 8, 1)
    assert digits.is_image_x and digits.is_image_y
    assert digits.num_classes == 10 and digits.label_rule == "add1"
    assert digits.x_std.shape == (8, 8, 1)
    for split in (digits.train, digits.test):
        assert split.x.dtype == split.y.dtype == np.float32
        assert split.label_x.dtype == split.label_y.dtype == np.int32
        for a in (split.x, split.y):
            assert a.min() >= -1.0 and a.max() <= 1.0
    assert digits.train.x.min() == -1.0 and digits.train.x.max() == 1.0


def test_digits_resize_and_flatten():
    big = load_digits_add1(image_size=16, multiplier=1)
    assert big.x_shape == (16, 16, 1) and big.domains["x"].train_images.shape[1:] == (16, 16, 1)
    assert big.train.x.min() >= -1.0 and big.train.x.max() <= 1.0
    flat = load_digits_add1(flatten=True, multiplier=1)
    assert flat.x_shape == (64,) and not flat.is_image_x


def test_digits_no_image_in_both_splits(digits):
    domain = digits.domains["x"]
    train, test = set(_hashes(domain.train_images)), set(_hashes(domain.test_images))
    assert len(train) == len(domain.train_images) and not train & test
    # The paired splits draw only from their own split's images.
    assert set(_hashes(digits.train.x)) | set(_hashes(digits.train.y)) <= train
    assert set(_hashes(digits.test.x)) | set(_hashes(digits.test.y)) <= test
    assert len(domain.train_images) + len(domain.test_images) == 1797


def test_digits_pairs_follow_add1_and_image_labels(digits):
    domain = digits.domains["x"]
    label_of = dict(zip(_hashes(domain.train_images), domain.train_labels))
    label_of.update(zip(_hashes(domain.test_images), domain.test_labels))
    for split in (digits.train, digits.test):
        np.testing.assert_array_equal(split.label_y, (split.label_x + 1) % 10)
        np.testing.assert_array_equal([label_of[h] for h in _hashes(split.x)], split.label_x)
        np.testing.assert_array_equal([label_of[h] for h in _hashes(split.y)], split.label_y)


def test_digits_pair_counts(digits):
    domain = digits.domains["x"]
    for split, labels in ((digits.train, domain.train_labels), (digits.test, domain.test_labels)):
        counts = np.bincount(labels, minlength=10)
        expected = sum(min(counts[l], counts[(l + 1) % 10]) for l in range(10)) * MULTIPLIER
        assert len(split) == expected


def test_train_batch_deterministic_and_epoch_coverage(digits):
    b, seed = 64, 3
    spe = digits.steps_per_epoch(b)
    assert spe == len(digits.train) // b
    first = digits.train_batch(5, b, seed)
    again = digits.train_batch(5, b, seed)
    for key in ("x", "y", "label_x", "label_y"):
        np.testing.assert_array_equal(first[key], again[key])
    assert first["x"].shape == (b, 8, 8, 1)
    idx = digits.batch_indices(5, b, seed)
    np.testing.assert_array_equal(first["x"], digits.train.x[idx])
    for epoch in (0, 1):
        seen = np.concatenate([digits.batch_indices(epoch * spe + s, b, seed) for s in range(spe)])
        assert len(np.unique(seen)) == len(seen) == spe * b  # each index at most once; drop_last
    # Epochs reshuffle; a different seed gives different batches.
    assert not np.array_equal(digits.batch_indices(0, b, seed), digits.batch_indices(spe, b, seed))
    assert not np.array_equal(
        digits.batch_indices(0, b, seed), digits.batch_indices(0, b, seed + 1)
    )


def test_full_epoch_covers_every_index_when_batch_divides():
    g = load_gaussian(n_train=96, n_test=8)
    seen = np.concatenate([g.batch_indices(s, 32, seed=0) for s in range(3, 6)])  # epoch 1
    np.testing.assert_array_equal(np.sort(seen), np.arange(96))


def test_process_slices_concatenate_to_global_batch(digits):
    b, p = 64, 4
    full = digits.train_batch(7, b, seed=1)
    parts = [digits.train_batch(7, b, seed=1, process_index=i, process_count=p) for i in range(p)]
    for key in full:
        np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), full[key])


def test_batch_errors(digits):
    with pytest.raises(ValueError, match="multiple of 4"):
        digits.train_batch(0, 30, seed=0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="exceeds"):
        digits.train_batch(0, len(digits.train) + 1, seed=0)


def test_gaussian_correlation():
    g = load_gaussian(dim=3, rho=0.7, n_train=20000, n_test=1000, seed=0)
    assert g.x_shape == g.y_shape == (3,) and not g.is_image_x
    assert g.num_classes is None and g.label_rule is None and g.domains == {}
    assert np.all(g.train.label_x == -1) and np.all(g.test.label_y == -1)
    # Sampling tolerances (five standard errors over n pairs): a sample correlation of
    # bivariate normals has standard error (1 − ρ²)/√n, so 1/√n for independent coordinates;
    # a sample std of N(0, 1) has 1/√(2n).
    n = len(g.train)
    for d in range(3):
        corr = np.corrcoef(g.train.x[:, d], g.train.y[:, d])[0, 1]
        assert corr == pytest.approx(0.7, abs=sampling_tolerance(1 - 0.7**2, n))
    independent = np.corrcoef(g.train.x[:, 0], g.train.y[:, 1])[0, 1]
    assert abs(independent) < sampling_tolerance(1.0, n)  # coordinates independent
    np.testing.assert_allclose(g.x_std, 1.0, atol=sampling_tolerance(np.sqrt(0.5), n))


def test_build_from_config():
    cfg = ml_collections.ConfigDict(
        {"name": "gaussian", "dim": 2, "rho": 0.5, "n_train": 100, "n_test": 10}
    )
    g = data.build(cfg)
    assert g.x_shape == (2,) and len(g.train) == 100
    with pytest.raises(ValueError, match="digits_add1"):
        data.build(ml_collections.ConfigDict({"name": "mnist"}))
    with pytest.raises(ValueError, match="name"):
        data.build(ml_collections.ConfigDict({"dim": 2}))
