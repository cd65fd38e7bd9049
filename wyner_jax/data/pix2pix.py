"""Paired image-to-image data in the pix2pix format: Maps and Facades (pix2pix, Isola et al.
2017) and MNIST-CDCB (the colored-digit / colored-background pairs of the cross-domain
disentanglement network, CdDN), as IIAE's image-to-image experiments read them
(iiae.md §5.1, `load_examples` of its `run_cross_vae.py`).

Format, the same for the three datasets: one image file per pair, domain A on the left half
and domain B on the right half, one folder per split:

  <dir>/train/1.jpg, 2.jpg, ...           (pix2pix: Maps, Facades; train, val, test folders)
  <dir>/train/00001.png, 00002.png, ...   (MNIST-CDCB; train, valid, test folders)

Reading, as the reference: a folder's `*.jpg` files, or its `*.png` files when it holds no
JPEG; files sorted by the number in their name when every name is a number, else by name;
each image RGB (palette PNGs are expanded to RGB, as libpng does for TF; other modes are
refused, as the reference's 3-channel assertion); split at width // 2 (the right half keeps
an odd column); each half resized to image_size × image_size by area averaging (TF's
`ResizeMethod.AREA`; no crop, no flip), then mapped to [−1, 1].

Direction: x is the left half (A) and y the right half (B), for all three datasets, as in the
reference (its `which_direction` flag is unused): Maps x = satellite photo (S), y = map (M);
Facades x = facade photo (F), y = label map (L); MNIST-CDCB x = colored digit (CD), y =
colored background (CB) (which half is which is iiae.md's inference). ``direction='BtoA'``
swaps the two.

Splits (``train_split`` / ``test_split`` name the folders): Maps trains on `train` (1,096)
and tests on pix2pix's `val` (1,098), which IIAE copies to `test`; Facades `train` (400) and
`test` (106); MNIST-CDCB `train` and `test` (10,000). The reference's validation folders
(its checkpoint selection, iiae.md §5.2) are not read: the final model is evaluated.

Storage: the halves are kept as uint8 at min(native, image_size) per axis. Larger images
(Maps 600×600, Facades at image_size < 256) are area-downsampled once when loaded, then
rounded to 8 bits (at most 0.5/255 away from the reference's float result); smaller ones
(MNIST-CDCB digits) stay at their native size and are area-upsampled (for an integer factor:
pixel replication) when a batch is read, so 10,000 pairs at 256 px never sit in memory as
floats. Decoded splits are cached in ``cache_dir`` (default `<dir>/wyner_jax_cache`, or a
local cache folder when ``dir`` is a ``gs://`` URL: ``base.derived_dir``), keyed by the file
names, sizes and modification times and the stored size; an unreadable cache file is rebuilt,
an unwritable folder skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from wyner_jax import paths
from wyner_jax.data.base import PairedArrays, PairedDataset, derived_dir
from wyner_jax.data.mnist import (
    ImageRows,
    _load_cached,
    _save_cached,
    params_hash,
    usable_cache_dir,
)

# Bump when the content or meaning of a cache file changes: old files are then ignored.
CACHE_FORMAT = 1
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"


@dataclasses.dataclass(frozen=True)
class Spec:
    """What the loader knows about one dataset: its default folders, its two domains and
    their abbreviations in IIAE's Table 9, the published split sizes and where to get it."""

    name: str
    dir: str
    train_split: str
    test_split: str
    domains: tuple[str, str]
    abbrev: tuple[str, str]
    sizes: tuple[int | None, int | None]
    source: str


SPECS = {
    "maps": Spec(
        name="maps",
        dir="data/maps",
        train_split="train",
        test_split="val",
        domains=("satellite photo", "map"),
        abbrev=("S", "M"),
        sizes=(1096, 1098),
        source=(
            f"pix2pix's Maps: download {PIX2PIX_URL.format('maps')} and unpack it so that "
            "<dir>/train/1.jpg ... and <dir>/val/1.jpg ... exist (IIAE's copy renames val to "
            "test: then set --config.data.test_split=test)"
        ),
    ),
    "facades": Spec(
        name="facades",
        dir="data/facades",
        train_split="train",
        test_split="test",
        domains=("facade photo", "label map"),
        abbrev=("F", "L"),
        sizes=(400, 106),
        source=(
            f"pix2pix's Facades: download {PIX2PIX_URL.format('facades')} and unpack it so "
            "that <dir>/train/1.jpg ... and <dir>/test/1.jpg ... exist"
        ),
    ),
    "mnist_cdcb": Spec(
        name="mnist_cdcb",
        dir="data/MNIST-CDCB",
        train_split="train",
        test_split="test",
        domains=("colored digit", "colored background"),
        abbrev=("CD", "CB"),
        sizes=(None, 10000),
        source=(
            "MNIST-CDCB of the cross-domain disentanglement network (IIAE's README points to "
            "github.com/agonzgarc/cross-domain-disen, whose DATA/MNISTCDCB/ holds example "
            "pairs; the full set comes from its authors): put the side-by-side PNG pairs "
            "(colored digit left, colored background right) in <dir>/train/00001.png ... and "
            "<dir>/test/00001.png ..., the layout IIAE's run_cross_vae.py reads"
        ),
    ),
}


# --------------------------------------------------------------------------- resizing


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D area resampling (TF's ResizeMethod.AREA, no corner
    alignment): output pixel i averages the input over [i·s, (i+1)·s), s = n_in / n_out,
    each input pixel j weighted by the length of its overlap with that interval, over s.

    Rows sum to 1. Downsampling by an integer factor is the block mean, upsampling by an
    integer factor is pixel replication, and n_in == n_out is the identity.
    """
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    j = np.arange(n_in)[None, :]
    overlap = np.minimum(lo + s, j + 1) - np.maximum(lo, j)
    return np.clip(overlap, 0.0, None) / s


def resize_area(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area resize of [..., H, W, C] images to [..., height, width, C] (float32, same scale)."""
    images = np.asarray(images, np.float32)
    h, w = images.shape[-3], images.shape[-2]
    out = images
    # tensordot runs as one BLAS matrix product per axis (600×600 Maps halves: milliseconds).
    if h != height:
        out = np.moveaxis(
            np.tensordot(area_matrix(h, height).astype(np.float32), out, (1, -3)), 0, -3
        )
    if w != width:
        out = np.moveaxis(
            np.tensordot(area_matrix(w, width).astype(np.float32), out, (1, -2)), 0, -2
        )
    return np.ascontiguousarray(out, np.float32)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(images + 0.5), 0, 255).astype(np.uint8)


class ResizedImageRows(ImageRows):
    """Rows of a uint8 image pool read as float32 in [−1, 1] and area-resized to
    size × size on read (the pool keeps the smaller native size; see the module docstring)."""

    def __init__(self, pool: np.ndarray, size: int, index: np.ndarray | None = None):
        super().__init__(pool, index)
        self.size = int(size)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), self.size, self.size, self.pool.shape[-1])

    def decode(self, rows: np.ndarray) -> np.ndarray:
        single = rows.ndim == self.pool.ndim - 1
        batch = super().decode(rows.reshape((-1,) + self.pool.shape[1:]))
        out = resize_area(batch, self.size, self.size)
        return out[0] if single else out

    def pixel_std(self, chunk: int = 8192) -> np.ndarray:
        """Per-pixel standard deviation of the resized rows: the native one resized (exact
        when the size is an integer multiple of the native one, pixel replication)."""
        return resize_area(super().pixel_std(chunk), self.size, self.size)


def image_rows(pool: np.ndarray, size: int, index: np.ndarray | None = None) -> ImageRows:
    """`ImageRows` of a pool already at size × size, else `ResizedImageRows`."""
    if pool.shape[1] == pool.shape[2] == size:
        return ImageRows(pool, index)
    return ResizedImageRows(pool, size, index)


# --------------------------------------------------------------------------- files


def list_pairs(folder: str) -> list[str]:
    """The pair files of one split folder in the reference's order: `*.jpg`, or `*.png` when
    there is no JPEG; numeric order when every file name is a number, else by path. The
    folder may be a URL (its files are then URLs too)."""
    found = [os.fspath(p) for p in paths.path(folder).glob("*.jpg")] or [
        os.fspath(p) for p in paths.path(folder).glob("*.png")
    ]

    def stem(path):
        return os.path.splitext(os.path.basename(path))[0]

    if found and all(stem(p).isdigit() for p in found):
        return sorted(found, key=lambda p: int(stem(p)))
    return sorted(found)


def _missing(spec: Spec, folder: str, split: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{spec.name}: {what} {str(paths.absolute(folder))!r} (split {split!r}). Expected one image "
        "per pair, domain A on the left half and B on the right half (*.jpg, or *.png when "
        f"there is no JPEG). Get the data: {spec.source}. Point the loader at it with "
        "--config.data.dir=/path (the folder holding the split folders) and name the split "
        "folders with --config.data.train_split / --config.data.test_split. For a small "
        f"synthetic stand-in run `python scripts/make_pix2pix_fixture.py --dataset {spec.name} "
        "--out DIR`."
    )


def _open_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with paths.path(path).open("rb") as f, Image.open(f) as im:
        if im.mode == "P" and "transparency" not in im.info:
            im = im.convert("RGB")
        if im.mode != "RGB":
            raise ValueError(
                f"{path} is a {im.mode} image, but a pair file must be RGB (3 channels), as "
                "the reference asserts; convert it (e.g. PIL's Image.convert('RGB'))."
            )
        return np.asarray(im, np.uint8)


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file header."""
    from PIL import Image

    with paths.path(path).open("rb") as f, Image.open(f) as im:
        return im.size[1], im.size[0]


def read_split(
    spec: Spec, directory: str, split: str, image_size: int, cache_dir: str | None, limit: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(left halves, right halves, file names) of one split folder, uint8 [N, h, w, 3] at
    min(native, image_size) per axis (see the module docstring). `limit` > 0 keeps the first
    `limit` files (smoke runs). Cached."""
    folder = os.fspath(paths.path(directory) / split)
    if not paths.path(folder).is_dir():
        raise _missing(spec, folder, split, "cannot find the split folder")
    files = list_pairs(folder)
    if not files:
        raise _missing(spec, folder, split, "found no *.jpg or *.png file in")
    if limit > 0:
        files = files[:limit]
    sizes = [_image_size(p) for p in files]
    too_small = [os.path.basename(p) for p, (h, w) in zip(files, sizes) if w < 2]
    if too_small:
        raise ValueError(f"{spec.name}: {too_small[0]} is less than 2 pixels wide: not a pair.")
    height = min(image_size, min(h for h, _ in sizes))
    width = min(image_size, min(w // 2 for _, w in sizes))
    stats = [(os.path.basename(p), *paths.stamp(p)) for p in files]
    meta = {
        "dataset": spec.name,
        "split": split,
        "stored": [height, width],
        "files": params_hash({"files": stats}),
        "format": CACHE_FORMAT,
    }
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"{spec.name}-{split}-{params_hash(meta)}.npz")
        cached = _load_cached(path, meta, ("left", "right"))
        if cached is not None and len(cached["left"]) == len(files):
            return cached["left"], cached["right"], [s[0] for s in stats]
    left = np.empty((len(files), height, width, 3), np.uint8)
    right = np.empty_like(left)
    for i, p in enumerate(files):
        img = _open_rgb(p)
        half = img.shape[1] // 2
        for out, part in ((left, img[:, :half]), (right, img[:, half:])):
            if part.shape[:2] == (height, width):
                out[i] = part
            else:
                out[i] = _to_uint8(resize_area(part, height, width))
    _save_cached(path, meta, {"left": left, "right": right})
    return left, right, [s[0] for s in stats]


# --------------------------------------------------------------------------- datasets


@dataclasses.dataclass(frozen=True)
class ImagePairsDataset(PairedDataset):
    """Instance-paired images: row i of x and row i of y show the same scene (no labels).

    Extra attributes:
      instance_pairs: True, so the evaluation computes pair Recall@1 across domains
        (`retrieval/R@1_*`, iiae.md §5.3).
      domain_names: (x, y) domain names, e.g. ('satellite photo', 'map').
      abbrev: their abbreviations in IIAE's Table 9, e.g. ('S', 'M').
      test_files: the test pair files' names, in order.
      published_sizes: (train, test) pair counts of the published data (None: unknown).
    """

    instance_pairs: bool = True
    domain_names: tuple[str, str] = ("x", "y")
    abbrev: tuple[str, str] = ("x", "y")
    test_files: tuple[str, ...] = ()
    published_sizes: tuple = (None, None)


def load_image_pairs(
    name: str,
    dir: str = "",
    image_size: int = 256,
    train_split: str = "",
    test_split: str = "",
    direction: str = "AtoB",
    cache_dir: str = "",
    max_train: int = 0,
    max_test: int = 0,
) -> ImagePairsDataset:
    """Load one of `SPECS` (see the module docstring).

    Args:
      name: 'maps', 'facades' or 'mnist_cdcb'.
      dir: the folder holding the split folders, local or gs://; '' is the dataset's default
        (data/maps, data/facades, data/MNIST-CDCB).
      image_size: side of the square images the networks see (the reference's 256; smaller
        for CPU smoke runs).
      train_split, test_split: split folder names; '' is the dataset's default.
      direction: 'AtoB' (x = left half, the reference) or 'BtoA' (x = right half).
      cache_dir: cache folder; '' means `<dir>/wyner_jax_cache` (`base.derived_dir`).
      max_train, max_test: > 0 keeps only the first files of a split (smoke runs).

    Raises:
      FileNotFoundError: a split folder is missing or empty (the message says where to get
        the data and where to put it).
      ValueError: bad settings or a file that is not an RGB pair.
    """
    if name not in SPECS:
        raise ValueError(f"Unknown image-pair dataset {name!r}; use one of {sorted(SPECS)}.")
    spec = SPECS[name]
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(
            f"config.data.direction must be 'AtoB' (x = left half) or 'BtoA' (x = right "
            f"half), got {direction!r}."
        )
    image_size = int(image_size)
    if image_size < 2:
        raise ValueError(f"config.data.image_size must be at least 2, got {image_size}.")
    directory = os.path.expanduser(dir or spec.dir)
    train_split = train_split or spec.train_split
    test_split = test_split or spec.test_split
    for split in (train_split, test_split):  # both checked before anything is written
        if not (paths.path(directory) / split).is_dir():
            raise _missing(spec, os.fspath(paths.path(directory) / split), split, "cannot find")
    cache = usable_cache_dir(cache_dir or derived_dir(directory, "wyner_jax_cache"))
    parts = {}
    for part, split, limit in (
        ("train", train_split, max_train),
        ("test", test_split, max_test),
    ):
        left, right, files = read_split(spec, directory, split, image_size, cache, int(limit))
        a, b = (left, right) if direction == "AtoB" else (right, left)
        parts[part] = (a, b, files)
    arrays = {}
    for part, (a, b, _) in parts.items():
        no_label = np.full(len(a), -1, np.int32)
        arrays[part] = PairedArrays(
            x=image_rows(a, image_size),
            y=image_rows(b, image_size),
            label_x=no_label,
            label_y=no_label,
        )
    order = slice(None) if direction == "AtoB" else slice(None, None, -1)
    train = arrays["train"]
    return ImagePairsDataset(
        name=name,
        train=train,
        test=arrays["test"],
        num_classes=None,
        label_rule=None,
        x_std=train.x.pixel_std(),
        y_std=train.y.pixel_std(),
        domain_names=tuple(spec.domains[order]),
        abbrev=tuple(spec.abbrev[order]),
        test_files=tuple(parts["test"][2]),
        published_sizes=spec.sizes,
    )


# The registry's loaders: `load_image_pairs` with the dataset bound (the registry reads the
# remaining keyword arguments from the data config).
load_maps = functools.partial(load_image_pairs, "maps")  # x = satellite photo, y = map
load_facades = functools.partial(load_image_pairs, "facades")  # x = facade photo, y = labels
load_mnist_cdcb = functools.partial(load_image_pairs, "mnist_cdcb")  # x = digit, y = background
