"""Containers for paired data and the deterministic, resumable batch sampler.

A paired dataset holds samples (x, y) from the joint data distribution p(x, y) of the
paper (the "variational" distribution's data part). Everything here is plain NumPy:
batches are a pure function of (seed, step, batch_size), so training resumes exactly
from any step and every process of a multi-host job can compute its own slice.

The loaders read their files through ``wyner_jax.paths`` (``etils.epath``), so a data folder
may be local or a ``gs://`` URL; the helpers at the end are what they share for that.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle

import numpy as np

from wyner_jax import paths


@dataclasses.dataclass(frozen=True)
class PairedArrays:
    """One split of paired data: row i of `x` is paired with row i of `y`.

    Attributes:
      x: [N, *x_shape] float32 samples of domain x.
      y: [N, *y_shape] float32 samples of domain y.
      label_x: [N] int32 class of x (-1 where the data has no labels).
      label_y: [N] int32 class of y (-1 where the data has no labels).
    """

    x: np.ndarray
    y: np.ndarray
    label_x: np.ndarray
    label_y: np.ndarray

    def __post_init__(self):
        n = len(self.x)
        lengths = {k: len(getattr(self, k)) for k in ("x", "y", "label_x", "label_y")}
        if any(v != n for v in lengths.values()):
            raise ValueError(
                f"PairedArrays fields must have the same number of rows, got {lengths}; "
                "build x, y and the labels from the same list of pairs."
            )

    def __len__(self) -> int:
        return len(self.x)


@dataclasses.dataclass(frozen=True)
class Domain:
    """Unpaired labelled samples of one domain, used to train the evaluation classifier
    that labels generated samples (paper: sample classification, err_j / err_cx2y)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    # Cached because consecutive steps of one epoch reuse the same permutation; the array
    # is marked read-only so a caller cannot corrupt the cache.
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    perm.flags.writeable = False
    return perm


@dataclasses.dataclass(frozen=True)
class PairedDataset:
    """A paired dataset with train/test splits and the metadata evaluators need.

    Attributes:
      name: dataset name (the key in `wyner_jax.data.REGISTRY`).
      train, test: the paired splits.
      num_classes: number of classes, or None for unlabelled data (e.g. the Gaussian).
      label_rule: 'add1' (label_y = label_x + 1 mod 10, MNIST-Add1), 'same', or None.
      x_std, y_std: per-feature std of the train x / y, shape x_shape / y_shape; the scale
        of instance noise added to what the discriminators see.
      domains: {'x': Domain, 'y': Domain} for training evaluation classifiers, or {}.
      x_image_shape, y_image_shape: HWC shape of one sample when the data are images
        stored flattened (for figures and evaluation classifiers), else None.
    """

    name: str
    train: PairedArrays
    test: PairedArrays
    num_classes: int | None
    label_rule: str | None
    x_std: np.ndarray
    y_std: np.ndarray
    domains: dict[str, Domain] = dataclasses.field(default_factory=dict)
    x_image_shape: tuple[int, ...] | None = None
    y_image_shape: tuple[int, ...] | None = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one x sample (without the batch axis)."""
        return tuple(self.train.x.shape[1:])

    @property
    def y_shape(self) -> tuple[int, ...]:
        """Shape of one y sample (without the batch axis)."""
        return tuple(self.train.y.shape[1:])

    @property
    def is_image_x(self) -> bool:
        """True when x samples are HWC images."""
        return len(self.x_shape) == 3

    @property
    def is_image_y(self) -> bool:
        """True when y samples are HWC images."""
        return len(self.y_shape) == 3

    def steps_per_epoch(self, batch_size: int) -> int:
        """Number of full global batches per epoch (drop_last: the remainder is skipped)."""
        n = len(self.train)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {n} training pairs of '{self.name}'; "
                "use a smaller batch_size or a larger dataset (e.g. raise data.multiplier)."
            )
        return n // batch_size

    def batch_indices(
        self, step: int, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1
    ) -> np.ndarray:
        """Train-set row indices of this process's part of the global batch at `step`."""
        if step < 0 or seed < 0:
            raise ValueError(f"step and seed must be non-negative, got step={step}, seed={seed}.")
        if process_count <= 0 or not 0 <= process_index < process_count:
            raise ValueError(
                f"Need 0 <= process_index < process_count, got {process_index} and {process_count}."
            )
        if batch_size % process_count:
            raise ValueError(
                f"Global batch_size {batch_size} is not divisible by process_count "
                f"{process_count}; choose a batch_size that is a multiple of {process_count}."
            )
        spe = self.steps_per_epoch(batch_size)
        epoch, pos = divmod(step, spe)
        perm = _epoch_permutation(seed, epoch, len(self.train))
        per_process = batch_size // process_count
        start = pos * batch_size + process_index * per_process
        return perm[start : start + per_process]

    def train_batch(
        self, step: int, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """The training batch for global step `step` as {'x', 'y', 'label_x', 'label_y'}.

        Epoch e = step // steps_per_epoch uses the permutation
        `np.random.default_rng([seed, e]).permutation(N)` and drops the last partial batch,
        so the batch is a pure function of (seed, step, batch_size). With process_count
        P > 1 only rows [i*B/P, (i+1)*B/P) of the global batch B are returned for
        process i; concatenating all processes gives the global batch.
        """
        idx = self.batch_indices(step, batch_size, seed, process_index, process_count)
        t = self.train
        return {"x": t.x[idx], "y": t.y[idx], "label_x": t.label_x[idx], "label_y": t.label_y[idx]}


class IndexedRows:
    """Rows ``pool[index]`` of a pool of samples, without materialising them.

    Behaves like a read-only float32 array of shape [N, *pool.shape[1:]] for what the
    pipeline does with data (len, shape, integer / slice / index-array indexing,
    ``np.asarray``): paired datasets repeat each sample in many pairs (CUB: 10 captions per
    image; MNIST–SVHN: 240,000 pairs of uint8 images), so holding the pairs' rows as float32
    copies would multiply memory. Subclasses turn stored rows into values in ``decode``.
    """

    def __init__(self, pool: np.ndarray, index: np.ndarray | None = None):
        self.pool = pool
        self.index = np.arange(len(pool)) if index is None else np.asarray(index, np.int64)
        self.dtype = np.dtype(np.float32)

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows → float32 values (here: a float32 copy)."""
        return np.asarray(rows, np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index),) + tuple(self.pool.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        rows = self.index[key]
        out = self.decode(self.pool[rows])
        if rest:
            out = out[(slice(None),) + rest] if np.ndim(rows) else out[rest]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def finite_float32(feats: np.ndarray, path: str, fix: str) -> np.ndarray:
    """``feats`` as float32, refusing a file whose rows hold NaN or Inf (named by ``path``,
    with the first bad row; ``fix`` says what to do)."""
    feats = np.asarray(feats, np.float32)
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{path}: {int(bad.sum())} rows contain NaN or Inf (first at row "
            f"{int(np.flatnonzero(bad)[0])}); the file is damaged. {fix}"
        )
    return feats


def feature_std(a: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation over the batch axis, as float32 (instance-noise scale)."""
    return np.asarray(a, np.float64).std(axis=0).astype(np.float32)


def pair_by_label(
    labels_x: np.ndarray,
    labels_y: np.ndarray,
    num_classes: int,
    partner_label,
    multiplier: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Random label-matched pairing (the reference's `rand_match_on_idx`, spec §5.1).

    For each class l: pool_x = indices with labels_x == l, pool_y = indices with
    labels_y == partner_label(l), n_l = min(|pool_x|, |pool_y|). Repeated `multiplier`
    times: permute each pool and zip the first n_l entries of the two permutations.

    Returns (index_x, index_y), int64 arrays of equal length Σ_l n_l · multiplier.
    """
    if multiplier < 1:
        raise ValueError(f"multiplier must be >= 1, got {multiplier}.")
    labels_x, labels_y = np.asarray(labels_x), np.asarray(labels_y)
    pools = [
        (np.flatnonzero(labels_x == l), np.flatnonzero(labels_y == partner_label(l)))
        for l in range(num_classes)
    ]
    out_x, out_y = [], []
    for _ in range(multiplier):
        for pool_x, pool_y in pools:
            n = min(len(pool_x), len(pool_y))
            out_x.append(rng.permutation(pool_x)[:n])
            out_y.append(rng.permutation(pool_y)[:n])
    return np.concatenate(out_x), np.concatenate(out_y)


# --------------------------------------------------------------------------- files


def read_npy(path: str, fix: str, allow_pickle: bool = False) -> np.ndarray:
    """The array of the .npy file ``path`` (local or a URL), with one clear error for a file
    that is empty, truncated or not a .npy array; ``fix`` says where to get a good one."""
    try:
        with paths.path(path).open("rb") as f:
            return np.load(f, allow_pickle=allow_pickle)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path} ({paths.stamp(path)[0]} bytes) cannot be read as a NumPy .npy array "
            f"({type(e).__name__}: {e}); it is empty, truncated or not an .npy file (an "
            f"interrupted download or copy). {fix}"
        ) from e


def derived_dir(directory: str, name: str) -> str:
    """Where a loader writes what it derives from the data folder ``directory`` (a cache, a
    TFDS copy): ``<directory>/<name>`` for a local folder, and the same under
    ``paths.local_cache(directory)`` for a URL (the data bucket may be read-only, several hosts
    would write the same objects, and TFDS reads array_record files from a local disk only)."""
    if paths.scheme(directory):
        return os.path.join(paths.local_cache(directory), name)
    return os.path.join(directory, name)


def tfds_copy_dir(directory: str, tfds_dir: str) -> str:
    """The folder of a loader's TFDS copy of ``directory``: ``tfds_dir``, or
    ``derived_dir(directory, 'tfds')``. A URL is refused: TFDS reads its array_record files
    with a reader of local files only (from a gs:// data_dir it hangs)."""
    if tfds_dir and paths.scheme(tfds_dir):
        raise ValueError(
            f"--config.data.tfds_dir={tfds_dir!r}: the TFDS copy of the data must be on a local "
            "disk (array_record files are read with a reader of local files only). Leave "
            "data.tfds_dir empty (the copy of gs:// data then goes to "
            f"{derived_dir(directory, 'tfds') if paths.scheme(directory) else '<data.dir>/tfds'})"
            " or name a local folder."
        )
    return tfds_dir or derived_dir(directory, "tfds")
