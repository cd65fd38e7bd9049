"""Evaluation of view-indexed pairs (IIAE's Cars, iiae.md §5.1, §5.4): x is a car's frontal
(azimuth-0) view, y the same car at another azimuth and the same elevation. The reference
reports no number on these data, only translations; beyond it:

* ``retrieval/R@1_x2y``: how well the shared code identifies the car across views. Queries
  are the distinct test frontal views (one per car and elevation), coded by the x-side
  shared encoder (IIAE: mean of r(z^s|x); Wyner: z_x); the gallery is every test rotated
  view, coded by the y-side encoder; a query is a hit when its nearest gallery code (squared
  Euclidean, ties to the lower index) shows the same car. ``retrieval/R@1_y2x`` the converse
  (every rotated view against the frontal views). ``retrieval/R@1_chance``: the hit rate of
  a random nearest neighbour, mean over x→y queries of (same-car gallery items / gallery);
* ``probe/azimuth_from_excl``: linear-probe accuracy (``probe.linear_probe_accuracy``) of
  the rotated view's azimuth (23 classes) from its exclusive code (IIAE: mean of q(z^y|y)),
  fitted on the training pairs and scored on the test cars, which the model never saw;
  higher is better. ``probe/azimuth_from_shared``: the same from the shared code z_y, the
  leakage check: lower is better, chance is ``probe/azimuth_chance`` = 1/23;

and two figures (cells shown at most ``SWEEP_CELL`` pixels):

* ``azimuth_sweep``: each row one test car's frontal view, translated to every azimuth by
  the exclusive code of one reference test car's views at those azimuths (top row), with
  the car's true views below (IIAE: ``translate_x2y_style``, §5.4 ``outputsY_fromX`` with a
  borrowed code);
* an azimuth carried from one car to another is the runner's ``x2y_style_grid`` over the
  dataset's ``figure_rows`` (different cars and azimuths per row).
"""

from __future__ import annotations

import numpy as np

from wyner_jax.data.pix2pix import resize_area
from wyner_jax.evaluation import base, figures
from wyner_jax.evaluation.probe import linear_probe_accuracy
from wyner_jax.evaluation.translation_figures import BLANK

SWEEP_CELL = 128  # pixels per cell of the azimuth sweep (24 columns at 256 px would be huge)
SWEEP_CARS = 4


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """[Q] index of each query's nearest gallery row by squared Euclidean distance (float64;
    ties to the lower index, NumPy's argmin)."""
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    g = np.asarray(gallery, np.float64).reshape(len(gallery), -1)
    if q.shape[1] != g.shape[1] or len(g) == 0:
        raise ValueError(f"codes of {q.shape[1:]} vs {g.shape[1:]}, gallery of {len(g)} rows.")
    g_sq = np.sum(g * g, axis=1)
    out = [
        np.argmin(g_sq[None, :] - 2.0 * q[s : s + chunk] @ g.T, axis=1)  # ‖q‖² is constant
        for s in range(0, len(q), chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def same_car_recall(queries, gallery, query_cars, gallery_cars) -> float:
    """Share of queries whose nearest gallery code belongs to the same car."""
    nn_index = nearest_neighbours(queries, gallery)
    return float(np.mean(np.asarray(gallery_cars)[nn_index] == np.asarray(query_cars)))


def car_retrieval_metrics(z_x, z_y, views, frontal: np.ndarray) -> dict[str, float]:
    """``R@1_x2y``, ``R@1_y2x``, ``R@1_chance`` (see the module docstring).

    Args:
      z_x, z_y: [N, ...] shared codes of the N test pairs' x and y.
      views: the test pairs' view index (``car``, ``elevation``, ``azimuth`` arrays).
      frontal: rows of the distinct frontal views (one per car and elevation).
    """
    cars = np.asarray(views.car)
    qx, qcars = np.asarray(z_x)[frontal], cars[frontal]
    same = (qcars[:, None] == cars[None, :]).mean(axis=1)
    return {
        "R@1_x2y": same_car_recall(qx, z_y, qcars, cars),
        "R@1_y2x": same_car_recall(z_y, qx, cars, qcars),
        "R@1_chance": float(same.mean()),
    }


def azimuth_probes(codes_train, codes_test, azimuth_train, azimuth_test, num_azimuths):
    """{code name: linear-probe accuracy of y's azimuth}: azimuths 1..num_azimuths−1 are
    the classes (x is always azimuth 0)."""
    return {
        name: linear_probe_accuracy(
            codes_train[name],
            np.asarray(azimuth_train) - 1,
            codes_test[name],
            np.asarray(azimuth_test) - 1,
            int(num_azimuths) - 1,
        )
        for name in codes_test
    }


def _cells(images: np.ndarray) -> np.ndarray:
    side = images.shape[-2]
    if side <= SWEEP_CELL:
        return np.asarray(images, np.float32)
    return resize_area(images, SWEEP_CELL, SWEEP_CELL)


def azimuth_sweep(inf, dataset, cars: int = SWEEP_CARS) -> np.ndarray | None:
    """The ``azimuth_sweep`` grid as cells [2·R + 1, 1 + A, H, W, C]: top row the reference
    car's views at azimuths 1..A, then per car its translations and its true views."""
    test, views = dataset.test, dataset.test_views
    frontal = dataset.frontal_rows("test")
    # One frontal view per car (its first elevation); the reference is the first car.
    _, first = np.unique(np.asarray(views.car)[frontal], return_index=True)
    rows = frontal[np.sort(first)][:cars]
    if len(rows) == 0:
        return None
    car_el = {(int(views.car[i]), int(views.elevation[i])): i for i in rows}
    by_view = {
        (int(c), int(e), int(a)): i
        for i, (c, e, a) in enumerate(zip(views.car, views.elevation, views.azimuth))
    }
    azimuths = range(1, int(dataset.num_azimuths))
    ref_car, ref_el = int(views.car[rows[0]]), int(views.elevation[rows[0]])
    style_rows = [by_view.get((ref_car, ref_el, a)) for a in azimuths]
    if any(r is None for r in style_rows):
        return None
    styles = _cells(test.y[np.asarray(style_rows)])
    n_az = len(style_rows)
    cell = styles.shape[1:]
    grid = np.full((2 * len(rows) + 1, n_az + 1) + cell, BLANK, np.float32)
    grid[0, 1:] = styles
    for r, ((car, el), i) in enumerate(car_el.items()):
        content = np.repeat(test.x[np.asarray([i])], n_az, axis=0)
        grid[1 + 2 * r, 0] = _cells(test.x[np.asarray([i])])[0]
        translated = inf.call("translate_x2y_style", content, test.y[np.asarray(style_rows)])
        grid[1 + 2 * r, 1:] = _cells(np.asarray(translated))
        truth = [by_view.get((car, el, a)) for a in azimuths]
        for a, t in enumerate(truth):
            if t is not None:
                grid[2 + 2 * r, 1 + a] = _cells(test.y[np.asarray([t])])[0]
    return grid


def evaluate_views(inf, dataset, config, emb_test) -> tuple[dict[str, float], dict]:
    """The metrics and figures above, as (``{name: value}`` with ``retrieval/`` and
    ``probe/`` prefixes, ``{figure name: uint8 image}``)."""
    test, train = dataset.test, dataset.train
    views, train_views = dataset.test_views, dataset.train_views
    metrics = {}
    frontal = dataset.frontal_rows("test")
    if "z_x" in emb_test and "z_y" in emb_test:
        r = car_retrieval_metrics(emb_test["z_x"], emb_test["z_y"], views, frontal)
        metrics.update({f"retrieval/{k}": v for k, v in r.items()})
    # Probes are fitted on (at most eval.view_probe_max_train) training pairs, evenly spaced.
    limit = int(config.eval.get("view_probe_max_train", 0))
    rows = np.arange(len(train.y))
    if 0 < limit < len(rows):
        rows = rows[np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    codes_test, codes_train = {}, {}
    if "z_y" in emb_test:
        codes_test["shared"] = emb_test["z_y"]
        codes_train["shared"] = inf.embed(train.x[rows], train.y[rows])["z_y"]
    if inf.has("embed_exclusive"):
        codes_test["excl"] = inf.call("embed_exclusive", test.x, test.y)["e_y"]
        codes_train["excl"] = inf.call("embed_exclusive", train.x[rows], train.y[rows])["e_y"]
    if codes_test:
        az_train = np.asarray(train_views.azimuth)[rows]
        acc = azimuth_probes(codes_train, codes_test, az_train, views.azimuth, dataset.num_azimuths)
        metrics.update({f"probe/azimuth_from_{k}": v for k, v in acc.items()})
        metrics["probe/azimuth_chance"] = 1.0 / (int(dataset.num_azimuths) - 1)
    images = {}
    if inf.has("translate_x2y_style"):
        grid = azimuth_sweep(inf, dataset)
        if grid is not None:
            images["azimuth_sweep"] = figures.image_grid(grid)
    return metrics, images


def run(ctx) -> tuple[dict[str, float], dict]:
    return evaluate_views(ctx.inf, ctx.dataset, ctx.config, ctx.emb_test)


# The shared code should not carry the azimuth: lower is better.
EVALUATOR = base.Evaluator(
    "car views", base.view_indexed, run, lower_is_better=("probe/azimuth_from_shared",)
)
