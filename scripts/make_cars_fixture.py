"""Write a small synthetic stand-in for Reed et al.'s rendered 3D cars in exactly the on-disk
format the Cars loader reads (wyner_jax/data/cars.py): one `car_XXX_mesh.mat` per car, whose
variable `im` is uint8 [H, W, 3, 24, 4] = (height, width, RGB, azimuth, elevation).

  python scripts/make_cars_fixture.py --out /tmp/cars --size 32 --cars 1,2,3,192,193
  python train.py --config=configs/iiae_cars.py --config.data.dir=/tmp/cars ...

This is not the dataset (that is http://www.scottreed.info/files/nips2015-analogy-data.tar.gz):
each "car" is a few boxes (a body, a cabin set towards the rear, four wheels, yellow headlights
at the nose and red tail lights) whose colour and proportions depend on the car id, rendered
orthographically with flat shading on a white background. Azimuth a turns the car by a·15°
(azimuth 0: side view, nose to the left), elevation e raises the camera to e·15° (the view is
squashed vertically and the roof shows). So the car's identity and the elevation, shared by
the azimuth-0 x and the rotated y of a pair, and y's rotation are all visible, and a model can
learn them. Deterministic: a car's look depends only on (seed, car id).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

NUM_AZIMUTHS = 24
NUM_ELEVATIONS = 4
ELEVATION_STEP_DEG = 15.0
SUPERSAMPLE = 4  # drawn at 4× then area-averaged: anti-aliased edges
BACKGROUND = (255, 255, 255)
# The 6 faces of a box as corner indices (corner bits: x, y, z), each with its outward normal.
FACES = (
    ((0, 2, 6, 4), (-1, 0, 0)),
    ((1, 3, 7, 5), (1, 0, 0)),
    ((0, 1, 5, 4), (0, -1, 0)),
    ((2, 3, 7, 6), (0, 1, 0)),
    ((0, 1, 3, 2), (0, 0, -1)),
    ((4, 5, 7, 6), (0, 0, 1)),
)


def car_boxes(car_id: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The boxes of one car as (low corner, high corner, RGB colour); x is the long axis
    (nose at +x), y the width and z up, centred on the origin."""
    rng = np.random.default_rng([seed, car_id])
    length = rng.uniform(1.5, 2.2)
    width = rng.uniform(0.65, 0.9)
    body_h = rng.uniform(0.3, 0.45)
    cabin_len = length * rng.uniform(0.35, 0.6)
    cabin_h = rng.uniform(0.2, 0.38)
    colour = rng.uniform(30, 230, 3)
    colour[rng.integers(3)] = rng.uniform(200, 255)  # one strong channel: a distinct hue
    clearance, wheel = 0.12, 0.22
    hl, hw = length / 2, width / 2
    bottom = clearance
    top = bottom + body_h
    rear = -hl + rng.uniform(0.05, 0.2) * length  # the cabin sits towards the rear
    boxes = [
        ((-hl, -hw, bottom), (hl, hw, top), colour),
        ((rear, -hw * 0.9, top), (rear + cabin_len, hw * 0.9, top + cabin_h), 0.45 * colour + 60),
    ]
    for x in (-0.3 * length, 0.3 * length):
        for y in (-hw, hw - 0.1):
            boxes.append(((x - wheel / 2, y, 0.0), (x + wheel / 2, y + 0.1, wheel), (25, 25, 25)))
    for y in (-hw + 0.05, hw - 0.2):  # headlights (nose) and tail lights
        boxes.append(((hl, y, top - 0.15), (hl + 0.03, y + 0.15, top - 0.05), (250, 220, 40)))
        boxes.append(((-hl - 0.03, y, top - 0.15), (-hl, y + 0.15, top - 0.05), (200, 20, 20)))
    centre = (top + cabin_h) / 2
    return [
        (np.array(lo, float) - (0, 0, centre), np.array(hi, float) - (0, 0, centre), np.array(c))
        for lo, hi, c in boxes
    ]


def render(boxes, azimuth_deg: float, elevation_deg: float, size: int) -> np.ndarray:
    """uint8 [size, size, 3] orthographic view: the car turned by `azimuth_deg` about the
    vertical, seen from `elevation_deg` above the horizon (0°, 0°: side view, nose left)."""
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    # Turn about z, then map to (image right, image up, depth away from the camera); the
    # camera looks along +y tilted down by e. Nose (+x) points left at azimuth 0.
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    camera = np.array([[-1, 0, 0], [0, np.sin(e), np.cos(e)], [0, np.cos(e), -np.sin(e)]])
    to_view = camera @ turn
    light = np.array([0.3, 0.6, -0.75])  # towards the viewer's upper right (view coordinates)
    light /= np.linalg.norm(light)
    big = size * SUPERSAMPLE
    scale = big / 2.4  # pixels per unit: the largest car (2.2 × 0.9) fits at any azimuth
    faces = []
    for lo, hi, colour in boxes:
        corners = np.array([[(lo, hi)[(i >> b) & 1][b] for b in range(3)] for i in range(8)])
        view = corners @ to_view.T
        for idx, normal in FACES:
            n = to_view @ np.array(normal, float)
            if n[2] >= -1e-9:  # faces away from the camera
                continue
            shade = 0.55 + 0.45 * max(0.0, float(n @ light))
            pts = view[list(idx)]
            xy = [(big / 2 + scale * u, big / 2 - scale * v) for u, v, _ in pts]
            faces.append(
                (pts[:, 2].mean(), xy, tuple(int(c) for c in np.clip(colour * shade, 0, 255)))
            )
    img = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for _, xy, fill in sorted(faces, key=lambda f: -f[0]):  # painter's order: far first
        draw.polygon(xy, fill=fill)
    fine = np.asarray(img, np.float64).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3)
    return np.clip(np.floor(fine.mean((1, 3)) + 0.5), 0, 255).astype(np.uint8)


def car_views(car_id: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """The release's `im` for one synthetic car: uint8 [size, size, 3, 24, 4]."""
    boxes = car_boxes(car_id, seed)
    im = np.empty((size, size, 3, NUM_AZIMUTHS, NUM_ELEVATIONS), np.uint8)
    for e in range(NUM_ELEVATIONS):
        for a in range(NUM_AZIMUTHS):
            im[..., a, e] = render(boxes, a * 360.0 / NUM_AZIMUTHS, e * ELEVATION_STEP_DEG, size)
    return im


def make_fixture(
    out: str, car_ids: tuple[int, ...] = (1, 2, 3, 192, 193), size: int = 32, seed: int = 0
) -> str:
    """Writes `out`/car_XXX_mesh.mat for every id in `car_ids` and returns `out`."""
    from scipy import io as sio

    if int(size) < 1:
        raise ValueError(f"--size must be at least 1, got {size}.")
    os.makedirs(out, exist_ok=True)
    for car in car_ids:
        if not 0 <= int(car) <= 999:
            raise ValueError(f"car ids must be in 0..999 (car_XXX_mesh.mat), got {car}.")
        path = os.path.join(out, f"car_{int(car):03d}_mesh.mat")
        sio.savemat(path, {"im": car_views(int(car), int(size), seed)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder that will hold car_XXX_mesh.mat")
    parser.add_argument("--size", type=int, default=32, help="render side in pixels")
    parser.add_argument(
        "--cars",
        default="1,2,3,192,193",
        help="comma-separated car ids (the loader trains on ids <= 191 and tests on the rest)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        ids = tuple(int(c) for c in args.cars.split(",") if c.strip())
    except ValueError:
        parser.error(f"--cars must be comma-separated integers, got {args.cars!r}")
    out = make_fixture(args.out, ids, args.size, args.seed)
    print(f"wrote {len(ids)} synthetic car files ({args.size} px) to {out}")


if __name__ == "__main__":
    main()
