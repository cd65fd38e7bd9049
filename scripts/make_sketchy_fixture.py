"""Write a small synthetic SketchyVGG folder in exactly the layout of IIAE's release.

  python scripts/make_sketchy_fixture.py --out /tmp/sketchy [--split 1|2]
  python train.py --config=configs/sketchy.py --config.data.dir=/tmp/sketchy ...

Writes `<out>/SketchyVGG/split{k}/{train,test}_{sketch,image}_{features,paths}.npy`:
features [N, 512] float32, paths 'class/filename' (unicode arrays). The test classes are the
real unseen classes of the split (25 or 21); a few made-up training classes. Each class has
a random 512-d centre; a sketch is centre·A_x + noise and a photo centre·A_y + noise with
two different random linear maps A_x, A_y (two "extractors"), so retrieval across domains
is learnable but not trivial in the raw features.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wyner_jax.data.sketchy import FEATURE_DIM, TEST_CLASSES  # noqa: E402


def make_fixture(
    out: str,
    split: int = 1,
    num_train_classes: int = 8,
    per_class: int = 6,
    seed: int = 0,
    photo_name: str = "image",
) -> str:
    """Writes the fixture and returns the split folder. `photo_name` 'photo' gives the
    Wyner layout's names."""
    rng = np.random.default_rng(seed)
    test_classes = list(TEST_CLASSES[split])
    train_classes = [f"trainclass_{i:02d}" for i in range(num_train_classes)]
    latent = 16
    a_x = rng.normal(size=(latent, FEATURE_DIM)) / np.sqrt(latent)
    a_y = rng.normal(size=(latent, FEATURE_DIM)) / np.sqrt(latent)
    folder = os.path.join(out, "SketchyVGG", f"split{split}")
    os.makedirs(folder, exist_ok=True)
    for part, classes in (("train", train_classes), ("test", test_classes)):
        for kind, amap, ext in (("sketch", a_x, "png"), (photo_name, a_y, "jpg")):
            feats, paths = [], []
            for c in classes:
                centre = np.random.default_rng([seed, sum(map(ord, c)), len(c)]).normal(size=latent)
                noise = 0.5 * rng.normal(size=(per_class, latent))
                feats.append((centre + noise) @ amap + 0.1 * rng.normal(size=(per_class, 512)))
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
    parser.add_argument("--train-classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = make_fixture(args.out, args.split, args.train_classes, args.per_class, args.seed)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
