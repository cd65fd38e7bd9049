"""Rendered 3D cars of Reed et al., "Deep Visual Analogy-Making" (NIPS 2015), paired as IIAE's
Cars experiment pairs them (iiae.md §5.1, its `preprocess_cars.py`).

Files: the release http://www.scottreed.info/files/nips2015-analogy-data.tar.gz unpacks to
`data/cars/car_XXX_mesh.mat` (XXX = the zero-padded car id, 001..199; 183 files, some ids
missing). Each is a MATLAB file whose variable `im` is a uint8 array [H, W, 3, 24, 4] =
(height, width, RGB, azimuth, elevation): every car rendered at 24 azimuths (15° steps) and
4 elevations (H = W = 128 in the release; the size is read, not assumed).

Pairs (the reference's): x = the azimuth-0 view ("profile"), y = one of the other 23 azimuths
at the same elevation, so x carries the car and elevation (the shared content) and y adds the
rotation (what is exclusive to y). Car ids ≤ `train_max_id` (191) train: 176 cars × 4
elevations × 23 azimuths = 16,192 pairs; ids above it test. Pairs are ordered by car, then
elevation, then azimuth 1..23. Images are area-resized to image_size × image_size (TF's
`ResizeMethod.AREA`, the reference's 256) and mapped to [−1, 1], as the pix2pix pipeline.

Storage: one uint8 pool of views per split, [n_cars·4·24, h, w, 3] at min(native,
image_size) per axis (pool row (car k, elevation e, azimuth a) = (k·4 + e)·24 + a). Larger
renders are area-downsampled once when loaded and rounded to 8 bits; smaller ones stay native
and are area-upsampled when a batch is read (from 128 to 256: pixel replication, as TF's AREA
resize). x and y are rows of that pool: the azimuth-0 view of a (car, elevation) is stored
once and indexed by its 23 pairs. Decoded pools are cached in ``cache_dir`` (default
`<dir>/wyner_jax_cache`, or a local cache folder when ``dir`` is a ``gs://`` URL:
``base.derived_dir``), keyed by the file names, sizes and modification times and the stored
size; an unreadable cache file is rebuilt, an unwritable folder skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from wyner_jax import paths
from wyner_jax.data.base import PairedArrays, PairedDataset, derived_dir
from wyner_jax.data.mnist import _load_cached, _save_cached, params_hash, usable_cache_dir
from wyner_jax.data.pix2pix import _to_uint8, image_rows, resize_area

# Bump when the content or meaning of a cache file changes: old files are then ignored.
CACHE_FORMAT = 1
CARS_URL = "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz"
NUM_AZIMUTHS = 24
NUM_ELEVATIONS = 4
FILE_PATTERN = re.compile(r"^car_(\d+)_mesh\.mat$")
# Bytes of float64 scratch per chunk when computing the pixel std (a 128×128 view is 393 kB
# as float64: the default chunk of 8,192 rows would need gigabytes).
STD_CHUNK_BYTES = 1 << 27


@dataclasses.dataclass(frozen=True)
class ViewIndex:
    """Which views one split's pairs show, one entry per pair (int32 arrays).

    Attributes:
      car: the car id of the file (car_XXX_mesh.mat).
      elevation: the elevation index 0..3 of both views.
      azimuth: y's azimuth index 1..23 (x is always azimuth 0).
    """

    car: np.ndarray
    elevation: np.ndarray
    azimuth: np.ndarray

    def __len__(self) -> int:
        return len(self.car)


@dataclasses.dataclass(frozen=True)
class CarViewsDataset(PairedDataset):
    """Pairs (azimuth-0 view, rotated view) of one car at one elevation (no labels).

    Extra attributes:
      train_views, test_views: each pair's car, elevation and y azimuth (`ViewIndex`).
      num_azimuths, num_elevations: 24 and 4, the renders' grid.
      domain_names: (x, y) domain names.
    """

    train_views: ViewIndex | None = None
    test_views: ViewIndex | None = None
    num_azimuths: int = NUM_AZIMUTHS
    num_elevations: int = NUM_ELEVATIONS
    domain_names: tuple[str, str] = ("frontal view (azimuth 0)", "rotated view")

    def _views(self, split: str) -> ViewIndex:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
        return self.train_views if split == "train" else self.test_views

    def figure_rows(self, rows: int) -> np.ndarray:
        """`rows` test pair indices for image grids, spread over cars and views: row i shows
        test car i mod n_cars at elevation (i // n_cars) mod n_elevations and azimuth
        1 + (5·i) mod 23, so consecutive rows differ in car and azimuth."""
        views = self.test_views
        cars = np.unique(views.car)
        out = np.empty(int(rows), np.int64)
        for i in range(len(out)):
            car = cars[i % len(cars)]
            elevations = np.unique(views.elevation[views.car == car])
            elevation = elevations[(i // len(cars)) % len(elevations)]
            azimuth = 1 + (5 * i) % (self.num_azimuths - 1)
            match = (views.car == car) & (views.elevation == elevation)
            hit = np.flatnonzero(match & (views.azimuth == azimuth))
            out[i] = hit[0] if len(hit) else np.flatnonzero(match)[0]
        return out

    def frontal_rows(self, split: str = "test") -> np.ndarray:
        """Index of the first pair of every (car, elevation) of `split`, in pair order: each
        distinct azimuth-0 x once."""
        views = self._views(split)
        key = views.car.astype(np.int64) * self.num_elevations + views.elevation
        return np.sort(np.unique(key, return_index=True)[1])


# --------------------------------------------------------------------------- files


def _missing(directory: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"cars: {what} {str(paths.absolute(directory))!r}. Expected the rendered 3D cars of Reed "
        "et al. (Deep Visual Analogy-Making, NIPS 2015) as <dir>/car_001_mesh.mat ... "
        "<dir>/car_199_mesh.mat (183 files, each a MATLAB file whose 'im' is uint8 [H, W, 3, "
        f"24 azimuths, 4 elevations]). Get the data: download {CARS_URL} and unpack it; the "
        "files are in its data/cars/ folder. Point the loader at it with "
        "--config.data.dir=/path (the folder holding the .mat files). For a small synthetic "
        "stand-in run `python scripts/make_cars_fixture.py --out DIR`."
    )


def list_cars(directory: str) -> list[tuple[int, str]]:
    """(car id, path) of every `car_XXX_mesh.mat` in `directory` (local or a URL), sorted by
    id."""
    if not paths.path(directory).is_dir():
        raise _missing(directory, "cannot find the folder")
    cars = {}
    for path in map(os.fspath, paths.path(directory).glob("car_*_mesh.mat")):
        name = os.path.basename(path)
        match = FILE_PATTERN.match(name)
        if match is None:
            raise ValueError(
                f"cars: cannot read a car id from {path!r}; the files must be named "
                "car_XXX_mesh.mat with XXX the car's number (e.g. car_001_mesh.mat). Rename "
                "or remove it."
            )
        car = int(match.group(1))
        if car in cars:
            raise ValueError(
                f"cars: {path!r} and {cars[car]!r} both hold car {car}; keep one of them."
            )
        cars[car] = path
    if not cars:
        raise _missing(directory, "found no car_*_mesh.mat file in")
    return sorted(cars.items())


def _bad_file(path: str, problem: str) -> ValueError:
    return ValueError(
        f"cars: {path} {problem}, but every car file must be a MATLAB .mat file whose variable "
        "'im' is a uint8 array [H, W, 3, 24, 4] (height, width, RGB, azimuth, elevation), as "
        f"in Reed et al.'s release ({CARS_URL}). Replace the file with the released one, or "
        "remove it (or write a synthetic stand-in with `python scripts/make_cars_fixture.py "
        "--out DIR`)."
    )


def _check_im(path: str, shape: tuple[int, ...], dtype: str) -> None:
    if len(shape) != 5 or tuple(shape[2:]) != (3, NUM_AZIMUTHS, NUM_ELEVATIONS):
        raise _bad_file(path, f"holds 'im' of shape {tuple(shape)}")
    if min(shape[:2]) < 1:
        raise _bad_file(path, f"holds 'im' of shape {tuple(shape)} (no pixels)")
    if dtype != "uint8":
        raise _bad_file(path, f"holds 'im' of type {dtype}")


def inspect_car(path: str) -> tuple[int, int]:
    """(H, W) of a car file's `im`, from the .mat header (the pixels are not read); refuses a
    file that is not a .mat file or whose `im` is missing or of the wrong shape or type."""
    from scipy import io as sio

    try:
        with paths.path(path).open("rb") as f:
            header = sio.whosmat(f)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same explanation
        raise _bad_file(
            path,
            f"is not a readable MATLAB file (scipy.io: {type(e).__name__}: {e}; a v7.3 HDF5 "
            "file must be re-saved with MATLAB's save -v7)",
        ) from None
    found = {name: (tuple(shape), cls) for name, shape, cls in header}
    if "im" not in found:
        raise _bad_file(path, f"has no variable 'im' (it holds {sorted(found) or 'nothing'})")
    shape, cls = found["im"]
    _check_im(path, shape, cls)
    return int(shape[0]), int(shape[1])


def read_car(path: str) -> np.ndarray:
    """The views of one car file as uint8 [elevation, azimuth, H, W, 3] = [4, 24, H, W, 3]."""
    from scipy import io as sio

    try:
        with paths.path(path).open("rb") as f:
            im = sio.loadmat(f, variable_names=["im"])["im"]
    except Exception as e:  # noqa: BLE001
        raise _bad_file(path, f"could not be read (scipy.io: {type(e).__name__}: {e})") from None
    _check_im(path, im.shape, str(im.dtype))
    return np.ascontiguousarray(np.transpose(im, (4, 3, 0, 1, 2)))


def read_pool(
    files: list[str], split: str, height: int, width: int, cache_dir: str | None
) -> np.ndarray:
    """uint8 pool [len(files)·4·24, height, width, 3] of the views of `files` (row
    (k·4 + e)·24 + a: file k, elevation e, azimuth a), area-resized where the files are larger.
    Cached."""
    stats = [(os.path.basename(p), *paths.stamp(p)) for p in files]
    meta = {
        "dataset": "cars",
        "split": split,
        "stored": [height, width],
        "files": params_hash({"files": stats}),
        "format": CACHE_FORMAT,
    }
    n_views = NUM_ELEVATIONS * NUM_AZIMUTHS
    cache = None
    if cache_dir is not None:
        cache = os.path.join(cache_dir, f"cars-{split}-{params_hash(meta)}.npz")
        cached = _load_cached(cache, meta, ("views",))
        if cached is not None and cached["views"].shape == (len(files) * n_views, height, width, 3):
            return cached["views"]
    pool = np.empty((len(files) * n_views, height, width, 3), np.uint8)
    for k, path in enumerate(files):
        views = read_car(path)
        views = views.reshape((n_views,) + views.shape[2:])
        if views.shape[1:3] != (height, width):
            views = _to_uint8(resize_area(views, height, width))
        pool[k * n_views : (k + 1) * n_views] = views
    _save_cached(cache, meta, {"views": pool})
    return pool


# --------------------------------------------------------------------------- pairs


def view_pairs(car_ids: list[int]) -> tuple[np.ndarray, np.ndarray, ViewIndex]:
    """(x pool rows, y pool rows, views) of the reference's pairs over the cars of one pool:
    for every car, elevation and azimuth a = 1..23, x = the azimuth-0 view and y = view a."""
    k, e, a = np.meshgrid(
        np.arange(len(car_ids)),
        np.arange(NUM_ELEVATIONS),
        np.arange(1, NUM_AZIMUTHS),
        indexing="ij",
    )
    k, e, a = k.ravel(), e.ravel(), a.ravel()
    first = (k * NUM_ELEVATIONS + e) * NUM_AZIMUTHS  # the azimuth-0 view's pool row
    views = ViewIndex(
        car=np.asarray(car_ids, np.int32)[k],
        elevation=e.astype(np.int32),
        azimuth=a.astype(np.int32),
    )
    return first, first + a, views


def _std(rows) -> np.ndarray:
    """Per-pixel std of `rows` in chunks of about STD_CHUNK_BYTES of float64."""
    chunk = max(1, STD_CHUNK_BYTES // (8 * int(np.prod(rows.pool.shape[1:]))))
    return rows.pixel_std(chunk)


def load_cars(
    dir: str = "",
    image_size: int = 256,
    train_max_id: int = 191,
    cache_dir: str = "",
    max_train_cars: int = 0,
    max_test_cars: int = 0,
) -> CarViewsDataset:
    """Load the Cars pairs (see the module docstring).

    Args:
      dir: the folder holding car_XXX_mesh.mat, local or gs://; '' means data/cars.
      image_size: side of the square images the networks see (the reference's 256; smaller
        for CPU smoke runs).
      train_max_id: cars with id ≤ this train, the others test (the reference's 191).
      cache_dir: cache folder; '' means `<dir>/wyner_jax_cache` (`base.derived_dir`).
      max_train_cars, max_test_cars: > 0 keeps only the first cars (by id) of a split (smoke
        runs).

    Raises:
      FileNotFoundError: the folder is missing or holds no car file (the message says where
        to get the data and where to put it).
      ValueError: bad settings, an empty split, or a file that is not a car render file.
    """
    image_size = int(image_size)
    if image_size < 2:
        raise ValueError(f"config.data.image_size must be at least 2, got {image_size}.")
    limits = {"max_train_cars": int(max_train_cars), "max_test_cars": int(max_test_cars)}
    for key, value in limits.items():
        if value < 0:
            raise ValueError(f"config.data.{key} must be >= 0 (0 keeps every car), got {value}.")
    train_max_id = int(train_max_id)
    directory = os.path.expanduser(dir or "data/cars")
    cars = list_cars(directory)
    splits = {
        "train": [c for c in cars if c[0] <= train_max_id],
        "test": [c for c in cars if c[0] > train_max_id],
    }
    for split, members in splits.items():
        if not members:
            side = "at most" if split == "train" else "above"
            raise ValueError(
                f"cars: no car file in {str(paths.absolute(directory))!r} has an id {side} "
                f"train_max_id={train_max_id} (ids found: {cars[0][0]}..{cars[-1][0]}), so the "
                f"{split} split is empty. The reference trains on ids 1-191 and tests on "
                "192-199: add the missing files, or move the boundary with "
                "--config.data.train_max_id=N."
            )
    for split, limit in (("train", limits["max_train_cars"]), ("test", limits["max_test_cars"])):
        if limit > 0:
            splits[split] = splits[split][:limit]
    # Every kept file's header is checked before anything (the cache) is written.
    sizes = [inspect_car(path) for members in splits.values() for _, path in members]
    height = min(image_size, min(h for h, _ in sizes))
    width = min(image_size, min(w for _, w in sizes))
    cache = usable_cache_dir(cache_dir or derived_dir(directory, "wyner_jax_cache"))
    arrays, views = {}, {}
    for split, members in splits.items():
        pool = read_pool([p for _, p in members], split, height, width, cache)
        ix, iy, views[split] = view_pairs([c for c, _ in members])
        no_label = np.full(len(ix), -1, np.int32)
        arrays[split] = PairedArrays(
            x=image_rows(pool, image_size, ix),
            y=image_rows(pool, image_size, iy),
            label_x=no_label,
            label_y=no_label,
        )
    train = arrays["train"]
    return CarViewsDataset(
        name="cars",
        train=train,
        test=arrays["test"],
        num_classes=None,
        label_rule=None,
        x_std=_std(train.x),
        y_std=_std(train.y),
        train_views=views["train"],
        test_views=views["test"],
    )
