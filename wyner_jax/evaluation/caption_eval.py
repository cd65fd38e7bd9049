"""Evaluation of the image-feature ↔ caption pair (CUB): CCA scores, caption samples, figure.

* ``cca/ground_truth``, ``cca/x2y``, ``cca/y2x``, ``cca/joint`` (`wyner_jax.evaluation.cca`),
  plus ``cca/top_correlation``, the first canonical correlation of the fitted CCA;
* ``samples.json`` (beside metrics.json): for a few test images spread over the test set,
  their real captions and captions generated from the image feature (x → y); captions of
  joint samples (x, y) ~ p(x, y);
* ``figures/x2y_captions.png``: the same as a text table (image, one real caption, the
  generated ones).

The fitted instrument (word vectors, SIF, CCA) depends only on the training data and the
``config.eval.cca_*`` settings, so it is fitted once per process and data config.
"""

from __future__ import annotations

import textwrap

import jax
import numpy as np

from wyner_jax.data import captions as cap
from wyner_jax.evaluation import base
from wyner_jax.evaluation.cca import CaptionCCA, cca_metrics

_INSTRUMENTS: dict = {}
GENERATED_PER_IMAGE = 3


def caption_instrument(dataset, config) -> CaptionCCA:
    """The CCA instrument fitted on the training pairs (cached per data config and settings)."""
    e = config.eval
    settings = (
        int(e.get("cca_dim", 40)),
        int(e.get("cca_word_dim", 300)),
        float(e.get("cca_eps", 1e-12)),
        str(e.get("cca_normalization", "unit_norm")),
    )
    key = (config.data.to_json(sort_keys=True), settings)
    if key not in _INSTRUMENTS:
        k, word_dim, eps, normalization = settings
        _INSTRUMENTS[key] = CaptionCCA.fit(
            dataset, k=k, word_dim=word_dim, eps=eps, normalization=normalization
        )
    return _INSTRUMENTS[key]


def sample_rows(dataset, n: int) -> np.ndarray:
    """Test rows of the first caption of n test images spread evenly over the test set."""
    k = dataset.captions_per_image
    n_images = len(dataset.test) // k
    images = np.unique(np.linspace(0, n_images - 1, min(n, n_images)).round().astype(int))
    return images * k


def caption_samples(inf, dataset, config, gen, key) -> dict:
    """The content of samples.json (see the module docstring)."""
    vocab, k = dataset.vocab, dataset.captions_per_image
    rows = sample_rows(dataset, int(config.eval.get("caption_samples", 12)))
    generated = []
    if "x2y" in inf.caps:
        inputs = dataset.test.x[rows]
        generated = [
            inf.x2y(inputs, jax.random.fold_in(key, c)) for c in range(GENERATED_PER_IMAGE)
        ]
    paths = dataset.test_image_paths
    entries = []
    for i, row in enumerate(rows):
        image = int(row // k)
        entries.append(
            {
                "test_image": image,
                "image_path": paths[image] if paths else None,
                "real": list(dataset.test_captions[image * k : (image + 1) * k]),
                "generated": [cap.decode(g[i], vocab) for g in generated],
            }
        )
    out = {"x2y": entries, "vocab_size": len(vocab)}
    if "joint" in gen:
        out["joint"] = [cap.decode(t, vocab) for t in gen["joint"][1][: len(rows)]]
    return out


def captions_table(samples: dict, width: int = 52) -> np.ndarray:
    """The x → y samples as a text table (uint8 RGB): image, a real caption, the generated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = samples["x2y"]
    n_gen = max((len(e["generated"]) for e in entries), default=0)
    header = ["test image", "real caption"] + [f"generated {j + 1}" for j in range(n_gen)]
    wrap = lambda s, w=width: "\n".join(textwrap.wrap(s, w)) or " "  # noqa: E731
    cells = [
        [wrap(e["image_path"] or f"#{e['test_image']}", 24), wrap(e["real"][0])]
        + [wrap(g) for g in e["generated"]]
        + [" "] * (n_gen - len(e["generated"]))
        for e in entries
    ]
    lines = [max(c.count("\n") + 1 for c in row) for row in cells]
    height = 0.6 + 0.17 * (sum(lines) + len(lines) + 1)
    fig = Figure(figsize=(3.2 + 4.2 * (n_gen + 1), height), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.005, 0.005, 0.99, 1.0 - 0.45 / height))  # the table fills the figure
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=header, bbox=(0, 0, 1, 1), cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    total = sum(lines) + len(lines) + 1
    for (r, c), cell in table.get_celld().items():
        cell.set_height((1.0 if r == 0 else lines[r - 1] + 1) / total)
        cell.set_width((0.16 if c == 0 else 0.84 / (n_gen + 1)))
        if r == 0:
            cell.set_text_props(weight="bold")
    ax.set_title("captions generated from test image features (x → y)", fontsize=10)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def evaluate_captions(inf, dataset, config, gen, key):
    """Returns (metrics, figure images, samples.json content)."""
    metrics = cca_metrics(caption_instrument(dataset, config), dataset, gen)
    samples = caption_samples(inf, dataset, config, gen, key)
    images = {"x2y_captions": captions_table(samples)} if samples["x2y"] else {}
    return metrics, images, samples


def run(ctx) -> tuple[dict[str, float], dict]:
    """The CCA metrics and caption table; the samples go to ``ctx.extras['samples']``
    (written as samples.json)."""
    metrics, images, samples = evaluate_captions(
        ctx.inf, ctx.dataset, ctx.config, ctx.gen, ctx.k_fig
    )
    ctx.extras["samples"] = samples
    return metrics, images


EVALUATOR = base.Evaluator("captions", base.captions, run)
