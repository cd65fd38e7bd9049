"""Sketchy Extended zero-shot sketch-based image retrieval (wyner-model.md §5.4, iiae.md §3).

x = 512-d VGG feature of a sketch, y = 512-d VGG feature of a photo, as released by IIAE
(Zenodo doi 10.5281/zenodo.3890097) in the layout

  <dir>/SketchyVGG/split{1,2}/{train,test}_{sketch,image}_{features,paths}.npy

(features [N, 512] float32; paths 'class/filename', the class is the second-to-last path
component; the Wyner re-extraction writes `photo` in place of `image`, also accepted).

Training pairs are **class-matched at random**, not instance-matched (both references): each
step takes B classes cycling through a shuffled list of the training classes and draws one
random sketch and one random photo of each (`SketchyDataset.train_batch`). The zero-shot
test classes never appear in training; retrieval ranks all test photos (gallery) for every
test sketch (query), relevance = same class.

Storage: the release is converted once into a TFDS dataset (`SketchyVGG` builder, array_record
files, one split per part: train_sketch, train_photo, test_sketch, test_photo; each record a
feature, class id, class name, path and release row index), written under
`<data.dir>/tfds` (or `data.tfds_dir`) and read back with `tfds.data_source` and grain.
TFDS writes and reads array_record without TensorFlow, so none is needed. `use_tfds=False`
reads the .npy files directly (same arrays). `data.dir` may be a `gs://` URL: the .npy files
are read from the bucket and the TFDS copy goes to a local cache folder
(`base.tfds_copy_dir`: TFDS reads array_record from a local disk only).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings

import numpy as np

from wyner_jax import paths
from wyner_jax.data.base import (
    PairedArrays,
    PairedDataset,
    feature_std,
    finite_float32,
    read_npy,
    tfds_copy_dir,
)

FEATURE_DIM = 512
SOURCE = "IIAE's release of the Sketchy Extended VGG features (Zenodo, doi 10.5281/zenodo.3890097)"

# iiae.md §3.2: SEM-PCYC's random split (np.random.seed(0), 100 train classes of the sorted
# 125; val and test merged), the split of IIAE's Table 3.
SPLIT1_TEST_CLASSES = (
    "bear",
    "bell",
    "cannon",
    "door",
    "eyeglasses",
    "geyser",
    "guitar",
    "hamburger",
    "jack_o_lantern",
    "lobster",
    "motorcycle",
    "mushroom",
    "pear",
    "racket",
    "rhinoceros",
    "saw",
    "saxophone",
    "spoon",
    "squirrel",
    "tank",
    "teapot",
    "tiger",
    "trumpet",
    "violin",
    "wheelchair",
)
# wyner-model.md §5.4: the ECCV-2018 split (Yelamarthi et al., test_split_eccv2018.txt).
SPLIT2_TEST_CLASSES = (
    "bat",
    "cabin",
    "cow",
    "dolphin",
    "door",
    "giraffe",
    "helicopter",
    "mouse",
    "pear",
    "raccoon",
    "rhinoceros",
    "saw",
    "scissors",
    "seagull",
    "skyscraper",
    "songbird",
    "sword",
    "tree",
    "wheelchair",
    "windmill",
    "window",
)
TEST_CLASSES = {1: SPLIT1_TEST_CLASSES, 2: SPLIT2_TEST_CLASSES}


def expected_files(split: int) -> list[str]:
    """The eight file names of one split (with `image`; `photo` is accepted in its place)."""
    return [
        f"SketchyVGG/split{split}/{part}_{kind}_{what}.npy"
        for part in ("train", "test")
        for kind in ("sketch", "image")
        for what in ("features", "paths")
    ]


def _missing_message(directory: str, split: int, missing: list[str]) -> str:
    listing = "\n  ".join(expected_files(split))
    return (
        f"Sketchy Extended split {split}: cannot find {', '.join(missing)} under "
        f"{str(paths.absolute(directory))!r}.\nExpected, relative to data.dir:\n  {listing}\n"
        f"('photo' may replace 'image' in the names). The files are {SOURCE}: download and "
        f"unpack the archive so that {directory}/SketchyVGG/split{split}/ holds them, or point "
        "the loader at another folder with --config.data.dir=/path/to/folder (the folder that "
        "contains SketchyVGG/). For a small synthetic stand-in run "
        "`python scripts/make_sketchy_fixture.py --out DIR`."
    )


def _find(directory: str, split: int, part: str, kind: str, what: str) -> str | None:
    base = paths.path(directory) / "SketchyVGG" / f"split{split}"
    names = ("image", "photo") if kind == "image" else (kind,)
    for name in names:
        path = base / f"{part}_{name}_{what}.npy"
        if path.is_file():
            return os.fspath(path)
    return None


def class_of(path: str) -> str:
    """The class of a released path 'class/filename' (second-to-last path component)."""
    parts = str(path).replace("\\", "/").split("/")
    if len(parts) < 2 or not parts[-2]:
        raise ValueError(
            f"Sketchy path {str(path)!r} has no class folder; released paths look like "
            "'class/filename' (the class is the second-to-last component)."
        )
    return parts[-2]


def _load_part(feat_file: str, path_file: str) -> tuple[np.ndarray, np.ndarray]:
    fix = f"Re-download it from {SOURCE}."
    feats = read_npy(feat_file, fix)
    # Released path arrays may be object arrays of str (pickled); the files are the user's
    # own inputs.
    names = read_npy(path_file, fix, allow_pickle=True)
    names = np.asarray([p.decode() if isinstance(p, bytes) else str(p) for p in names.ravel()])
    if feats.dtype.kind not in "fiu":
        raise ValueError(
            f"{feat_file}: features must be numbers, got dtype {feats.dtype}; the file is not "
            f"one of the feature arrays of the release. Re-download it from {SOURCE}."
        )
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
        raise ValueError(
            f"{feat_file}: features must be [N, {FEATURE_DIM}] (the 512-d VGG features of the "
            f"release), got shape {feats.shape}; re-download the file from {SOURCE}."
        )
    if len(feats) != len(names):
        raise ValueError(
            f"{feat_file} has {len(feats)} rows but {path_file} has {len(names)} paths; the two "
            f"files must list the same items in the same order. Re-download them from {SOURCE}."
        )
    if len(feats) == 0:
        raise ValueError(f"{feat_file} is empty; re-download it from {SOURCE}.")
    return finite_float32(feats, feat_file, fix), names


def _dedupe(feats, names, what) -> tuple[np.ndarray, np.ndarray]:
    _, first = np.unique(names, return_index=True)
    n_dup = len(names) - len(first)
    if n_dup:
        warnings.warn(
            f"Sketchy {what}: dropped {n_dup} duplicated items (same path listed twice; split-2 "
            "files prepared SEM-PCYC-style repeat every test item). Kept the first of each.",
            stacklevel=3,
        )
        keep = np.sort(first)
        feats, names = feats[keep], names[keep]
    return feats, names


@dataclasses.dataclass(frozen=True)
class SketchyDataset(PairedDataset):
    """Sketchy Extended: class-matched random pairs for training, zero-shot retrieval test.

    Extra attributes (beyond `PairedDataset`):
      class_names: all class names, sorted; labels index this list.
      train_x_pool, train_y_pool: [Ns, 512] train sketches, [Np, 512] train photos.
      train_x_label, train_y_label: their class ids.
      retrieval_x, retrieval_label_x: retrieval queries = all test sketches and classes.
      retrieval_y, retrieval_label_y: retrieval gallery = all test photos and classes.
      retrieval_paths_x, retrieval_paths_y: their 'class/filename' paths (for figures).
      train_classes, test_classes: class ids of each split.

    `train` holds one fixed class-matched pairing of every train sketch with a random train
    photo (it fixes steps_per_epoch = N_sketch // B and the shapes); `test` the same for the
    test classes. Training batches come from `train_batch`, not from `train`.
    """

    class_names: tuple[str, ...] = ()
    train_x_pool: np.ndarray | None = None
    train_y_pool: np.ndarray | None = None
    train_x_label: np.ndarray | None = None
    train_y_label: np.ndarray | None = None
    retrieval_x: np.ndarray | None = None
    retrieval_y: np.ndarray | None = None
    retrieval_label_x: np.ndarray | None = None
    retrieval_label_y: np.ndarray | None = None
    retrieval_paths_x: np.ndarray | None = None
    retrieval_paths_y: np.ndarray | None = None
    train_classes: np.ndarray | None = None
    test_classes: np.ndarray | None = None

    def _pools(self):
        cache = self.__dict__.get("_pool_cache")
        if cache is None:
            cache = (
                [np.flatnonzero(self.train_x_label == c) for c in self.train_classes],
                [np.flatnonzero(self.train_y_label == c) for c in self.train_classes],
            )
            object.__setattr__(self, "_pool_cache", cache)
        return cache

    def batch_classes(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Positions in `train_classes` of the B classes of global step `step`.

        The class stream is the concatenation of permutations
        `default_rng([seed, 0, c]).permutation(C)` for cycles c = 0, 1, ...; step s takes
        its entries [s·B, (s+1)·B) (all distinct when B ≤ C, every class once when B = C).
        """
        C = len(self.train_classes)
        pos = np.arange(step * batch_size, (step + 1) * batch_size)
        cycles, within = np.divmod(pos, C)
        out = np.empty(batch_size, np.int64)
        for c in np.unique(cycles):
            perm = np.random.default_rng([seed, 0, int(c)]).permutation(C)
            out[cycles == c] = perm[within[cycles == c]]
        return out

    def train_batch(
        self, step: int, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1
    ) -> dict[str, np.ndarray]:
        """Class-matched random pairs for global step `step` (wyner-model.md §5.4, iiae.md §3.3).

        B classes from the shuffled, cycled class list (`batch_classes`), then for each one
        random train sketch and one random train photo of that class, drawn with
        `default_rng([seed, 1, step])`. A pure function of (seed, step, batch_size), so training
        resumes exactly; with P processes, process i gets rows [i·B/P, (i+1)·B/P).
        """
        # Same argument checks (and messages) as the base sampler.
        self.batch_indices(step, batch_size, seed, process_index, process_count)
        pools_x, pools_y = self._pools()
        cls = self.batch_classes(step, batch_size, seed)
        u = np.random.default_rng([seed, 1, step]).random((2, batch_size))
        ix = np.array([pools_x[c][int(v * len(pools_x[c]))] for c, v in zip(cls, u[0])])
        iy = np.array([pools_y[c][int(v * len(pools_y[c]))] for c, v in zip(cls, u[1])])
        per = batch_size // process_count
        sl = slice(process_index * per, (process_index + 1) * per)
        ix, iy = ix[sl], iy[sl]
        return {
            "x": self.train_x_pool[ix],
            "y": self.train_y_pool[iy],
            "label_x": self.train_x_label[ix],
            "label_y": self.train_y_label[iy],
        }


def _pair_within_class(labels_x, labels_y, rng) -> np.ndarray:
    """For every x row, a random y row of the same class (index into labels_y)."""
    out = np.empty(len(labels_x), np.int64)
    for c in np.unique(labels_x):
        rows = np.flatnonzero(labels_x == c)
        pool = np.flatnonzero(labels_y == c)
        out[rows] = pool[rng.integers(0, len(pool), len(rows))]
    return out


def read_release(directory: str, split: int) -> dict:
    """Reads and validates the released .npy files of one split (no TFDS).

    Returns {(part, kind): (features [N, 512] float32, paths [N] str, classes [N] str)} for
    part in ('train', 'test') and kind in ('sketch', 'image'); duplicated test items are
    dropped with a warning. Raises FileNotFoundError / ValueError as `load_sketchy`.
    """
    split = int(split)
    if split not in TEST_CLASSES:
        raise ValueError(f"Sketchy split must be 1 or 2, got {split}; set --config.data.split.")
    files, missing = {}, []
    for part in ("train", "test"):
        for kind in ("sketch", "image"):
            for what in ("features", "paths"):
                found = _find(directory, split, part, kind, what)
                if found is None:
                    missing.append(f"{part}_{kind}_{what}.npy")
                files[part, kind, what] = found
    if missing:
        raise FileNotFoundError(_missing_message(directory, split, missing))
    parts = {}
    for part in ("train", "test"):
        for kind in ("sketch", "image"):
            feats, names = _load_part(files[part, kind, "features"], files[part, kind, "paths"])
            if part == "test":
                feats, names = _dedupe(feats, names, f"split{split}/test_{kind}")
            parts[part, kind] = (feats, names, np.array([class_of(p) for p in names]))

    return parts


# TFDS split name of each (part, kind).
TFDS_SPLITS = {
    ("train", "sketch"): "train_sketch",
    ("train", "image"): "train_photo",
    ("test", "sketch"): "test_sketch",
    ("test", "image"): "test_photo",
}

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download {SOURCE} and unpack it so that the manual directory (data.dir) contains
SketchyVGG/split1/ and SketchyVGG/split2/ with the files
{{train,test}}_{{sketch,image}}_{{features,paths}}.npy ('photo' may replace 'image').
Then run training with --config.data.dir=<that directory>; the TFDS copy is written to
<data.dir>/tfds on first use (delete that folder to convert again after replacing files; for
gs:// data, to the local cache folder that replaces <data.dir> in that path).
"""


@functools.cache
def tfds_builder_class():
    """The TFDS builder `SketchyVGG` (defined on first use: importing TFDS takes ~0.5 s).

    Builder configs 'split1' and 'split2'; the manual directory is data.dir. Not registered
    in TFDS's global registry (use `SketchyVGG(data_dir=..., config=...)`).
    """
    import tensorflow_datasets as tfds

    class SketchyVGG(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Sketchy Extended VGG-16 features (IIAE release), zero-shot splits 1 and 2."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "IIAE's SketchyVGG release, duplicated test items dropped."}
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="split1", description="25 unseen classes"),
            tfds.core.BuilderConfig(name="split2", description="21 ECCV-2018 unseen classes"),
        ]
        MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
        # No source folder with checksums (nothing is downloaded). Also avoids TFDS's
        # code-path lookup, which needs the optional `importlib_resources` package.
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=__doc__,
                features=tfds.features.FeaturesDict(
                    {
                        "feature": tfds.features.Tensor(shape=(FEATURE_DIM,), dtype=np.float32),
                        "class_id": tfds.features.Scalar(dtype=np.int64),
                        "class_name": tfds.features.Text(),
                        "path": tfds.features.Text(),
                        "index": tfds.features.Scalar(dtype=np.int64),
                    }
                ),
                homepage="https://doi.org/10.5281/zenodo.3890097",
            )

        def _split_generators(self, dl_manager):
            split = int(self.builder_config.name[-1])
            with warnings.catch_warnings():  # read_tfds validated (and warned) already
                warnings.simplefilter("ignore")
                parts = read_release(os.fspath(dl_manager.manual_dir), split)
            names = sorted({c for _, _, classes in parts.values() for c in classes})
            index = {c: i for i, c in enumerate(names)}
            return {
                TFDS_SPLITS[key]: self._generate_examples(parts[key], index) for key in TFDS_SPLITS
            }

        def _generate_examples(self, part, index):
            feats, names, classes = part
            for i in range(len(feats)):
                yield i, {
                    "feature": feats[i],
                    "class_id": index[classes[i]],
                    "class_name": classes[i],
                    "path": names[i],
                    "index": i,
                }

    return SketchyVGG


def read_tfds(directory: str, split: int, tfds_dir: str = "") -> dict:
    """Converts the release to TFDS on first use, then reads it back through
    `tfds` data sources and grain. Returns the same structure as `read_release`."""
    import grain
    import tensorflow_datasets as tfds

    tfds_dir = tfds_copy_dir(directory, tfds_dir)
    builder = tfds_builder_class()(
        data_dir=tfds_dir, config=f"split{int(split)}", file_format="array_record"
    )
    if not builder.is_prepared():
        # Validate first: clear errors, and no TFDS copy of files that would be refused.
        check_split(read_release(directory, split), split, directory)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=directory)
        )
    sources = builder.as_data_source()
    parts = {}
    for key, name in TFDS_SPLITS.items():
        source = sources[name]
        ds = grain.MapDataset.source(source).batch(4096)
        batches = [ds[i] for i in range(len(ds))]
        cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        order = np.argsort(cat["index"])  # TFDS stores records in hashed-key order
        parts[key] = (
            cat["feature"][order].astype(np.float32),
            np.array([p.decode() for p in cat["path"][order]]),
            np.array([c.decode() for c in cat["class_name"][order]]),
        )
    return parts


def check_split(parts: dict, split: int, directory: str) -> None:
    """The class-level checks of one split: the test classes are exactly the split's unseen
    classes, none of them is in the training files, and every training class has sketches and
    photos. Raises ValueError naming the classes."""
    classes = {key: {str(c) for c in part[2]} for key, part in parts.items()}  # not np.str_
    train_cls = classes["train", "sketch"] | classes["train", "image"]
    test_cls_s, test_cls_p = classes["test", "sketch"], classes["test", "image"]
    expected = set(TEST_CLASSES[split])
    for name, got in (("sketches", test_cls_s), ("photos", test_cls_p)):
        if got != expected:
            raise ValueError(
                f"Sketchy split {split}: the test {name} have {len(got)} classes, expected the "
                f"{len(expected)} unseen classes of split {split}; missing "
                f"{sorted(expected - got)}, unexpected {sorted(got - expected)}. Check that "
                f"{directory}/SketchyVGG/split{split}/ holds split {split}'s files (or set "
                "--config.data.split to the split they belong to)."
            )
    leak = train_cls & expected
    if leak:
        raise ValueError(
            f"Sketchy split {split}: test classes {sorted(leak)} also appear in the training "
            "files, so the evaluation would not be zero-shot; the train and test files are "
            f"from different splits. Use the four train and four test files of split {split} "
            f"as released ({SOURCE})."
        )
    if classes["train", "sketch"] != classes["train", "image"]:
        diff = classes["train", "sketch"] ^ classes["train", "image"]
        raise ValueError(
            f"Sketchy split {split}: classes {sorted(diff)} have training sketches or photos "
            "but not both; class-matched pairing needs both for every training class. Check "
            f"that the train sketch and photo files are those of the release ({SOURCE})."
        )


def load_sketchy(
    dir: str = "data/sketchy",
    split: int = 1,
    pair_seed: int = 0,
    use_tfds: bool = True,
    tfds_dir: str = "",
) -> SketchyDataset:
    """Load Sketchy Extended VGG features of one split (see the module docstring).

    Args:
      dir: folder containing `SketchyVGG/` (config key data.dir), local or gs://.
      split: 1 (25 unseen classes, IIAE Table 3) or 2 (21 ECCV-2018 classes).
      pair_seed: seed of the fixed class-matched pairings stored in `train` / `test`.
      use_tfds: convert to / read from the TFDS copy (True) or read the .npy files (False).
      tfds_dir: where the TFDS copy lives (a local folder); '' means `<dir>/tfds`, or a
        local cache folder when `dir` is a gs:// URL (`base.tfds_copy_dir`).

    Raises:
      FileNotFoundError: a file is missing (the message lists the expected files, the source
        and the --config.data.dir flag).
      ValueError: malformed files (shape, length mismatch, NaN/Inf) or a split whose test
        classes are not the published ones.
    """
    split = int(split)
    if split not in TEST_CLASSES:
        raise ValueError(f"Sketchy split must be 1 or 2, got {split}; set --config.data.split.")
    parts = read_tfds(dir, split, tfds_dir) if use_tfds else read_release(dir, split)
    check_split(parts, split, dir)
    train_cls = set(parts["train", "sketch"][2]) | set(parts["train", "image"][2])
    expected = set(TEST_CLASSES[split])
    class_names = tuple(sorted(train_cls | expected))
    index = {c: i for i, c in enumerate(class_names)}
    lab = {k: np.array([index[c] for c in v[2]], np.int32) for k, v in parts.items()}
    xs, ys = parts["train", "sketch"][0], parts["train", "image"][0]
    xq, yg = parts["test", "sketch"][0], parts["test", "image"][0]
    rng = np.random.default_rng(pair_seed)
    tr = _pair_within_class(lab["train", "sketch"], lab["train", "image"], rng)
    te = _pair_within_class(lab["test", "sketch"], lab["test", "image"], rng)
    return SketchyDataset(
        name="sketchy",
        train=PairedArrays(xs, ys[tr], lab["train", "sketch"], lab["train", "image"][tr]),
        test=PairedArrays(xq, yg[te], lab["test", "sketch"], lab["test", "image"][te]),
        num_classes=len(class_names),
        label_rule="same",
        x_std=feature_std(xs),
        y_std=feature_std(ys),
        class_names=class_names,
        train_x_pool=xs,
        train_y_pool=ys,
        train_x_label=lab["train", "sketch"],
        train_y_label=lab["train", "image"],
        retrieval_x=xq,
        retrieval_y=yg,
        retrieval_label_x=lab["test", "sketch"],
        retrieval_label_y=lab["test", "image"],
        retrieval_paths_x=np.asarray(parts["test", "sketch"][1]),
        retrieval_paths_y=np.asarray(parts["test", "image"][1]),
        train_classes=np.array(sorted(index[c] for c in train_cls), np.int32),
        test_classes=np.array(sorted(index[c] for c in expected), np.int32),
    )
