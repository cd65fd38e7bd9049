"""Write a small synthetic SketchyVGG folder in exactly the layout of IIAE's release.

  python scripts/make_sketchy_fixture.py --out /tmp/sketchy [--split 1|2]
  python train.py --config=configs/sketchy.py --config.data.dir=/tmp/sketchy ...

Writes `<out>/SketchyVGG/split{k}/{train,test}_{sketch,image}_{features,paths}.npy`:
features [N, 512] float32, paths 'class/filename' (unicode arrays). The test classes are the
real unseen classes of the split (25 or 21); the training classes are made up
(`trainclass_00`, ...).

Generative model: every class has a random centre c ~ N(0, I) in a `class_dim`-dimensional
class space; a sketch is (c + 0.5·n)·A_x + 0.1·e and a photo (c + 0.5·n')·A_y + 0.1·e' with
two different random linear maps A_x, A_y: [class_dim, 512] (two "extractors") and fresh
noise n, n' ~ N(0, I_class_dim), e, e' ~ N(0, I_512) per item. Sketch and photo of a class
share only c, as the real pairs (class-matched, not instance-matched) do, so cross-domain
retrieval in the raw features is near chance.

Zero-shot transfer is learnable only when the training classes span the class space: a map
learnt from class-matched pairs sees the class space only along the training centres, so
with `num_train_classes <= class_dim` the test classes' components outside their span are
lost. `LEARNABLE_TRAIN_CLASSES` (2·class_dim, the command line's default) spans it with
room; a ridge map fit on those training classes retrieves the unseen test classes with mAP
0.94 (chance 0.07; with 8 training classes 0.41; tests/test_sketchy.py). The default of 8
training classes is kept for the format and error tests, which need only the layout.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wyner_jax.data.sketchy import FEATURE_DIM, TEST_CLASSES  # noqa: E402

CLASS_DIM = 16
LEARNABLE_TRAIN_CLASSES = 2 * CLASS_DIM


def make_fixture(
    out: str,
    split: int = 1,
    num_train_classes: int = 8,
    per_class: int = 6,
    seed: int = 0,
    photo_name: str = "image",
    class_dim: int = CLASS_DIM,
) -> str:
    """Writes the fixture and returns the split folder. `photo_name` 'photo' gives the
    Wyner layout's names. Zero-shot transfer needs `num_train_classes > class_dim` (see the
    module docstring); the default 8 is only for tests of the file format."""
    rng = np.random.default_rng(seed)
    test_classes = list(TEST_CLASSES[split])
    train_classes = [f"trainclass_{i:02d}" for i in range(num_train_classes)]
    a_x = rng.normal(size=(class_dim, FEATURE_DIM)) / np.sqrt(class_dim)
    a_y = rng.normal(size=(class_dim, FEATURE_DIM)) / np.sqrt(class_dim)
    folder = os.path.join(out, "SketchyVGG", f"split{split}")
    os.makedirs(folder, exist_ok=True)
    for part, classes in (("train", train_classes), ("test", test_classes)):
        for kind, amap, ext in (("sketch", a_x, "png"), (photo_name, a_y, "jpg")):
            feats, paths = [], []
            for c in classes:
                # A class's centre depends on its name (every character of it, so that
                # 'trainclass_01' and 'trainclass_10' differ) and the seed only: the same
                # centre in both domains and in both parts' files.
                centre = np.random.default_rng([seed, *map(ord, c)]).normal(size=class_dim)
                noise = 0.5 * rng.normal(size=(per_class, class_dim))
                feats.append(
                    (centre + noise) @ amap + 0.1 * rng.normal(size=(per_class, FEATURE_DIM))
                )
                paths += [f"{c}/{c}_{kind}_{i:03d}.{ext}" for i in range(per_class)]
            np.save(
                os.path.join(folder, f"{part}_{kind}_features.npy"),
                np.concatenate(feats).astype(np.float32),
            )
            np.save(os.path.join(folder, f"{part}_{kind}_paths.npy"), np.array(paths))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to create SketchyVGG/ in")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2))
    parser.add_argument(
        "--train-classes",
        type=int,
        default=LEARNABLE_TRAIN_CLASSES,
        help="number of made-up training classes; more than --class-dim for zero-shot transfer",
    )
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--class-dim", type=int, default=CLASS_DIM)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = make_fixture(
        args.out,
        args.split,
        args.train_classes,
        args.per_class,
        args.seed,
        class_dim=args.class_dim,
    )
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
