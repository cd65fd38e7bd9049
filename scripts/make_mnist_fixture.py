"""Write small stand-ins for the prepared TFDS datasets `mnist` and `svhn_cropped`.

  python scripts/make_mnist_fixture.py --out /tmp/tfds_fixture
  python train.py --config=configs/mnist_add1.py --config.data.tfds_dir=/tmp/tfds_fixture ...

The output is a TFDS data_dir in exactly the layout `tfds build mnist svhn_cropped
--file_format=array_record` produces (`<out>/mnist/3.0.1/`, `<out>/svhn_cropped/3.1.0/`:
array_record shards, dataset_info.json, features.json), with the catalog's names, versions and
features, written by TFDS's own writer (records in TFDS's hashed-key order), so the loaders
read it through the catalog builders like the real data. No TensorFlow is needed: images are
handed to TFDS already PNG-encoded (by Pillow).

Content: scikit-learn's 8×8 digits, upsampled to 28×28 gray (MNIST) and to 32×32 with a random
background and ink colour (SVHN), drawn with replacement so that the classes have unequal
counts (the pairing's min(#l, #l+1, max) rule then matters). SVHN records carry the catalog's
`id` ('<split>_<index>').
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wyner_jax.data.mnist import resize_bilinear  # noqa: E402

# Images per class of each split: unequal on purpose (class c gets base + spread·((3c) mod 5)).
SIZES = {
    ("mnist", "train"): (30, 6),
    ("mnist", "test"): (10, 3),
    ("svhn_cropped", "train"): (15, 4),
    ("svhn_cropped", "test"): (10, 3),
    ("svhn_cropped", "extra"): (40, 5),
}


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def make_split(dataset: str, split: str, seed: int = 0, scale: int = 1):
    """(uint8 images [N, H, W, C], int labels [N]) of one split, in source order."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    digits = raw.images.astype(np.float64) * (255.0 / 16.0)  # [1797, 8, 8] in 0..255
    base, spread = SIZES[dataset, split]
    rng = np.random.default_rng([seed, len(dataset), sum(map(ord, split))])
    labels = np.concatenate(
        [np.full(scale * (base + spread * ((3 * c) % 5)), c) for c in range(10)]
    )
    labels = rng.permutation(labels)
    picks = np.array([rng.choice(np.flatnonzero(raw.target == c)) for c in labels])
    size = 28 if dataset == "mnist" else 32
    ink = resize_bilinear(digits[picks][..., None], size) / 255.0  # [N, size, size, 1] in 0..1
    if dataset == "mnist":
        images = ink * 255.0
    else:  # random background and ink colours, like house-number crops
        bg = rng.uniform(0, 255, (len(labels), 1, 1, 3))
        fg = rng.uniform(0, 255, (len(labels), 1, 1, 3))
        images = bg * (1.0 - ink) + fg * ink
    return np.clip(np.round(images), 0, 255).astype(np.uint8), labels.astype(np.int64)


def _write(out: str, dataset: str, splits: dict) -> None:
    import tensorflow_datasets as tfds

    catalog = tfds.builder_cls(dataset)
    ds_name, version = dataset, str(catalog.VERSION)
    shape = (28, 28, 1) if dataset == "mnist" else (32, 32, 3)
    with_id = dataset == "svhn_cropped"

    class Fixture(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = ds_name
        VERSION = tfds.core.Version(version)
        code_path = None  # nothing to download, no checksums folder

        def _info(self):
            features = {
                "image": tfds.features.Image(shape=shape),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
            if with_id:
                features["id"] = tfds.features.Text()
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"Synthetic stand-in for {ds_name} (scripts/make_mnist_fixture.py).",
                features=tfds.features.FeaturesDict(features),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in splits}

        def _generate_examples(self, split):
            images, labels = splits[split]
            for i in range(len(labels)):  # keys = source indices, as the catalog builders
                example = {"image": _png(images[i]), "label": int(labels[i])}
                if with_id:
                    example["id"] = f"{split}_{i:06d}"
                yield i, example

    Fixture(data_dir=out, file_format="array_record").download_and_prepare()


def make_fixture(out: str, seed: int = 0, scale: int = 1) -> dict:
    """Writes both datasets under data_dir `out`; returns {(dataset, split): (images, labels)}
    in source order (what the loaders should read back). `scale` multiplies every split's
    size."""
    arrays = {key: make_split(*key, seed=seed, scale=scale) for key in SIZES}
    for dataset in ("mnist", "svhn_cropped"):
        _write(out, dataset, {s: arrays[d, s] for d, s in arrays if d == dataset})
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="TFDS data_dir to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="multiply every split's size")
    args = parser.parse_args()
    arrays = make_fixture(args.out, args.seed, args.scale)
    for (dataset, split), (_, labels) in arrays.items():
        print(f"{dataset}/{split}: {len(labels)} images")
    print(f"Use with --config.data.tfds_dir={args.out}")


if __name__ == "__main__":
    main()
