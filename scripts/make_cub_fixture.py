"""Write a small synthetic CUB caption folder in exactly the layout the CUB loader reads.

  python scripts/make_cub_fixture.py --out /tmp/cub
  python train.py --config=configs/cub.py:fixture --config.data.dir=/tmp/cub ...

Writes `<out>/text_trainvalclasses.txt`, `<out>/text_testclasses.txt` (10 caption lines per
image) and `<out>/resnet101_2048/{train,test}.npy` ([N_images, 2048] float32, non-negative
like pooled ResNet features). Each synthetic bird has attributes (size, body colour, wing
colour, beak); its feature is ReLU(attribute one-hots · A + noise) for a fixed random map A,
and its ten captions describe the attributes with varied templates, so captions and features
are correlated (the CCA ground truth is well above 0) but not one-to-one. A few rare words
fall below the vocabulary threshold and become `<exc>`.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wyner_jax.data.cub import FEATURE_DIM, TEXT_FILES  # noqa: E402

ATTRIBUTES = {
    "size": ("small", "large", "medium-sized"),
    "body": ("red", "blue", "yellow", "black", "white", "brown"),
    "wings": ("grey", "black", "white", "brown"),
    "beak": ("short", "long", "pointed", "curved"),
}
TEMPLATES = (
    "this {size} bird has a {body} body and {wings} wings.",
    "a {size} bird with a {beak} beak and a {body} belly.",
    "the bird is {body} with {wings} wings, and its beak is {beak}.",
    "this bird's wings are {wings} and its body is {body}.",
    "a {body} bird with a {beak} bill.",
    "this is a {size} {body} bird with {wings} wings.",
    "the {beak} beak is black and the crown is {body}.",
    "this bird has {wings} wings and a {size} {body} body.",
    "a {size} bird that has a {body} breast and a {beak} beak.",
    "this bird doesn't have a {beak} beak; its wings are {wings}.",
)
RARE = ("iridescent", "speckled", "mottled", "plump")


def make_fixture(
    out: str, num_train: int = 40, num_test: int = 12, seed: int = 0, per_image: int = 10
) -> str:
    """Writes the fixture under `out` and returns `out`."""
    rng = np.random.default_rng(seed)
    names = list(ATTRIBUTES)
    width = sum(len(v) for v in ATTRIBUTES.values())
    amap = np.abs(rng.normal(size=(width, FEATURE_DIM))) * (rng.random((width, FEATURE_DIM)) < 0.3)
    feat_dir = os.path.join(out, "resnet101_2048")
    os.makedirs(feat_dir, exist_ok=True)
    for split, n in (("train", num_train), ("test", num_test)):
        lines, feats = [], []
        for _ in range(n):
            choice = {a: int(rng.integers(len(ATTRIBUTES[a]))) for a in names}
            onehot = np.concatenate(
                [np.eye(len(ATTRIBUTES[a]))[choice[a]] for a in names]
            ) + 0.3 * rng.random(width)
            feats.append(np.maximum(onehot @ amap + 0.2 * rng.normal(size=FEATURE_DIM), 0.0))
            words = {a: ATTRIBUTES[a][choice[a]] for a in names}
            for t in rng.permutation(len(TEMPLATES))[:per_image]:
                line = TEMPLATES[t].format(**words)
                if rng.random() < 0.05:  # a rare word: out of the vocabulary, <exc>
                    line = line.replace("bird", f"{RARE[rng.integers(len(RARE))]} bird", 1)
                lines.append(line)
        np.save(os.path.join(feat_dir, f"{split}.npy"), np.stack(feats).astype(np.float32))
        with open(os.path.join(out, TEXT_FILES[split]), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the fixture into")
    parser.add_argument("--train-images", type=int, default=40)
    parser.add_argument("--test-images", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    make_fixture(args.out, args.train_images, args.test_images, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
