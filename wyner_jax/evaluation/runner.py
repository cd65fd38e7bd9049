"""Runs every evaluator that applies to a trained model and dataset, and writes the results.

The evaluators and their metrics are listed in ``evaluation/registry.py``; each module says
what its metrics mean (all in ``metrics.json``): ``representation`` (probes, retrieval by
class), ``zero_shot`` (Sketchy), ``instance_retrieval``, ``view_eval`` (Cars),
``caption_eval`` (CUB), ``generation`` (classifiers, coherence, Fréchet distances) and
``gaussian_eval`` (closed forms).

Evaluation uses ``model.eval_variables(state)`` (the EMA generator for the Wyner model) and
the model's inference methods (``evaluation/inference.py``), batched by
``config.eval.batch_size``: with BatchNorm on batch statistics at evaluation (the
reference's behaviour) the batch size matters, so it defaults to the training batch size.
Here too: the sample figures (joint samples, translations, reconstructions) and the writing
of metrics.json, figures/ and TensorBoard scalars.
"""

from __future__ import annotations

import jax
import numpy as np

from wyner_jax import paths
from wyner_jax.evaluation import base, figures, registry, translation_figures

from wyner_jax.evaluation.inference import EVAL_SEED, Inference, batched  # noqa: F401
from wyner_jax.metrics_writer import log_progress, write_eval_scalars, write_json_atomic

# Re-exported: callers and tests that measure with the evaluation's own instruments.
from wyner_jax.evaluation.generation import frechet_metrics  # noqa: F401,E402


def check_evaluation_settings(dataset, config) -> None:
    """Refuses, before training, evaluation settings the data cannot satisfy (so a run does
    not train to the end and then lose its evaluation): each applicable evaluator's check."""
    for evaluator in registry.applicable(dataset):
        if evaluator.check is not None:
            evaluator.check(dataset, config)


def evaluate(
    model, state, dataset, config, extras: dict | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Computes every applicable metric; returns (metrics, figure images). Other outputs
    (caption data: ``samples``, written to samples.json) go into ``extras`` when given."""
    ctx = base.EvalContext(model, state, dataset, config)
    metrics: dict[str, float] = {}
    extra_images = {}
    for evaluator in registry.applicable(dataset):
        m, images = evaluator.run(ctx)
        metrics.update(m)
        extra_images.update(images)
    if extras is not None:
        extras.update(ctx.extras)
    metrics = {k: float(v) for k, v in metrics.items()}
    images = make_figures(ctx.inf, dataset, config, ctx.gen, ctx.k_fig)
    images.update(extra_images)
    return metrics, images


# --------------------------------------------------------------------------- figures


def _as_images(arr, dataset, side):
    """Data rows as HWC images for grids, or None for non-image vectors."""
    shape = getattr(dataset, f"{side}_image_shape")
    arr = np.asarray(arr)
    if arr.ndim == 4:
        return arr
    if shape is not None:
        return arr.reshape((arr.shape[0],) + tuple(shape))
    return None


def figure_rows(dataset, rows: int) -> np.ndarray:
    """Test rows for the x→y / y→x / reconstruction grids: the dataset's own choice when it
    has one (``dataset.figure_rows``, e.g. Cars: different cars and azimuths); else the first
    pair of each class first (pairs are stored class by class, so the first rows would all
    show one digit), then the remaining rows in order; just the first rows for unlabelled
    data."""
    if hasattr(dataset, "figure_rows"):
        return np.asarray(dataset.figure_rows(rows))
    test = dataset.test
    n = min(rows, len(test.x))
    first = np.unique(np.asarray(test.label_x), return_index=True)[1]
    if len(first) < 2:
        return np.arange(n)
    rest = np.setdiff1d(np.arange(len(test.x)), first)
    return np.concatenate([np.sort(first), rest])[:n]


def make_figures(inf, dataset, config, gen, key) -> dict[str, np.ndarray]:
    """Grids as uint8 HWC images: joint samples, x→y (rows: input then samples), recons.

    When one side is gray and the other RGB (MNIST–SVHN), gray images are shown as RGB."""
    rows, cols = int(config.eval.grid_rows), int(config.eval.grid_cols)
    test = dataset.test
    out = {}
    xs = _as_images(test.x[:1], dataset, "x")
    ys = _as_images(test.y[:1], dataset, "y")
    if xs is None or ys is None or xs.shape[1:3] != ys.shape[1:3]:
        return out  # vector data: evaluate_and_write draws a scatter plot instead
    channels = {xs.shape[-1], ys.shape[-1]}
    if len(channels) > 1 and channels != {1, 3}:
        return out
    as_images = _as_images
    if channels == {1, 3}:

        def as_images(arr, dataset, side):
            images = _as_images(arr, dataset, side)
            return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images

    pick = figure_rows(dataset, rows)
    if "joint" in gen:
        jx = as_images(gen["joint"][0][: rows * cols // 2], dataset, "x")
        jy = as_images(gen["joint"][1][: rows * cols // 2], dataset, "y")
        pairs = np.stack([jx, jy], 1).reshape((rows, cols) + jx.shape[1:])
        out["joint_samples"] = figures.image_grid(pairs)
    for direction, src, side_in, side_out, fn in (
        ("x2y", test.x, "x", "y", inf.x2y),
        ("y2x", test.y, "y", "x", inf.y2x),
    ):
        if direction not in inf.caps:
            continue
        inputs = src[pick]
        samples = [
            as_images(fn(inputs, jax.random.fold_in(key, c)), dataset, side_out)
            for c in range(cols - 1)
        ]
        grid = np.stack([as_images(inputs, dataset, side_in)] + samples, 1)
        out[f"{direction}_grid"] = figures.image_grid(grid)
    for direction, src, dst, side_out in (
        ("x2y", test.x, test.y, "y"),
        ("y2x", test.y, test.x, "x"),
    ):
        # Translation with the exclusive code of other items (iiae.md §5.4): needs HWC image
        # data (not flattened) of one shape on both sides.
        images = dataset.x_shape == dataset.y_shape and len(dataset.x_shape) == 3
        if not inf.has(f"translate_{direction}_style") or not images:
            continue
        styles = dst[pick[: max(1, cols - 2)]]
        grid = translation_figures.style_grid(
            lambda a, b, d=direction: inf.call(f"translate_{d}_style", a, b),
            src[pick],
            as_images(dst[pick], dataset, side_out),
            as_images(styles, dataset, side_out),
        )
        out[f"{direction}_style_grid"] = figures.image_grid(grid)
    if "reconstruct" in inf.caps:
        rx, ry = inf.reconstruct(test.x[pick], test.y[pick])
        grid = np.stack(
            [
                as_images(test.x[pick], dataset, "x"),
                as_images(rx, dataset, "x"),
                as_images(test.y[pick], dataset, "y"),
                as_images(ry, dataset, "y"),
            ],
            1,
        )
        out["reconstructions"] = figures.image_grid(grid)
    return out


def write_figures(workdir, images) -> None:
    """``<workdir>/figures/<name>.png`` of each image (local or gs://)."""
    fig_dir = paths.path(workdir) / "figures"
    for name, img in images.items():
        figures.save_png(fig_dir / f"{name}.png", img)


def log_image_grids(model, state, dataset, config, writer, step) -> None:
    """TensorBoard image grids during training (cheap: a few batches)."""
    inf = Inference(model, state, config)
    gen = {}
    key = jax.random.PRNGKey(EVAL_SEED + step)
    if "joint" in inf.caps:
        gen["joint"] = inf.joint(config.eval.grid_rows * config.eval.grid_cols // 2, key)
    for name, img in make_figures(inf, dataset, config, gen, key).items():
        writer.image(step, f"samples/{name}", img)


def format_table(metrics: dict[str, float]) -> str:
    width = max((len(k) for k in metrics), default=10)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())]
    return "\n".join(lines)


def evaluate_and_write(
    model, state, dataset, config, workdir, tensorboard: bool = True
) -> dict[str, float]:
    """Evaluates, writes metrics.json and figures/*.png (process 0), prints the table; with
    ``tensorboard``, also the ``eval/<name>`` scalars into ``workdir/tensorboard``."""
    extras = {}
    metrics, images = evaluate(model, state, dataset, config, extras)
    metrics["train/step"] = float(jax.device_get(state.step))
    if jax.process_index() == 0:
        workdir = paths.path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://
        write_figures(workdir, images)
        if base.gaussian_pairs(dataset) and "x2y" in model.capabilities(state):
            inf = Inference(model, state, config)
            n = min(2000, len(dataset.test.x))
            y_gen = inf.x2y(dataset.test.x[:n], jax.random.PRNGKey(EVAL_SEED))
            figures.scatter_plot(
                workdir / "figures" / "x2y_scatter.png",
                dataset.test.x[:n, 0],
                y_gen[:n, 0],
                title="generated y vs x (first coordinate)",
            )
        write_json_atomic(workdir / "metrics.json", metrics)
        if tensorboard:
            write_eval_scalars(workdir, int(metrics["train/step"]), metrics)
        if "samples" in extras:
            write_json_atomic(workdir / "samples.json", extras["samples"])
        log_progress(format_table(metrics))
    return metrics
