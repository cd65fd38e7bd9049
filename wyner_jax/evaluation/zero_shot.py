"""Zero-shot retrieval on the dataset's own query and gallery sets (paper §6.6, Sketchy
ZS-SBIR): all test sketches against all test photos, of classes never trained on.

* ``retrieval/mAP@all``, ``retrieval/mAP@all_interp``, ``retrieval/P@k`` and
  ``retrieval/mAP@k`` for k in ``config.eval.retrieval_map_ks`` (Sketchy split 2: 200);
* figures: a per-class AP bar chart ``retrieval_per_class_ap`` and, when
  ``config.data.image_root`` holds the images, the top-10 photos of one sketch per class
  ``retrieval_top10``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from absl import logging

from wyner_jax import paths
from wyner_jax.evaluation import base, figures
from wyner_jax.evaluation.representation import check_cutoffs
from wyner_jax.evaluation.retrieval import (
    pairwise_distances,
    per_class_average_precision,
    retrieval_per_query,
    summarize_per_query,
)


def applies_to(dataset) -> bool:
    return base.labelled(dataset) and base.zero_shot(dataset)


def run(ctx: base.EvalContext) -> base.Result:
    return zero_shot_retrieval(ctx.inf, ctx.dataset, ctx.config)


def check(dataset, config) -> None:
    """Every cut-off (``eval.retrieval_ks``, ``eval.retrieval_map_ks``) within the gallery."""
    check_cutoffs(
        config,
        ("retrieval_ks", "retrieval_map_ks"),
        len(dataset.retrieval_y),
        "the zero-shot retrieval gallery (test photos)",
    )


def zero_shot_retrieval(inf, dataset, config) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Retrieval on the dataset's own query/gallery sets (paper §6.6, Sketchy ZS-SBIR).

    Queries ``dataset.retrieval_x`` are embedded by the marginal encoder z_x = f_x(x) (IIAE:
    the mean of r(z^s|x)), the gallery ``dataset.retrieval_y`` by f_y (r(z^s|y)); the other
    input of ``model.embed`` is zeros and its outputs are discarded. Returns the
    ``retrieval/*`` metrics and a per-class AP bar chart.
    """
    qx, gy = dataset.retrieval_x, dataset.retrieval_y
    zeros_y = np.zeros((len(qx),) + tuple(dataset.y_shape), np.float32)
    zeros_x = np.zeros((len(gy),) + tuple(dataset.x_shape), np.float32)
    zq, zg = inf.embed(qx, zeros_y), inf.embed(zeros_x, gy)
    if "z_x" not in zq or "z_y" not in zg:
        return {}, {}
    per_query = retrieval_per_query(
        zq["z_x"],
        zg["z_y"],
        dataset.retrieval_label_x,
        dataset.retrieval_label_y,
        ks=tuple(config.eval.retrieval_ks),
        metric=config.eval.retrieval_metric,
        map_ks=tuple(config.eval.get("retrieval_map_ks", ())),
    )
    metrics = {f"retrieval/{k}": v for k, v in summarize_per_query(per_query).items()}
    classes, ap = per_class_average_precision(per_query["mAP@all"], dataset.retrieval_label_x)
    names = getattr(dataset, "class_names", None)
    labels = [names[c] if names else str(c) for c in classes]
    images = {"retrieval_per_class_ap": per_class_ap_chart(labels, ap)}
    top = top_retrievals_figure(zq["z_x"], zg["z_y"], dataset, config)
    if top is not None:
        images["retrieval_top10"] = top
    return metrics, images


def top_retrievals_figure(zq, zg, dataset, config, n_queries=10, k=10):
    """Query sketches (one per test class, first column) with their top-k photos, when
    ``config.data.image_root`` holds the images: ``<image_root>/<data.sketch_subdir>/<path>``
    and ``<image_root>/<data.photo_subdir>/<path>`` for the dataset's 'class/filename'
    paths. Relevant photos get a green frame, others red. None when there are no images."""
    root = config.data.get("image_root", "")
    paths_x = getattr(dataset, "retrieval_paths_x", None)
    if not root or paths_x is None:
        return None
    from PIL import Image  # only needed for this figure

    sketch_dir = paths.path(root) / config.data.get("sketch_subdir", "sketch")
    photo_dir = paths.path(root) / config.data.get("photo_subdir", "photo")
    _, first = np.unique(dataset.retrieval_label_x, return_index=True)
    queries = np.sort(first)[:n_queries]
    dist = np.asarray(
        pairwise_distances(jnp.asarray(zq[queries]), jnp.asarray(zg), config.eval.retrieval_metric)
    )
    ranked = np.argsort(dist, axis=1, kind="stable")[:, :k]
    side = 64

    def load(folder, rel, frame=None):
        path = folder / str(rel)
        if not path.exists():
            raise FileNotFoundError(str(path))
        with path.open("rb") as f:
            img = np.asarray(Image.open(f).convert("RGB").resize((side, side)), np.uint8)
        if frame is not None:
            img = img.copy()
            img[:3], img[-3:], img[:, :3], img[:, -3:] = frame, frame, frame, frame
        return img

    try:
        rows = []
        for q, row in zip(queries, ranked):
            cells = [load(sketch_dir, paths_x[q])]
            for g in row:
                ok = dataset.retrieval_label_y[g] == dataset.retrieval_label_x[q]
                cells.append(
                    load(
                        photo_dir, dataset.retrieval_paths_y[g], (0, 160, 0) if ok else (200, 0, 0)
                    )
                )
            rows.append(np.stack(cells))
    except (FileNotFoundError, OSError) as e:
        logging.warning("No retrieval figure: cannot read image %s (config.data.image_root).", e)
        return None
    return figures.image_grid(np.stack(rows).astype(np.float32) / 127.5 - 1.0)


def per_class_ap_chart(class_names, ap) -> np.ndarray:
    """Horizontal bar chart of the per-class (plain) AP, as a uint8 RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ap = np.nan_to_num(np.asarray(ap, np.float64))
    order = np.argsort(ap)
    fig = Figure(figsize=(5, 0.22 * len(ap) + 1.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(np.arange(len(ap)), ap[order])
    ax.set_yticks(np.arange(len(ap)), [class_names[i] for i in order], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"AP (plain); mAP@all = {ap.mean():.3f}")
    ax.set_title("zero-shot retrieval: AP per test class")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


EVALUATOR = base.Evaluator("zero-shot retrieval", applies_to, run, check=check)
