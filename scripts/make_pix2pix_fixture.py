"""Write a small synthetic stand-in for Maps, Facades or MNIST-CDCB in exactly the on-disk
format the loaders read (wyner_jax/data/pix2pix.py): one RGB file per pair, domain A on the
left half and domain B on the right half, one folder per split.

  python scripts/make_pix2pix_fixture.py --dataset maps --out /tmp/maps
  python train.py --config=configs/iiae_maps.py:64 --config.data.dir=/tmp/maps ...

Layouts (as the real releases): maps `train/`, `val/` with 1.jpg, 2.jpg, ...; facades
`train/`, `val/`, `test/` with numbered JPEGs; mnist_cdcb `train/`, `valid/`, `test/` with
00001.png, ... (PNG). Each pair draws one random scene and renders it twice, differently:

* maps: A a noisy "satellite" rendering of random blocks and a road on vegetation, B a flat
  "map" rendering of the same layout;
* facades: A a noisy "photo" of a facade with a random window grid, B its flat label map;
* mnist_cdcb: a scikit-learn 8×8 digit scaled to the half size; A the digit in a random color
  on black, B the digit in white on a random background color.

So the shared content (layout, digit) is what a cross-domain code should carry, and the
renderings' colors and noise are exclusive to each side.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

SPLITS = {
    "maps": (("train", "jpg"), ("val", "jpg")),
    "facades": (("train", "jpg"), ("val", "jpg"), ("test", "jpg")),
    "mnist_cdcb": (("train", "png"), ("valid", "png"), ("test", "png")),
}
HALF_SIZE = {"maps": 64, "facades": 64, "mnist_cdcb": 32}


def _maps_pair(rng, s):
    layout = np.zeros((s, s), np.int8)  # 0 vegetation, 1 building, 2 road, 3 water
    for _ in range(rng.integers(2, 5)):
        r, c = rng.integers(0, s - s // 4, 2)
        h, w = rng.integers(s // 8, s // 3, 2)
        layout[r : r + h, c : c + w] = 1
    if rng.random() < 0.5:
        r = rng.integers(0, s - s // 6)
        layout[r : r + s // 6, : s // 2] = 3
    road = rng.integers(s // 8, s - s // 8)
    if rng.random() < 0.5:
        layout[:, road : road + max(2, s // 16)] = 2
    else:
        layout[road : road + max(2, s // 16), :] = 2
    sat_colors = np.array([[60, 90, 50], [120, 115, 110], [70, 70, 70], [30, 50, 80]], float)
    map_colors = np.array([[235, 230, 220], [215, 210, 205], [255, 255, 255], [170, 200, 230]])
    a = sat_colors[layout] + rng.normal(0, 18, (s, s, 3))
    b = map_colors[layout]
    return a, b


def _facades_pair(rng, s):
    rows, cols = rng.integers(2, 6), rng.integers(2, 6)
    wall = rng.uniform(120, 220, 3)
    a = np.broadcast_to(wall, (s, s, 3)) + rng.normal(0, 12, (s, s, 3))
    b = np.zeros((s, s, 3))
    b[:] = (0, 0, 170)  # the label maps' facade blue
    cell_h, cell_w = s // rows, s // cols
    for i in range(rows):
        for j in range(cols):
            top, left = i * cell_h + cell_h // 4, j * cell_w + cell_w // 4
            h, w = max(1, cell_h // 2), max(1, cell_w // 2)
            a[top : top + h, left : left + w] = rng.uniform(20, 70, 3)
            b[top : top + h, left : left + w] = (0, 110, 255)
    door = s // 2 - s // 12
    b[s - s // 5 :, door : door + s // 6] = (170, 255, 85)
    a[s - s // 5 :, door : door + s // 6] = (90, 60, 40)
    return a, b


def _digit_pair(rng, s, digits):
    img = digits[rng.integers(len(digits))]
    mask = np.asarray(Image.fromarray(np.uint8(img * 255 / 16)).resize((s, s), Image.BILINEAR))
    m = (mask.astype(float) / 255.0)[..., None]
    digit_color = rng.uniform(60, 255, 3)
    background = rng.uniform(60, 255, 3)
    a = m * digit_color
    b = m * 255.0 + (1 - m) * background
    return a, b


def make_fixture(
    out: str,
    dataset: str = "maps",
    n_train: int = 24,
    n_test: int = 12,
    half_size: int | None = None,
    seed: int = 0,
) -> str:
    """Writes the fixture under `out` and returns `out`. Every split folder gets n_train
    (train) or n_test (the others) pairs of `half_size`-pixel halves."""
    if dataset not in SPLITS:
        raise ValueError(f"--dataset must be one of {sorted(SPLITS)}, got {dataset!r}.")
    s = int(half_size or HALF_SIZE[dataset])
    rng = np.random.default_rng(seed)
    digits = None
    if dataset == "mnist_cdcb":
        from sklearn.datasets import load_digits

        digits = load_digits().images
    for split, ext in SPLITS[dataset]:
        folder = os.path.join(out, split)
        os.makedirs(folder, exist_ok=True)
        n = n_train if split == "train" else n_test
        for k in range(1, n + 1):
            if dataset == "maps":
                a, b = _maps_pair(rng, s)
            elif dataset == "facades":
                a, b = _facades_pair(rng, s)
            else:
                a, b = _digit_pair(rng, s, digits)
            pair = np.clip(np.concatenate([a, b], axis=1), 0, 255).astype(np.uint8)
            name = f"{k:05d}.png" if ext == "png" else f"{k}.jpg"
            path = os.path.join(folder, name)
            if ext == "jpg":
                Image.fromarray(pair).save(path, quality=95)
            else:
                Image.fromarray(pair).save(path)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="maps", choices=sorted(SPLITS))
    parser.add_argument("--out", required=True, help="folder that will hold the split folders")
    parser.add_argument("--n-train", type=int, default=24)
    parser.add_argument("--n-test", type=int, default=12)
    parser.add_argument("--half-size", type=int, default=0, help="pixels per half (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = make_fixture(
        args.out, args.dataset, args.n_train, args.n_test, args.half_size or None, args.seed
    )
    print(f"wrote a synthetic {args.dataset} fixture to {out}")


if __name__ == "__main__":
    main()
