"""CUB image features ↔ captions (paper §6.5; wyner-model.md §4.2, §5.3), MMVAE's data layout.

x = 2048-d ResNet-101 average-pool feature of a bird image, y = a caption as 32 token ids.
The files, under ``data.dir`` (MMVAE's `cub.zip` unpacked, plus the features):

  <dir>/text_trainvalclasses.txt        one caption per line, 10 per training image
  <dir>/text_testclasses.txt            the same for the test images (disjoint classes)
  <features_dir>/train.npy, test.npy    [N_images, 2048] float, ImageFolder order of
                                        <dir>/{train,test}/<class>/<image> (sorted classes,
                                        sorted files); features_dir defaults to
                                        <dir>/resnet101_2048

Caption i pairs with image ⌊i/10⌋, so each file has exactly 10 · N_images lines.
``scripts/cub_resnet_features.py`` computes the features as the reference does (torchvision
ResNet-101 with ImageNet weights minus its classifier, Resize(224), no mean/std
normalisation, eval mode); it needs torch and torchvision, which training does not.

Captions are tokenised without downloads (`wyner_jax.data.captions`), the vocabulary is built
from the training captions (count > 3) and each caption becomes `<eos>`-terminated,
`<pad>`-padded ids of length 32. Pairs are kept as an index (`FeatureRows`): 88,550 training
pairs would otherwise copy each image feature ten times (725 MB).

Storage: on first use the files are checked and converted into a TFDS dataset (`CUBCaptions`
builder, array_record, one record per image: feature, its captions, its position and, when
the images are there, its path), under ``<dir>/tfds`` (or ``data.tfds_dir``), then read with
`tfds` data sources and grain, without TensorFlow. ``use_tfds=False`` reads the files.
``data.dir`` may be a ``gs://`` URL: the files are read from the bucket and the TFDS copy goes
to a local cache folder (``base.tfds_copy_dir``: TFDS reads array_record from a local disk only).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from wyner_jax import paths
from wyner_jax.data import captions as cap
from wyner_jax.data.base import (
    IndexedRows,
    PairedArrays,
    PairedDataset,
    finite_float32,
    read_npy,
    tfds_copy_dir,
)

FEATURE_DIM = 2048
CAPTIONS_PER_IMAGE = 10
TEXT_FILES = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}
SOURCE = (
    "MMVAE's cleaned CUB image-caption data (http://www.robots.ox.ac.uk/~yshi/mmdgm/datasets/"
    "cub.zip: text_trainvalclasses.txt, text_testclasses.txt, train/ and test/ image folders)"
)
FEATURE_HELP = (
    "The image features are computed once from the image folders with "
    "`python scripts/cub_resnet_features.py --dir DIR` (needs torch and torchvision)"
)


class FeatureRows(IndexedRows):
    """Rows ``pool[index]`` of the float32 image-feature pool (one row per caption, ten
    captions per image), see ``IndexedRows``."""

    def __init__(self, pool: np.ndarray, index: np.ndarray):
        super().__init__(np.asarray(pool, np.float32), index)


# --------------------------------------------------------------------------- raw files


def features_folder(directory: str, features_dir: str = "") -> str:
    return features_dir or os.fspath(paths.path(directory) / "resnet101_2048")


def expected_files(directory: str, features_dir: str = "") -> dict[tuple[str, str], str]:
    """{(split, 'text' | 'features'): path} of the four input files (local or URLs)."""
    feats = paths.path(features_folder(directory, features_dir))
    out = {}
    for split, name in TEXT_FILES.items():
        out[split, "text"] = os.fspath(paths.path(directory) / name)
        out[split, "features"] = os.fspath(feats / f"{split}.npy")
    return out


def _missing_message(directory: str, features_dir: str, missing: list[str]) -> str:
    listing = "\n  ".join(expected_files(directory, features_dir).values())
    return (
        f"CUB captions: cannot find {', '.join(missing)}.\nExpected:\n  {listing}\n"
        f"The text files are {SOURCE}: download and unzip it so that {directory}/ holds them, "
        f"or point the loader at another folder with --config.data.dir=/path/to/cub. "
        f"{FEATURE_HELP}, which writes {features_folder(directory, features_dir)}/"
        "{train,test}.npy (or set --config.data.features_dir to where they are). For a small "
        "synthetic stand-in in the same format run `python scripts/make_cub_fixture.py --out DIR`."
    )


def _read_features(path: str) -> np.ndarray:
    feats = read_npy(path, f"{FEATURE_HELP}.")
    if feats.dtype.kind not in "fiu" or feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
        raise ValueError(
            f"{path}: image features must be a numeric [N_images, {FEATURE_DIM}] array (ResNet-101 "
            f"pooled features), got dtype {feats.dtype} and shape {feats.shape}. {FEATURE_HELP}."
        )
    if len(feats) == 0:
        raise ValueError(f"{path} has no rows. {FEATURE_HELP}.")
    return finite_float32(feats, path, f"{FEATURE_HELP}.")


def _read_lines(path: str) -> list[str]:
    try:
        return paths.path(path).read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text ({e}); it must be the caption file of {SOURCE}."
        ) from e


def image_paths(directory: str, split: str) -> list[str] | None:
    """'class/file' of every image of ``<dir>/<split>/`` (or ``<dir>/img/<split>/``) in
    torchvision ImageFolder order (sorted class folders, sorted files), or None."""
    for root in (paths.path(directory) / split, paths.path(directory) / "img" / split):
        if root.is_dir():
            out = []
            for c in sorted(e.name for e in root.iterdir() if e.is_dir()):
                files = sorted(e.name for e in (root / c).iterdir())
                out += [f"{c}/{f}" for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]
            return out
    return None


def read_release(
    directory: str, features_dir: str = "", captions_per_image: int = CAPTIONS_PER_IMAGE
) -> dict[str, tuple[np.ndarray, list[str], list[str] | None]]:
    """Reads and checks the files: {split: (features [N_img, 2048], captions [k·N_img],
    image paths [N_img] or None)}. Raises FileNotFoundError / ValueError with the fix."""
    files = expected_files(directory, features_dir)
    missing = [p for p in files.values() if not paths.path(p).is_file()]
    if missing:
        raise FileNotFoundError(_missing_message(directory, features_dir, missing))
    if captions_per_image < 1:
        raise ValueError(
            f"config.data.captions_per_image must be positive, got {captions_per_image}."
        )
    out = {}
    for split in TEXT_FILES:
        feats = _read_features(files[split, "features"])
        lines = _read_lines(files[split, "text"])
        if len(lines) != captions_per_image * len(feats):
            raise ValueError(
                f"CUB {split}: {files[split, 'text']} has {len(lines)} caption lines but "
                f"{files[split, 'features']} has {len(feats)} images; caption i pairs with "
                f"image ⌊i/{captions_per_image}⌋, so there must be exactly "
                f"{captions_per_image} lines per image ({captions_per_image * len(feats)}). Check "
                f"that the features were computed from the {split} image folder of the same "
                "release (ImageFolder order)."
            )
        images = image_paths(directory, split)
        if images is not None and len(images) != len(feats):
            images = None  # images from another release: figures show row numbers instead
        out[split] = (feats, lines, images)
    return out


# --------------------------------------------------------------------------- TFDS


MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download {SOURCE} and unzip it into the manual directory (data.dir), so that it holds
text_trainvalclasses.txt and text_testclasses.txt (and the train/ and test/ image folders).
{FEATURE_HELP}; they go to <data.dir>/resnet101_2048/{{train,test}}.npy. Then train with
--config.data.dir=<that directory>; the TFDS copy is written to <data.dir>/tfds on first use
(delete that folder to convert again after replacing files; for gs:// data, to the local cache
folder that replaces <data.dir> in that path).
"""


@functools.cache
def tfds_builder_class():
    """The TFDS builder `CUBCaptions` (defined on first use: importing TFDS takes ~0.5 s).

    One record per image: its feature, its captions (in file order), its position and its
    image path ('' when the image folders are absent). Not registered in TFDS's registry.
    """
    import tensorflow_datasets as tfds

    class CUBCaptions(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """CUB-200-2011 ResNet-101 image features and captions, MMVAE's class split."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "MMVAE's cub.zip captions with ResNet-101 features."}
        MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
        code_path = None  # nothing is downloaded: no checksums folder
        features_dir = ""
        captions_per_image = CAPTIONS_PER_IMAGE

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=__doc__,
                features=tfds.features.FeaturesDict(
                    {
                        "feature": tfds.features.Tensor(shape=(FEATURE_DIM,), dtype=np.float32),
                        "captions": tfds.features.Sequence(tfds.features.Text()),
                        "index": tfds.features.Scalar(dtype=np.int64),
                        "path": tfds.features.Text(),
                    }
                ),
                homepage="http://www.robots.ox.ac.uk/~yshi/mmdgm/datasets/cub.zip",
            )

        def _split_generators(self, dl_manager):
            parts = read_release(
                os.fspath(dl_manager.manual_dir), self.features_dir, self.captions_per_image
            )
            return {split: self._generate_examples(part) for split, part in parts.items()}

        def _generate_examples(self, part):
            feats, lines, names = part
            k = self.captions_per_image
            for i in range(len(feats)):
                yield i, {
                    "feature": feats[i],
                    "captions": lines[i * k : (i + 1) * k],
                    "index": i,
                    "path": names[i] if names else "",
                }

    return CUBCaptions


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read_tfds(
    directory: str, features_dir: str = "", tfds_dir: str = "", captions_per_image: int = 10
) -> dict[str, tuple[np.ndarray, list[str], list[str] | None]]:
    """Converts the files to TFDS on first use, then reads them back through `tfds` data
    sources and grain. Returns the same structure as `read_release`."""
    import tensorflow_datasets as tfds

    tfds_dir = tfds_copy_dir(directory, tfds_dir)
    cls = tfds_builder_class()
    builder = cls(data_dir=tfds_dir, file_format="array_record")
    builder.features_dir = features_dir
    builder.captions_per_image = int(captions_per_image)
    if not builder.is_prepared():
        read_release(directory, features_dir, captions_per_image)  # clear errors first
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=directory)
        )
    sources = builder.as_data_source()
    out = {}
    for split in TEXT_FILES:
        records = [sources[split][i] for i in range(len(sources[split]))]
        records.sort(key=lambda r: int(r["index"]))  # TFDS stores records in hashed-key order
        feats = np.stack([r["feature"] for r in records]).astype(np.float32)
        lines = [_text(c) for r in records for c in r["captions"]]
        if len(lines) != captions_per_image * len(feats):
            raise ValueError(
                f"The TFDS copy under {tfds_dir} holds {len(lines) / max(len(feats), 1):g} "
                f"captions per image, not config.data.captions_per_image = "
                f"{captions_per_image}; delete {tfds_dir} to convert the files again."
            )
        names = [_text(r["path"]) for r in records]
        out[split] = (feats, lines, names if all(names) else None)
    return out


# --------------------------------------------------------------------------- dataset


@dataclasses.dataclass(frozen=True)
class CaptionDataset(PairedDataset):
    """Image features ↔ token-id captions.

    `train.x` / `test.x` are `FeatureRows` (image ⌊i/k⌋ of caption i), `train.y` / `test.y`
    int32 token ids [N, max_length]; labels are −1 (no classes). Extra attributes:
      vocab: id → word (`<exc>`, `<pad>`, `<eos>`, then the training words).
      word_counts: [V] occurrences of each id in the training token ids (without `<pad>`,
        `<eos>`; `<exc>` pools the out-of-vocabulary words), for the SIF weights of §6.5.
      captions_per_image: k.
      train_captions, test_captions: the caption lines (for samples.json).
      test_image_paths: 'class/file' per test image, or None without the image folders.
    """

    vocab: tuple[str, ...] = ()
    word_counts: np.ndarray | None = None
    captions_per_image: int = CAPTIONS_PER_IMAGE
    train_captions: tuple[str, ...] = ()
    test_captions: tuple[str, ...] = ()
    test_image_paths: tuple[str, ...] | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def train_features(self) -> np.ndarray:
        return self.train.x.pool

    @property
    def test_features(self) -> np.ndarray:
        return self.test.x.pool


def build_caption_dataset(
    parts: dict,
    captions_per_image: int = CAPTIONS_PER_IMAGE,
    max_length: int = cap.MAX_LENGTH,
    min_count: int = cap.MIN_COUNT,
    name: str = "cub",
) -> CaptionDataset:
    """Tokenises, builds the training vocabulary and pairs caption i with image ⌊i/k⌋."""
    tokenized = {split: [cap.tokenize(line) for line in parts[split][1]] for split in parts}
    vocab, _ = cap.build_vocabulary(tokenized["train"], int(min_count))
    arrays = {}
    for split, (feats, lines, _) in parts.items():
        ids = cap.encode(tokenized[split], vocab, int(max_length))
        index = np.arange(len(lines)) // int(captions_per_image)
        none = np.full(len(lines), -1, np.int32)
        arrays[split] = PairedArrays(FeatureRows(feats, index), ids, none, none)
    train_ids = arrays["train"].y
    real = (train_ids != cap.PAD_ID) & (train_ids != cap.EOS_ID)
    counts = np.bincount(train_ids[real], minlength=len(vocab)).astype(np.int64)
    names = parts["test"][2]
    return CaptionDataset(
        name=name,
        train=arrays["train"],
        test=arrays["test"],
        num_classes=None,
        label_rule=None,
        # Instance-noise scales (§4.2): 0.25 · per-feature std of the training images for x;
        # the captions get none (token ids; the discriminator perturbs its embeddings instead).
        x_std=parts["train"][0].astype(np.float64).std(0).astype(np.float32),
        y_std=np.zeros((), np.float32),
        vocab=vocab,
        word_counts=counts,
        captions_per_image=int(captions_per_image),
        train_captions=tuple(parts["train"][1]),
        test_captions=tuple(parts["test"][1]),
        test_image_paths=tuple(names) if names else None,
    )


def load_cub(
    dir: str = "data/cub",
    features_dir: str = "",
    use_tfds: bool = True,
    tfds_dir: str = "",
    captions_per_image: int = CAPTIONS_PER_IMAGE,
    max_length: int = cap.MAX_LENGTH,
    min_count: int = cap.MIN_COUNT,
) -> CaptionDataset:
    """CUB image features ↔ captions (see the module docstring).

    Args:
      dir: the folder with the two caption files (MMVAE's data/cub; config key data.dir),
        local or gs://.
      features_dir: the folder with train.npy and test.npy; '' means <dir>/resnet101_2048.
      use_tfds: convert to / read from the TFDS copy (True) or read the files (False).
      tfds_dir: where the TFDS copy lives (a local folder); '' means <dir>/tfds, or a local
        cache folder when `dir` is a gs:// URL (`base.tfds_copy_dir`).
      captions_per_image: k; caption i pairs with image ⌊i/k⌋ (10).
      max_length: tokens per caption including `<eos>` (32).
      min_count: a training word enters the vocabulary when seen more than this often (3).

    Raises:
      FileNotFoundError: a file is missing (the message says where to get it and where to
        put it).
      ValueError: malformed features or a caption count that is not k per image.
    """
    parts = (
        read_tfds(dir, features_dir, tfds_dir, captions_per_image)
        if use_tfds
        else read_release(dir, features_dir, captions_per_image)
    )
    return build_caption_dataset(parts, captions_per_image, max_length, min_count)
