"""Maps / Facades / MNIST-CDCB loaders (pix2pix side-by-side format, iiae.md §5.1): area
resizing against a supersampled brute force, the reference's file order, halves and
direction, native-size pools, caches, and the refusals for missing or malformed data."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

from tests.tolerances import assert_close
from wyner_jax import data
from wyner_jax.data import pix2pix
from wyner_jax.data.pix2pix import (
    ResizedImageRows,
    area_matrix,
    list_pairs,
    load_facades,
    load_maps,
    load_mnist_cdcb,
    resize_area,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
from make_pix2pix_fixture import make_fixture  # noqa: E402


@pytest.fixture(scope="module")
def maps_dir(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("maps")), "maps", n_train=6, n_test=4)


@pytest.fixture(scope="module")
def cdcb_dir(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("cdcb")), "mnist_cdcb", n_train=5, n_test=3)


def brute_area_1d(v: np.ndarray, n_out: int) -> np.ndarray:
    """Exact area resampling by supersampling: every input pixel repeated n_out times, then
    the mean of each of n_out equal blocks."""
    fine = np.repeat(np.asarray(v, np.float64), n_out, axis=0)
    return fine.reshape((n_out, len(v)) + v.shape[1:]).mean(axis=1)


@pytest.mark.parametrize("n_in,n_out", [(600, 256), (7, 3), (5, 12), (13, 7), (32, 256), (9, 9)])
def test_area_matrix_is_exact_area_averaging(n_in, n_out):
    v = np.random.default_rng(n_in * 31 + n_out).normal(size=n_in)
    # float64 throughout. A weight is an overlap length of coordinates up to n_in, over
    # s = n_in / n_out (relative rounding ~n_out·eps), and a row sums n_in of them: depth
    # n_in + n_out, at the scale of the averaged values.
    depth = n_in + n_out
    assert_close(
        area_matrix(n_in, n_out) @ v,
        brute_area_1d(v, n_out),
        depth=depth,
        dtype=np.float64,
        scale=np.abs(v).max(),
    )
    assert_close(area_matrix(n_in, n_out).sum(1), 1.0, depth=depth, dtype=np.float64)


def test_resize_area_on_images_matches_the_separable_brute_force():
    img = np.random.default_rng(0).uniform(0, 255, (2, 10, 13, 3)).astype(np.float32)
    ours = resize_area(img, 4, 7)
    rows = np.stack([brute_area_1d(im, 4) for im in img])  # along H
    both = np.stack(
        [np.stack([brute_area_1d(r[:, :, c].T, 7).T for c in range(3)], -1) for r in rows]
    )
    # float32 against float64: float32 weights summed over the 10 rows, then the 13 columns.
    assert_close(ours, both, depth=10 + 13)
    # integer factors: block mean down (2 + 2 terms summed), pixel replication up
    assert_close(
        resize_area(img[:, :10, :12], 5, 6),
        img[:, :10, :12].reshape(2, 5, 2, 6, 2, 3).mean((2, 4)),
        depth=2 + 2,
    )
    up = resize_area(img[:, :3, :3], 6, 9)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(img[:, :3, :3], 2, 1), 3, 2))


def _write(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_file_order_and_extension_as_the_reference(tmp_path):
    pair = np.zeros((4, 8, 3), np.uint8)
    for name in ("10.png", "2.png", "1.png"):
        _write(tmp_path / name, pair)
    assert [os.path.basename(p) for p in list_pairs(str(tmp_path))] == ["1.png", "2.png", "10.png"]
    _write(tmp_path / "3.jpg", pair)  # any JPEG present: only the JPEGs are read
    assert [os.path.basename(p) for p in list_pairs(str(tmp_path))] == ["3.jpg"]
    other = tmp_path / "names"
    other.mkdir()
    for name in ("b10.png", "b2.png", "a.png"):
        _write(other / name, pair)
    assert [os.path.basename(p) for p in list_pairs(str(other))] == ["a.png", "b10.png", "b2.png"]


def test_maps_fixture_halves_sizes_and_direction(maps_dir):
    ds = data.build({"name": "maps", "dir": maps_dir, "image_size": 16})
    assert (len(ds.train), len(ds.test)) == (6, 4)
    assert ds.x_shape == ds.y_shape == (16, 16, 3)
    assert ds.num_classes is None and ds.instance_pairs
    assert ds.domain_names == ("satellite photo", "map") and ds.abbrev == ("S", "M")
    assert ds.test_files == ("1.jpg", "2.jpg", "3.jpg", "4.jpg")  # pix2pix's val folder
    # Row 1 of the test split is val/2.jpg: its left half, area-resized 64 -> 16, in [-1, 1].
    raw = np.asarray(Image.open(os.path.join(maps_dir, "val", "2.jpg")).convert("RGB"), np.float64)
    half = raw.shape[1] // 2
    for arr, part in ((ds.test.x, raw[:, :half]), (ds.test.y, raw[:, half:])):
        expected = part.reshape(16, 4, 16, 4, 3).mean((1, 3))
        expected = np.floor(expected + 0.5) / 127.5 - 1.0  # stored as 8 bits
        # 8-bit values read as float32 v / 127.5 - 1 (two roundings) against float64
        assert_close(arr[1], expected, depth=2)
    assert ds.test.x[:].min() >= -1.0 and ds.test.x[:].max() <= 1.0
    swapped = load_maps(maps_dir, image_size=16, direction="BtoA")
    np.testing.assert_array_equal(swapped.train.x[:], ds.train.y[:])
    np.testing.assert_array_equal(swapped.test.y[:], ds.test.x[:])
    assert swapped.abbrev == ("M", "S")
    batch = ds.train_batch(0, 4, seed=0)
    assert batch["x"].shape == (4, 16, 16, 3) and batch["x"].dtype == np.float32


def test_small_images_are_kept_native_and_upsampled_on_read(cdcb_dir):
    ds = load_mnist_cdcb(cdcb_dir, image_size=64)
    assert isinstance(ds.train.x, ResizedImageRows)
    assert ds.train.x.pool.shape[1:] == (32, 32, 3)  # the fixture's native half size
    raw = np.asarray(Image.open(os.path.join(cdcb_dir, "test", "00003.png")), np.float32)
    left = raw[:, : raw.shape[1] // 2] / 127.5 - 1.0
    # float32 both; upsampling by 2 is replication (weights 1 and 0) after v / 127.5 - 1
    assert_close(ds.test.x[2], np.repeat(np.repeat(left, 2, 0), 2, 1), depth=2)
    assert ds.test.x[[0, 2]].shape == (2, 64, 64, 3)
    # the std map of replicated pixels is the replicated std map
    native = load_mnist_cdcb(cdcb_dir, image_size=32)
    assert_close(ds.x_std, np.repeat(np.repeat(native.x_std, 2, 0), 2, 1))
    assert ds.abbrev == ("CD", "CB")


def test_odd_widths_split_like_the_reference(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        pair = np.zeros((4, 9, 3), np.uint8)
        pair[:, 4:] = 200  # the right half (width // 2 onward) keeps the odd column
        _write(tmp_path / split / "1.png", pair)
    ds = load_facades(str(tmp_path), image_size=4)
    assert_close(ds.train.x[0], -1.0, depth=2)  # v / 127.5 - 1
    # ... and the 5 columns of the right half area-resized to 4 (5 weights summed)
    assert_close(ds.train.y[0], 200 / 127.5 - 1.0, depth=2 + 5)


def test_decoded_splits_are_cached_and_rebuilt_when_files_change(tmp_path, monkeypatch):
    folder = make_fixture(str(tmp_path / "f"), "facades", n_train=3, n_test=2)
    first = load_facades(folder, image_size=16)
    assert os.listdir(os.path.join(folder, "wyner_jax_cache"))

    def refuse(path):
        raise AssertionError(f"decoded {path} although the cache holds it")

    monkeypatch.setattr(pix2pix, "_open_rgb", refuse)
    again = load_facades(folder, image_size=16)
    np.testing.assert_array_equal(again.train.x[:], first.train.x[:])
    monkeypatch.undo()
    # a changed file (new content, new mtime) is decoded again
    _write(os.path.join(folder, "train", "1.jpg"), np.zeros((64, 128, 3)))
    changed = load_facades(folder, image_size=16)
    # Not a rounding tolerance: JPEG's lossy coding of the black image leaves a few gray
    # levels (0.05 ≈ 6/127.5) where the old content's edges were.
    np.testing.assert_allclose(changed.train.x[0], -1.0, atol=0.05)


def test_missing_data_says_where_to_get_and_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_maps(str(tmp_path / "nowhere"))
    message = str(err.value)
    assert "maps.tar.gz" in message and "--config.data.dir" in message and "val" in message
    assert not (tmp_path / "nowhere").exists()  # nothing written
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.jpg or \\*.png"):
        load_mnist_cdcb(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="direction"):
        load_facades(str(tmp_path / "empty"), direction="left")


def test_non_rgb_pairs_are_refused(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        Image.fromarray(np.zeros((4, 8), np.uint8), mode="L").save(tmp_path / split / "1.png")
    with pytest.raises(ValueError, match="must be RGB"):
        load_facades(str(tmp_path), image_size=4)
