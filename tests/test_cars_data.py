"""Cars loader (Reed et al.'s rendered 3D cars, paired as IIAE's preprocess_cars.py, iiae.md
§5.1): pairs checked against the .mat arrays, the split by car id, the shared pool of views,
area resizing against a supersampled brute force, caches, the refusals for missing or
malformed files, and the figure / frontal row pickers."""

import os
import shutil
import sys

import ml_collections
import numpy as np
import pytest
from scipy import io as sio

from tests.tolerances import assert_close, tolerance
from wyner_jax import data
from wyner_jax.data import cars
from wyner_jax.data.cars import CarViewsDataset, ViewIndex, load_cars

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
from make_cars_fixture import make_fixture  # noqa: E402

# ImageRows.pixel_std (float64 over the rows, then float32) against the std of the decoded
# float32 rows: their two decoding roundings (the std moves by at most as much as its values)
# and the final float32 rounding; the float64 sums' own rounding is far below.
STD_DEPTH = 3
IDS = (1, 3, 7, 192, 195)  # gaps in the ids, as the release (183 of 199)
SIZE = 16


@pytest.fixture(scope="module")
def cars_dir(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("cars")), IDS, size=SIZE)


@pytest.fixture(scope="module")
def native(cars_dir):
    return load_cars(cars_dir, image_size=SIZE)


def mat(folder, car):
    return sio.loadmat(os.path.join(folder, f"car_{car:03d}_mesh.mat"))["im"]


def expected_pairs(folder, car_ids, resize=lambda v: v):
    """x, y of the reference's pairs, built by loops straight from the .mat arrays."""
    xs, ys, meta = [], [], []
    for car in car_ids:
        im = mat(folder, car).astype(np.float64)
        for e in range(4):
            for a in range(1, 24):
                xs.append(resize(im[..., 0, e]))
                ys.append(resize(im[..., a, e]))
                meta.append((car, e, a))
    return np.stack(xs) / 127.5 - 1.0, np.stack(ys) / 127.5 - 1.0, np.array(meta)


def test_pairs_are_azimuth_0_and_each_other_azimuth_of_one_elevation(cars_dir, native):
    assert isinstance(native, CarViewsDataset) and native.name == "cars"
    assert (len(native.train), len(native.test)) == (3 * 4 * 23, 2 * 4 * 23)
    assert native.x_shape == native.y_shape == (SIZE, SIZE, 3)
    assert native.num_classes is None and native.label_rule is None
    assert (native.num_azimuths, native.num_elevations) == (24, 4)
    assert native.domain_names == ("frontal view (azimuth 0)", "rotated view")
    for split, ids in (("train", (1, 3, 7)), ("test", (192, 195))):
        arrays, views = getattr(native, split), getattr(native, f"{split}_views")
        x, y, meta = expected_pairs(cars_dir, ids)
        got_x, got_y = np.asarray(arrays.x), np.asarray(arrays.y)
        assert got_x.dtype == np.float32
        # uint8 v ↦ v/127.5 − 1 in float32: two roundings of values in [−1, 1]
        assert_close(got_x, x, depth=2)
        assert_close(got_y, y, depth=2)
        assert isinstance(views, ViewIndex) and len(views) == len(arrays)
        np.testing.assert_array_equal(
            np.stack([views.car, views.elevation, views.azimuth], 1), meta
        )
        np.testing.assert_array_equal(arrays.label_x, -1)
        np.testing.assert_array_equal(arrays.label_y, -1)
    assert native.train.x[:].min() >= -1.0 and native.train.x[:].max() <= 1.0
    batch = native.train_batch(0, 8, seed=0)
    assert batch["x"].shape == (8, SIZE, SIZE, 3) and batch["y"].dtype == np.float32


def test_one_pool_of_views_per_split_no_copies(native):
    for split, n_cars in (("train", 3), ("test", 2)):
        arrays, views = getattr(native, split), getattr(native, f"{split}_views")
        assert arrays.x.pool is arrays.y.pool
        assert arrays.x.pool.shape == (n_cars * 4 * 24, SIZE, SIZE, 3)
        assert arrays.x.pool.dtype == np.uint8
        # the 23 pairs of one (car, elevation) read one azimuth-0 pool row
        for car in np.unique(views.car):
            for e in range(4):
                rows = arrays.x.index[(views.car == car) & (views.elevation == e)]
                assert len(rows) == 23 and len(np.unique(rows)) == 1
        assert len(np.unique(arrays.x.index)) == n_cars * 4
        assert len(np.unique(arrays.y.index)) == n_cars * 4 * 23


def test_split_by_car_id_and_car_limits(cars_dir):
    ds = load_cars(cars_dir, image_size=8, train_max_id=3)
    assert list(np.unique(ds.train_views.car)) == [1, 3]
    assert list(np.unique(ds.test_views.car)) == [7, 192, 195]
    small = load_cars(cars_dir, image_size=8, max_train_cars=2, max_test_cars=1)
    assert list(np.unique(small.train_views.car)) == [1, 3]
    assert list(np.unique(small.test_views.car)) == [192]
    assert (len(small.train), len(small.test)) == (2 * 92, 92)


def brute_area(img: np.ndarray, n_out: int) -> np.ndarray:
    """Exact area resampling of [H, W, C] to n_out × n_out by supersampling: every pixel
    repeated n_out times per axis, then block means."""
    h, w = img.shape[:2]
    fine = np.repeat(np.repeat(img, n_out, 0), n_out, 1)
    return fine.reshape(n_out, h, n_out, w, -1).mean((1, 3))


@pytest.mark.parametrize("size", [8, 12])
def test_larger_renders_are_area_downsampled_once_and_stored_as_8_bits(cars_dir, size):
    ds = load_cars(cars_dir, image_size=size, max_train_cars=1, max_test_cars=1)
    assert ds.train.x.pool.shape == (96, size, size, 3)
    x, y, _ = expected_pairs(cars_dir, (1,), lambda v: np.floor(brute_area(v, size) + 0.5))
    # float32 vs float64 rounding may differ at an exact .5: at most one 8-bit level, on top
    # of the float32 decoding's two roundings
    decoded = tolerance(1.0, depth=2)
    for got, want in ((ds.train.x[:], x), (ds.train.y[:], y)):
        diff = np.abs(got - want)
        assert diff.max() <= 1 / 127.5 + decoded and (diff > decoded).mean() < 1e-3


def test_smaller_renders_stay_native_and_are_replicated_on_read(cars_dir, native):
    ds = load_cars(cars_dir, image_size=2 * SIZE)
    assert ds.train.x.pool.shape[1:] == (SIZE, SIZE, 3)  # stored at the native size
    assert ds.x_shape == (2 * SIZE, 2 * SIZE, 3)
    up = lambda v: np.repeat(np.repeat(v, 2, 1), 2, 2)  # noqa: E731
    # the same 8-bit values decoded (two float32 roundings), and the same stored pool's std
    assert_close(ds.test.y[[5, 100]], up(native.test.y[[5, 100]]), depth=2)
    assert_close(ds.x_std, up(native.x_std[None])[0], depth=STD_DEPTH, scale=1.0)
    assert ds.test.x[:].min() >= -1.0 and ds.test.x[:].max() <= 1.0


def test_pixel_std_is_the_train_std_whatever_the_chunk(cars_dir, native, monkeypatch):
    # against the float64 std of the decoded float32 rows (scale 1: the pixel values)
    for got, rows in ((native.x_std, native.train.x), (native.y_std, native.train.y)):
        want = np.asarray(rows, np.float64).std(0)
        assert_close(got, want, depth=STD_DEPTH, scale=1.0)
    monkeypatch.setattr(cars, "STD_CHUNK_BYTES", 1)  # one pool row per chunk
    chunked = load_cars(cars_dir, image_size=SIZE)
    assert_close(chunked.y_std, native.y_std, depth=STD_DEPTH, scale=1.0)


def test_views_are_cached_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    folder = make_fixture(str(tmp_path / "c"), (1, 192), size=8)
    first = load_cars(folder, image_size=8)
    cache = os.path.join(folder, "wyner_jax_cache")
    assert sorted(f.split("-")[1] for f in os.listdir(cache)) == ["test", "train"]

    def refuse(path):
        raise AssertionError(f"decoded {path} although the cache holds it")

    monkeypatch.setattr(cars, "read_car", refuse)
    again = load_cars(folder, image_size=8)
    np.testing.assert_array_equal(again.train.y[:], first.train.y[:])
    monkeypatch.undo()
    # an unreadable cache file is rebuilt, with a warning
    for name in os.listdir(cache):
        with open(os.path.join(cache, name), "wb") as f:
            f.write(b"junk")
    with pytest.warns(UserWarning, match="Ignoring cache file"):
        rebuilt = load_cars(folder, image_size=8)
    np.testing.assert_array_equal(rebuilt.test.x[:], first.test.x[:])
    # a changed file (new content, new mtime) is decoded again
    path = os.path.join(folder, "car_001_mesh.mat")
    sio.savemat(path, {"im": np.zeros((8, 8, 3, 24, 4), np.uint8)})
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    changed = load_cars(folder, image_size=8)
    np.testing.assert_array_equal(changed.train.x[:], -1.0)
    np.testing.assert_array_equal(changed.test.x[:], first.test.x[:])
    # an unwritable cache folder is skipped
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="not writable"):
        skipped = load_cars(folder, image_size=8, cache_dir=str(blocker / "cache"))
    np.testing.assert_array_equal(skipped.test.y[:], first.test.y[:])


def test_missing_or_empty_folder_says_where_to_get_and_put_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cars(str(tmp_path / "nowhere"))
    message = str(err.value)
    for part in (
        "nips2015-analogy-data.tar.gz",
        "car_001_mesh.mat",
        "--config.data.dir",
        "make_cars_fixture.py --out",
        str(tmp_path / "nowhere"),
    ):
        assert part in message
    assert not (tmp_path / "nowhere").exists()  # nothing written
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "car_001.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="found no car_\\*_mesh.mat"):
        load_cars(str(tmp_path / "empty"))
    assert os.listdir(tmp_path / "empty") == ["car_001.png"]


def _good(folder, car, size=4):
    sio.savemat(
        os.path.join(folder, f"car_{car:03d}_mesh.mat"),
        {"im": np.zeros((size, size, 3, 24, 4), np.uint8)},
    )


@pytest.mark.parametrize(
    "content,match",
    [
        ({"im": np.zeros((4, 4, 3, 24, 3), np.uint8)}, "shape \\(4, 4, 3, 24, 3\\)"),
        ({"im": np.zeros((4, 4, 3, 24), np.uint8)}, "shape \\(4, 4, 3, 24\\)"),
        ({"im": np.zeros((4, 4, 3, 24, 4))}, "type double"),
        ({"img": np.zeros((4, 4, 3, 24, 4), np.uint8)}, "no variable 'im'.*img"),
        (b"this is not a MATLAB file at all", "not a readable MATLAB file"),
    ],
)
def test_malformed_car_files_are_refused_before_anything_is_written(tmp_path, content, match):
    _good(tmp_path, 1)
    bad = os.path.join(tmp_path, "car_192_mesh.mat")
    if isinstance(content, bytes):
        with open(bad, "wb") as f:
            f.write(content)
    else:
        sio.savemat(bad, content)
    with pytest.raises(ValueError, match=match) as err:
        load_cars(str(tmp_path), image_size=4)
    assert bad in str(err.value) and "uint8 array [H, W, 3, 24, 4]" in str(err.value)
    assert "make_cars_fixture.py" in str(err.value)
    assert not (tmp_path / "wyner_jax_cache").exists()


def test_bad_settings_names_and_empty_splits_are_refused(tmp_path):
    _good(tmp_path, 1)
    _good(tmp_path, 5)
    with pytest.raises(ValueError, match="test split is empty.*train_max_id") as err:
        load_cars(str(tmp_path), image_size=4)
    assert "ids found: 1..5" in str(err.value)
    with pytest.raises(ValueError, match="train split is empty"):
        load_cars(str(tmp_path), image_size=4, train_max_id=0)
    with pytest.raises(ValueError, match="image_size must be at least 2"):
        load_cars(str(tmp_path), image_size=1, train_max_id=3)
    with pytest.raises(ValueError, match="max_test_cars must be >= 0"):
        load_cars(str(tmp_path), image_size=4, train_max_id=3, max_test_cars=-1)
    shutil.copy(tmp_path / "car_001_mesh.mat", tmp_path / "car_1_mesh.mat")
    with pytest.raises(ValueError, match="both hold car 1"):
        load_cars(str(tmp_path), image_size=4, train_max_id=3)
    os.remove(tmp_path / "car_1_mesh.mat")
    shutil.copy(tmp_path / "car_001_mesh.mat", tmp_path / "car_x1_mesh.mat")
    with pytest.raises(ValueError, match="cannot read a car id"):
        load_cars(str(tmp_path), image_size=4, train_max_id=3)
    assert not (tmp_path / "wyner_jax_cache").exists()
    os.remove(tmp_path / "car_x1_mesh.mat")
    ok = load_cars(str(tmp_path), image_size=4, train_max_id=3)  # and then it loads
    assert (len(ok.train), len(ok.test)) == (92, 92)


def test_figure_rows_spread_over_cars_elevations_and_azimuths(native):
    views = native.test_views
    pick = native.figure_rows(10)
    assert pick.shape == (10,)
    for i, row in enumerate(pick):
        assert views.car[row] == (192, 195)[i % 2]
        assert views.elevation[row] == (i // 2) % 4
        assert views.azimuth[row] == 1 + (5 * i) % 23
    assert np.all(np.diff(views.azimuth[pick]) != 0) and np.all(np.diff(views.car[pick]) != 0)
    assert len(np.unique(views.azimuth[native.figure_rows(23)])) == 23  # 23 is prime


def test_frontal_rows_hold_each_azimuth_0_view_once(native):
    for split, n_cars in (("test", 2), ("train", 3)):
        views, arrays = getattr(native, f"{split}_views"), getattr(native, split)
        rows = native.frontal_rows(split)
        assert len(rows) == n_cars * 4 and np.all(np.diff(rows) > 0)
        np.testing.assert_array_equal(views.azimuth[rows], 1)  # the first pair of each
        assert len(np.unique(arrays.x.index[rows])) == n_cars * 4
    np.testing.assert_array_equal(native.frontal_rows(), np.arange(8) * 23)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        native.frontal_rows("valid")


def test_build_from_the_registry(cars_dir):
    assert data.REGISTRY["cars"] is load_cars
    config = ml_collections.ConfigDict(
        {"name": "cars", "dir": cars_dir, "image_size": 8, "max_test_cars": 1, "batch": 4}
    )
    ds = data.build(config)
    assert isinstance(ds, CarViewsDataset)
    assert ds.x_shape == (8, 8, 3) and len(ds.test) == 92


def test_fixture_is_deterministic_and_shows_car_elevation_and_azimuth(tmp_path):
    a = mat(make_fixture(str(tmp_path / "a"), (4, 9), size=16), 4).astype(float)
    b = mat(make_fixture(str(tmp_path / "b"), (4,), size=16), 4).astype(float)
    np.testing.assert_array_equal(a, b)
    other = mat(str(tmp_path / "a"), 9).astype(float)

    def gap(u, v):
        return np.abs(u - v).mean()

    assert gap(a[..., 0, 1], other[..., 0, 1]) > 5  # cars differ
    assert gap(a[..., 0, 1], a[..., 0, 3]) > 5  # elevation shows
    assert gap(a[..., 0, 1], a[..., 6, 1]) > 5  # azimuth shows
    # The nose is not the tail: facing left (0) is not facing right (12, its mirror image, as
    # for a real car), and the front view (6) is not the rear view (18).
    assert gap(a[..., 0, 1], a[..., 12, 1]) > 5
    assert gap(a[..., 6, 1], a[..., 18, 1]) > 1
