"""MNIST-Add1 and MNIST–SVHN add-1 from the TFDS catalog (wyner-model.md §5.1, §5.2, §7.8).

Both datasets pair an MNIST digit l (domain x) with an image of digit (l + 1) mod 10
(domain y): another MNIST image (MNIST-Add1) or an SVHN image (MNIST–SVHN; the reference's
MNIST–SVHN is add-1 too, not MMVAE's same-digit pairing). The pairing is the reference's
`rand_match_on_idx`: for each digit l take, in the source files' order, the first
n_l = min(#x of digit l, #y of digit l+1, max_per_class) images of each side, then
`multiplier` times permute both pools and zip them (`add1_pairs`, built on
`base.pair_by_label`). Splits:

* MNIST-Add1: train from MNIST train (max 10000 per class, multiplier 1: 58,066 pairs), test
  from MNIST test (max 1000: 9,632 pairs);
* MNIST–SVHN: train = MNIST train × SVHN **extra** (max 10000, multiplier 4: 240,000 pairs),
  test = MNIST test × SVHN test (max 1000, multiplier 4: 39,144 pairs).

The reference's "valid" split (drawn from the training images again) is not built: the
linear probes fit on the train pairs. Images are 32×32 in [−1, 1]: MNIST is resized 28→32
bilinearly exactly as torchvision's `Resize(32)` does through PIL (half-pixel centres, 8-bit
rounding; `resize_mnist`), SVHN is 32×32×3 already; both map v ↦ v/127.5 − 1.
The `Domain`s (for the evaluation classifiers) hold every MNIST train/test image and the
SVHN train/test splits.

Storage: the TFDS catalog datasets `mnist` and `svhn_cropped`, prepared once in array_record
format (which needs internet and TensorFlow: `pip install -e '.[tfds-prepare]'`, then
`tfds build mnist svhn_cropped --data_dir=DIR --file_format=array_record`), read back with
`tfds` data sources, without TensorFlow. TFDS stores records in the order of a hash of their
key; the source order ("the first n_l images") is restored from the SVHN `id` feature, and
for MNIST from TFDS's own key hash (`source_order`).

Cache (`cache_dir`, default `<data_dir>/wyner_jax_cache`): the decoded uint8 arrays of each
split (`<dataset>-<version>-<split>[-first<k>].npz`, so later runs skip PNG decoding) and the
pair indices (`pairs-<x>-<y>-<hash>.npz`, the hash of every parameter that decides them).
A cache file that is unreadable or does not match the data is rebuilt (with a warning); a
cache directory that cannot be written is skipped. Cache files go through `wyner_jax.paths`,
so a `gs://` cache_dir works too.

A `gs://` data_dir (`data.tfds_dir`): TFDS reads array_record files from a local disk only, so
each prepared dataset folder (`<data_dir>/<name>/<version>/`) is first copied to the local
cache folder `paths.local_cache(data_dir)` (once; files already there are kept), which then
serves as the data_dir, its `wyner_jax_cache` included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings

import numpy as np

from wyner_jax import paths
from wyner_jax.data.base import (
    Domain,
    IndexedRows,
    PairedArrays,
    PairedDataset,
    derived_dir,
    pair_by_label,
)

NUM_CLASSES = 10
IMAGE_SIZE = 32
MNIST = "mnist"
SVHN = "svhn_cropped"
# Bump when the content or meaning of a cache file changes: old files are then ignored.
CACHE_FORMAT = 1
READ_CHUNK = 4096


def add_one(label):
    """The add-1 rule: the y partner of digit l is digit (l + 1) mod 10."""
    return (label + 1) % NUM_CLASSES


# --------------------------------------------------------------------------- images


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D bilinear resampling with half-pixel centres.

    Output pixel i samples the input at c = (i + 0.5)·n_in/n_out − 0.5 from its two
    neighbours floor(c) and floor(c) + 1, clamped at the borders. For upsampling this is
    PIL's BILINEAR filter (a triangle of radius 1, weights renormalised inside the image).
    """
    c = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    lo = np.floor(c).astype(np.int64)
    frac = c - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, np.clip(lo, 0, n_in - 1)), 1.0 - frac)
    np.add.at(m, (rows, np.clip(lo + 1, 0, n_in - 1)), frac)
    return m


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N, H, W, C] images to [N, size, size, C] (float64, same scale)."""
    a_h = bilinear_matrix(images.shape[1], size)
    a_w = bilinear_matrix(images.shape[2], size)
    return np.einsum("ih,nhwc,jw->nijc", a_h, images.astype(np.float64), a_w, optimize=True)


def resize_mnist(images: np.ndarray, size: int = IMAGE_SIZE, chunk: int = 8192) -> np.ndarray:
    """uint8 MNIST [N, 28, 28, 1] → uint8 [N, size, size, 1] as torchvision's `Resize(size)` on
    a PIL image computes it: PIL's bilinear filter applied along the width, rounded to 8 bits,
    then along the height, rounded again (PIL resamples 8-bit images in two rounded passes).
    Equal to PIL's output bit for bit on the images tested (tests/test_mnist.py). float32 is
    exact for 28→32: the weights are multiples of 1/16."""
    a_h = bilinear_matrix(images.shape[1], size).astype(np.float32)
    a_w = bilinear_matrix(images.shape[2], size).astype(np.float32)
    out = np.empty((len(images), size, size, images.shape[-1]), np.uint8)
    for s in range(0, len(images), chunk):
        block = np.moveaxis(images[s : s + chunk], -1, 1).astype(np.float32)  # [n, C, H, W]
        wide = np.clip(np.floor(block @ a_w.T + 0.5), 0, 255)
        tall = np.clip(np.floor(a_h @ wide + 0.5), 0, 255)
        out[s : s + chunk] = np.moveaxis(tall, 1, -1).astype(np.uint8)
    return out


class ImageRows(IndexedRows):
    """Rows `pool[index]` of a uint8 image pool, read as float32 in [−1, 1] (v/127.5 − 1).

    Behaves like a read-only [N, H, W, C] float32 array for everything the pipeline does with
    data (len, shape, integer / slice / index-array indexing, `np.asarray`) without holding
    the N rows: MNIST–SVHN's 240,000 training pairs would take 3.9 GB as float32 arrays, their
    uint8 pools about 0.3 GB.
    """

    def decode(self, rows: np.ndarray) -> np.ndarray:
        return rows.astype(np.float32) / np.float32(127.5) - np.float32(1.0)

    def pixel_std(self, chunk: int = 8192) -> np.ndarray:
        """Per-pixel standard deviation over the rows (float32), computed on the distinct pool
        images weighted by how often they occur, in chunks."""
        counts = np.bincount(self.index, minlength=len(self.pool)).astype(np.float64)
        used = np.flatnonzero(counts)
        total = counts.sum()
        s1 = np.zeros(self.pool.shape[1:])
        s2 = np.zeros(self.pool.shape[1:])
        for s in range(0, len(used), chunk):
            rows = used[s : s + chunk]
            v = self.pool[rows].astype(np.float64) / 127.5 - 1.0
            w = counts[rows].reshape((-1,) + (1,) * (v.ndim - 1))
            s1 += (w * v).sum(0)
            s2 += (w * v * v).sum(0)
        mean = s1 / total
        return np.sqrt(np.maximum(s2 / total - mean * mean, 0.0)).astype(np.float32)


# --------------------------------------------------------------------------- pairing


def class_prefix(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Positions (sorted) of the first `per_class` items of every class in `labels`' order."""
    if per_class is None:
        return np.arange(len(labels))
    keep = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def add1_pairs(
    labels_x: np.ndarray,
    labels_y: np.ndarray,
    max_per_class: int,
    multiplier: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's `rand_match_on_idx` with the add-1 rule (spec §5.1, §5.2).

    For each digit l: pool_x = the first n_l positions of digit l in `labels_x`, pool_y = the
    first n_l positions of digit (l + 1) mod 10 in `labels_y`, n_l = min(#l in x,
    #(l+1) in y, max_per_class). Then `multiplier` times: permute both pools and zip them
    (`pair_by_label`). Labels must be in the source files' order. Returns (index_x, index_y)
    into `labels_x` / `labels_y`, Σ_l n_l · multiplier pairs.
    """
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}.")
    labels_x, labels_y = np.asarray(labels_x), np.asarray(labels_y)
    keep_x = np.zeros(len(labels_x), bool)
    keep_y = np.zeros(len(labels_y), bool)
    for l in range(NUM_CLASSES):
        px = np.flatnonzero(labels_x == l)
        py = np.flatnonzero(labels_y == add_one(l))
        n = min(len(px), len(py), max_per_class)
        keep_x[px[:n]] = True
        keep_y[py[:n]] = True
    sel_x, sel_y = np.flatnonzero(keep_x), np.flatnonzero(keep_y)
    ix, iy = pair_by_label(labels_x[sel_x], labels_y[sel_y], NUM_CLASSES, add_one, multiplier, rng)
    return sel_x[ix], sel_y[iy]


# --------------------------------------------------------------------------- cache files


def _load_cached(path: str, meta: dict, keys: tuple[str, ...]) -> dict | None:
    """The arrays of cache file `path` if it exists, reads, and was written for `meta`."""
    if not paths.path(path).exists():
        return None
    try:
        with paths.path(path).open("rb") as file, np.load(file, allow_pickle=False) as f:
            if json.loads(str(f["meta"])) != meta:
                raise ValueError("written for other parameters")
            return {k: f[k] for k in keys}
    except Exception as e:  # noqa: BLE001 - any unreadable cache file is rebuilt
        warnings.warn(f"Ignoring cache file {path} ({type(e).__name__}: {e}); rebuilding it.")
        return None


def _save_cached(path: str | None, meta: dict, arrays: dict) -> None:
    if path is None:
        return
    meta = np.array(json.dumps(meta, sort_keys=True))
    try:
        paths.write_atomic(path, lambda f: np.savez(f, meta=meta, **arrays))
    except OSError as e:
        warnings.warn(f"Could not write the cache file {path} ({e}); continuing without it.")


def usable_cache_dir(cache_dir: str) -> str | None:
    """`cache_dir`, created if needed, or None (with a warning) when it cannot be written.

    A URL is returned as it is: a bucket has no folders to create, and a write it refuses
    only skips that cache file (`_save_cached`)."""
    if paths.scheme(cache_dir):
        return cache_dir
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir):
            pass
        return cache_dir
    except OSError as e:
        warnings.warn(
            f"Cache directory {cache_dir!r} is not writable ({e}); decoded images and pair "
            "indices will be rebuilt on every run. Set --config.data.cache_dir to a writable "
            "folder to cache them."
        )
        return None


def params_hash(params: dict) -> str:
    """Short stable hash of a JSON-able parameter dict (cache file names)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- TFDS access


def default_data_dir(tfds_dir: str = "") -> str:
    """`tfds_dir`, or TFDS's default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets); local
    or a URL."""
    if tfds_dir:
        return os.path.expanduser(tfds_dir)
    return os.environ.get(
        "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
    )


def prepare_command(data_dir: str) -> str:
    return (
        "pip install -e '.[tfds-prepare]' && tfds build mnist svhn_cropped "
        f"--data_dir={data_dir} --file_format=array_record"
    )


def _builder(name: str, data_dir: str):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"The TFDS dataset '{name}' (version {builder.version}) is not prepared under "
            f"data_dir {str(paths.absolute(data_dir))!r} (expected "
            f"{paths.path(data_dir) / name / str(builder.version)}/). Prepare it once, on a "
            f"machine with internet access (this needs TensorFlow, an optional extra): "
            f"`{prepare_command(data_dir)}`; then copy that data_dir here if needed, or point "
            "--config.data.tfds_dir at the data_dir that holds it (default: $TFDS_DATA_DIR or "
            "~/tensorflow_datasets)."
        )
    formats = builder.info.available_file_formats()
    if not formats & set(tfds.core.FileFormat.with_random_access()):
        raise ValueError(
            f"The TFDS dataset '{name}' under {builder.data_dir} was prepared in "
            f"{', '.join(sorted(f.value for f in formats))} format, but reading it without "
            "TensorFlow needs array_record. Delete that folder and prepare it again with "
            f"--file_format=array_record: `{prepare_command(data_dir)}`."
        )
    return builder


def _data_source(builder, split: str, skip_images: bool):
    import tensorflow_datasets as tfds

    decoders = {"image": tfds.decode.SkipDecoding()} if skip_images else None
    return builder.as_data_source(split=split, decoders=decoders)


def _read_records(source, records, fields) -> dict[str, np.ndarray]:
    out = {f: [] for f in fields}
    for s in range(0, len(records), READ_CHUNK):
        for ex in source.__getitems__([int(r) for r in records[s : s + READ_CHUNK]]):
            for f in fields:
                out[f].append(ex[f])
    return {f: np.asarray(v) for f, v in out.items()}


def source_order(split: str, num_records: int, ids=None) -> np.ndarray:
    """Position in the source files of each TFDS record (record order → original order).

    TFDS writes the examples of a split sorted by an MD5 hash of their key salted with the
    split name. Where records carry the source index (SVHN's id 'extra_000123') it is parsed;
    otherwise (MNIST, whose keys are the source indices) the hash order is recomputed with
    TFDS's own hasher: record r holds source item `argsort(hashes)[r]`.
    """
    if ids is not None:
        return np.array([_source_index(i) for i in ids], np.int64)
    from tensorflow_datasets.core import hashing

    hasher = hashing.Hasher(split)
    return np.argsort([hasher.hash_key(i) for i in range(num_records)], kind="stable")


def _source_index(record_id) -> int:
    """'extra_000123' (bytes or str) -> 123."""
    text = record_id.decode() if isinstance(record_id, bytes) else str(record_id)
    return int(text.rsplit("_", 1)[-1])


def read_split(
    name: str, split: str, data_dir: str, cache_dir: str | None, per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (uint8 [N, H, W, C]) and labels of one TFDS split in source order.

    With `per_class` only the first `per_class` images of every class (in source order) are
    kept: the reference only ever uses those, and decoding all 531,131 SVHN `extra` images
    would take minutes. The result is cached; returns (images, labels, info) where info
    names the data (for cache keys).
    """
    builder = _builder(name, data_dir)
    num = builder.info.splits[split].num_examples
    info = {
        "dataset": name,
        "version": str(builder.version),
        "split": split,
        "records": num,
        "per_class": per_class,
    }
    meta = dict(info, format=CACHE_FORMAT)
    path = None
    if cache_dir is not None:
        suffix = "" if per_class is None else f"-first{per_class}"
        path = os.path.join(cache_dir, f"{name}-{builder.version}-{split}{suffix}.npz")
        cached = _load_cached(path, meta, ("images", "labels", "positions"))
        if cached is not None:
            return cached["images"], cached["labels"].astype(np.int32), info

    has_id = "id" in builder.info.features
    fields = ("label", "id") if has_id else ("label",)
    if per_class is None:  # every image is needed: decode them in the same pass
        fields = fields + ("image",)
    records = _read_records(
        _data_source(builder, split, per_class is not None), np.arange(num), fields
    )
    position = source_order(split, num, records["id"] if has_id else None)
    if not np.array_equal(np.sort(position), np.arange(num)):
        raise ValueError(
            f"TFDS '{name}' split '{split}': the record ids do not number the {num} source "
            f"items 0..{num - 1}; the prepared dataset is not the catalog's. Prepare it again "
            f"(`{prepare_command(data_dir)}`)."
        )
    in_order = np.argsort(position)  # the records holding source items 0, 1, 2, ...
    labels = records["label"][in_order].astype(np.int32)
    keep = class_prefix(labels, per_class)
    if per_class is None:
        images = records["image"][in_order]
    else:
        source = _data_source(builder, split, False)
        images = _read_records(source, in_order[keep], ("image",))["image"]
    labels, positions = labels[keep], keep
    _save_cached(path, meta, dict(images=images, labels=labels, positions=positions))
    return images, labels, info


# --------------------------------------------------------------------------- datasets


@dataclasses.dataclass(frozen=True)
class DigitPairsDataset(PairedDataset):
    """An add-1 image-pair dataset read from TFDS (MNIST-Add1, MNIST–SVHN).

    Extra attributes:
      cache_dir: the writable cache folder ('' when none): the evaluation classifiers are
        cached there too.
      domain_keys: {'x': str, 'y': str} naming the images of each `Domain` (dataset, version,
        image size): the evaluation classifiers' cache key.
    """

    cache_dir: str = ""
    domain_keys: dict = dataclasses.field(default_factory=dict)


def _pairs(
    x: tuple, y: tuple, max_per_class: int, multiplier: int, seed, cache_dir
) -> tuple[np.ndarray, np.ndarray]:
    """Cached `add1_pairs` of x = (labels, info) and y = (labels, info)."""
    (lx, info_x), (ly, info_y) = x, y
    params = dict(
        x=info_x,
        y=info_y,
        max_per_class=int(max_per_class),
        multiplier=int(multiplier),
        seed=list(seed),
        rule="add1",
        format=CACHE_FORMAT,
    )
    path = None
    if cache_dir is not None:
        name = f"pairs-{info_x['dataset']}-{info_x['split']}-{info_y['dataset']}-{info_y['split']}"
        path = os.path.join(cache_dir, f"{name}-{params_hash(params)}.npz")
        cached = _load_cached(path, params, ("index_x", "index_y"))
        if cached is not None:
            ix, iy = cached["index_x"], cached["index_y"]
            ok = (
                ix.shape == iy.shape
                and ix.ndim == 1
                and len(ix) > 0
                and ix.min() >= 0
                and iy.min() >= 0
                and ix.max() < len(lx)
                and iy.max() < len(ly)
                and np.array_equal(ly[iy], add_one(lx[ix]))
            )
            if ok:
                return ix, iy
            warnings.warn(f"Cache file {path} does not match the data; rebuilding it.")
    ix, iy = add1_pairs(lx, ly, max_per_class, multiplier, np.random.default_rng(list(seed)))
    _save_cached(path, params, dict(index_x=ix, index_y=iy))
    return ix, iy


def _paired(pool_x, lx, pool_y, ly, ix, iy) -> PairedArrays:
    return PairedArrays(
        x=ImageRows(pool_x, ix), y=ImageRows(pool_y, iy), label_x=lx[ix], label_y=ly[iy]
    )


def _check_params(max_per_class, test_max_per_class, multiplier):
    for key, v in (
        ("max_per_class", max_per_class),
        ("test_max_per_class", test_max_per_class),
        ("multiplier", multiplier),
    ):
        if int(v) < 1:
            raise ValueError(f"config.data.{key} must be a positive integer, got {v}.")


def _resolve_dirs(tfds_dir: str, cache_dir: str, names) -> tuple[str, str | None]:
    """(local data_dir, usable cache dir); checks that `names` are prepared before creating
    the cache folder, so a missing dataset leaves nothing behind. A URL data_dir is copied to
    a local folder first (the module docstring), which is returned."""
    data_dir = default_data_dir(tfds_dir)
    builders = [_builder(name, data_dir) for name in names]
    if paths.scheme(data_dir):
        local = paths.local_cache(data_dir)
        for name, builder in zip(names, builders):
            folder = os.path.join(local, name, str(builder.version))
            paths.download(builder.data_dir, folder, last=("dataset_info.json",))
        data_dir = local
    return data_dir, usable_cache_dir(cache_dir or derived_dir(data_dir, "wyner_jax_cache"))


def _mnist_split(split, data_dir, cache):
    images, labels, info = read_split(MNIST, split, data_dir, cache)
    return resize_mnist(images), labels, info


def build_add1_dataset(
    name: str,
    x_train: tuple,
    x_test: tuple,
    y_train_pool: tuple,
    y_test_pool: tuple,
    y_domain: tuple,
    max_per_class: int,
    test_max_per_class: int,
    multiplier: int,
    pair_seed: int,
    cache_dir: str | None,
    domain_keys: dict,
) -> DigitPairsDataset:
    """Pairs arrays into a `DigitPairsDataset` (the array path of both loaders).

    Each of x_train, x_test, y_train_pool, y_test_pool is (uint8 images [N, 32, 32, C],
    labels [N] in source order, info dict naming the data for the cache); y_domain is
    (train_images, train_labels, test_images, test_labels) uint8 / int for the y classifier,
    or None when y is the x domain (MNIST-Add1).
    """
    _check_params(max_per_class, test_max_per_class, multiplier)
    splits = {}
    for part, xs, ys, m, stream in (
        ("train", x_train, y_train_pool, max_per_class, 0),
        ("test", x_test, y_test_pool, test_max_per_class, 1),
    ):
        ix, iy = _pairs(xs[1:], ys[1:], m, multiplier, (pair_seed, stream), cache_dir)
        splits[part] = _paired(xs[0], xs[1], ys[0], ys[1], ix, iy)
    x_domain = Domain(
        train_images=ImageRows(x_train[0]),
        train_labels=x_train[1],
        test_images=ImageRows(x_test[0]),
        test_labels=x_test[1],
    )
    if y_domain is None:
        y_dom = x_domain
    else:
        y_dom = Domain(
            train_images=ImageRows(y_domain[0]),
            train_labels=np.asarray(y_domain[1], np.int32),
            test_images=ImageRows(y_domain[2]),
            test_labels=np.asarray(y_domain[3], np.int32),
        )
    train = splits["train"]
    return DigitPairsDataset(
        name=name,
        train=train,
        test=splits["test"],
        num_classes=NUM_CLASSES,
        label_rule="add1",
        x_std=train.x.pixel_std(),
        y_std=train.y.pixel_std(),
        domains={"x": x_domain, "y": y_dom},
        cache_dir=cache_dir or "",
        domain_keys=dict(domain_keys),
    )


def load_mnist_add1(
    tfds_dir: str = "",
    cache_dir: str = "",
    max_per_class: int = 10000,
    test_max_per_class: int = 1000,
    multiplier: int = 1,
    pair_seed: int = 1,
) -> DigitPairsDataset:
    """MNIST-Add1 (spec §5.1): x an MNIST digit l, y another MNIST image of digit l+1 mod 10.

    Args:
      tfds_dir: TFDS data_dir holding the prepared `mnist` (array_record), local or gs://
        (copied to a local cache folder first); '' means $TFDS_DATA_DIR or
        ~/tensorflow_datasets.
      cache_dir: cache folder; '' means `<data_dir>/wyner_jax_cache`.
      max_per_class, test_max_per_class: the reference's max_d for train (10000) and test
        (1000).
      multiplier: number of random re-pairings (the reference's dm, 1).
      pair_seed: seed of the pairing; train and test use the streams [seed, 0], [seed, 1].

    Raises:
      FileNotFoundError: `mnist` is not prepared under the data_dir (the message gives the
        command that prepares it).
    """
    data_dir, cache = _resolve_dirs(tfds_dir, cache_dir, (MNIST,))
    train = _mnist_split("train", data_dir, cache)
    test = _mnist_split("test", data_dir, cache)
    key = f"mnist-{train[2]['version']}-{IMAGE_SIZE}px"
    return build_add1_dataset(
        "mnist_add1",
        train,
        test,
        train,
        test,
        None,
        max_per_class,
        test_max_per_class,
        multiplier,
        pair_seed,
        cache,
        {"x": key, "y": key},
    )


def load_mnist_svhn(
    tfds_dir: str = "",
    cache_dir: str = "",
    max_per_class: int = 10000,
    test_max_per_class: int = 1000,
    multiplier: int = 4,
    pair_seed: int = 1,
    svhn_train_split: str = "extra",
) -> DigitPairsDataset:
    """MNIST–SVHN add-1 (spec §5.2): x an MNIST digit l, y an SVHN image of digit l+1 mod 10.

    Args:
      tfds_dir, cache_dir: as `load_mnist_add1` (the data_dir needs `mnist` and
        `svhn_cropped`).
      max_per_class, test_max_per_class: max_d for train (10000) and test (1000).
      multiplier: the reference's dm (4: each MNIST image gets 4 random SVHN partners from a
        fixed SVHN subset of the same size).
      pair_seed: seed of the pairing ([seed, 0] train, [seed, 1] test).
      svhn_train_split: the SVHN pool of the training pairs; the reference's is `extra`.
        The SVHN evaluation classifier always trains on SVHN `train`.
    """
    data_dir, cache = _resolve_dirs(tfds_dir, cache_dir, (MNIST, SVHN))
    m_train = _mnist_split("train", data_dir, cache)
    m_test = _mnist_split("test", data_dir, cache)
    s_train = read_split(SVHN, "train", data_dir, cache)
    s_test = read_split(SVHN, "test", data_dir, cache)
    s_pool = s_train
    if svhn_train_split != "train":
        s_pool = read_split(SVHN, svhn_train_split, data_dir, cache, per_class=int(max_per_class))
    s_version = s_test[2]["version"]
    return build_add1_dataset(
        "mnist_svhn",
        m_train,
        m_test,
        s_pool,
        s_test,
        (s_train[0], s_train[1], s_test[0], s_test[1]),
        max_per_class,
        test_max_per_class,
        multiplier,
        pair_seed,
        cache,
        {"x": f"mnist-{m_train[2]['version']}-{IMAGE_SIZE}px", "y": f"svhn_cropped-{s_version}"},
    )
