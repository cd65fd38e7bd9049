"""Generation on labelled image pairs, judged by evaluation classifiers (wyner-model.md
§6.2, §6.4).

* ``classifier/x_acc``, ``classifier/y_acc``: test accuracy of the evaluation classifiers;
* ``coherence/x2y``: share of generated y ~ p(y|x) classified as the label the pairing rule
  gives x (add-1: label(x)+1 mod 10); ``coherence/y2x`` the converse; ``coherence/joint``
  share of joint samples (x, y) ~ p(x, y) whose labels obey the rule;
* ``fd/x``, ``fd/y``: Fréchet distance between joint samples x (y) ~ p(x, y) and the real
  test images of that domain; ``fd/x2y``: class-conditional Fréchet distance between the
  generated y ~ p(y|x) of every test pair and the real test y of the target class, mean over
  classes (§6.4, one sample per test pair instead of 32 references × 2,048 samples);
  ``fd/y2x`` the converse. Features: the evaluation classifiers' penultimate activations, so
  the values are **not comparable with Inception FID** nor with the reference's tables, only
  between runs with the same classifiers (lower is better).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from wyner_jax.evaluation import base
from wyner_jax.evaluation.classifier import train_image_classifier
from wyner_jax.evaluation.coherence import coherence
from wyner_jax.evaluation.frechet import conditional_frechet_distance, frechet_distance
from wyner_jax.evaluation.representation import target_labels


def applies_to(dataset) -> bool:
    return base.labelled(dataset) and bool(dataset.domains)


def run(ctx: base.EvalContext) -> base.Result:
    dataset, gen, test = ctx.dataset, ctx.gen, ctx.dataset.test
    clf = classifiers(dataset, ctx.config)
    metrics = {
        "classifier/x_acc": float(clf["x"].test_accuracy),
        "classifier/y_acc": float(clf["y"].test_accuracy),
    }
    if "x2y" in gen:
        metrics["coherence/x2y"] = coherence(predict(clf["y"], gen["x2y"]), test.label_y)
    if "y2x" in gen:
        metrics["coherence/y2x"] = coherence(predict(clf["x"], gen["y2x"]), test.label_x)
    if "joint" in gen:
        lx, ly = predict(clf["x"], gen["joint"][0]), predict(clf["y"], gen["joint"][1])
        metrics["coherence/joint"] = coherence(ly, target_labels(dataset, lx))
    metrics.update(frechet_metrics(dataset, clf, gen, test))
    return metrics, {}


# Trained classifiers of this process: training one is the slowest part of a small
# evaluation, and several runs in one process (e.g. ``wyner_jax.compare``) share them. The
# key is the data config itself, so a rebuilt dataset with the same config hits the cache.
_CLASSIFIERS: dict = {}


def classifier_settings(config) -> dict:
    """``train_image_classifier`` keyword arguments from ``config.eval`` (defaults for configs
    written before the width / batch / learning-rate keys existed)."""
    e = config.eval
    return dict(
        steps=int(e.classifier_steps),
        features=tuple(int(f) for f in e.get("classifier_features", (16, 32))),
        hidden=int(e.get("classifier_hidden", 64)),
        batch_size=int(e.get("classifier_batch_size", 64)),
        learning_rate=float(e.get("classifier_learning_rate", 2e-3)),
    )


def classifiers(dataset, config):
    """Evaluation classifiers for x and y (trained once when both sides share a domain).

    Datasets that name a cache folder and their domains' images (``cache_dir`` and
    ``domain_keys``, e.g. MNIST / SVHN from TFDS) keep the trained classifiers on disk there,
    so every run and every evaluation of that data uses the same instrument.
    """
    out = {}
    settings = classifier_settings(config)
    data_key = config.data.to_json(sort_keys=True)
    cache_dir = getattr(dataset, "cache_dir", "") or None
    domain_keys = getattr(dataset, "domain_keys", {}) or {}
    for side in ("x", "y"):
        domain = dataset.domains[side]
        shared = dataset.domains["x"] is dataset.domains["y"]
        key = (data_key, "xy" if shared else side, tuple(sorted(settings.items())))
        if key not in _CLASSIFIERS:
            _CLASSIFIERS[key] = train_image_classifier(
                domain,
                dataset.num_classes,
                seed=0,
                image_shape=getattr(dataset, f"{side}_image_shape"),
                cache_dir=cache_dir if side in domain_keys else None,
                cache_key=domain_keys.get(side, ""),
                **settings,
            )
        out[side] = _CLASSIFIERS[key]
    return out


def frechet_metrics(dataset, clf, gen, test) -> dict[str, float]:
    """``fd/x``, ``fd/y``, ``fd/x2y``, ``fd/y2x`` on the classifiers' penultimate features.

    Real sets are the domains' test images (``Domain.test_images``); joint samples are
    compared with them as a whole, conditional samples per target class (the label the
    pairing rule gives the condition), averaged over classes. A distance that cannot be
    computed (fewer than 2 samples of a class) is left out with a warning.
    """
    if clf["x"].features is None or clf["y"].features is None:
        return {}
    dom = dataset.domains
    real = {s: clf[s].features(dom[s].test_images) for s in ("x", "y")}
    real_labels = {s: np.asarray(dom[s].test_labels) for s in ("x", "y")}
    jobs = {}
    if "joint" in gen:
        jobs["fd/x"] = lambda: frechet_distance(clf["x"].features(gen["joint"][0]), real["x"])
        jobs["fd/y"] = lambda: frechet_distance(clf["y"].features(gen["joint"][1]), real["y"])
    for direction, out_side, target in (("x2y", "y", test.label_y), ("y2x", "x", test.label_x)):
        if direction in gen:
            jobs[f"fd/{direction}"] = lambda d=direction, o=out_side, t=target: (
                conditional_frechet_distance(
                    real[o], real_labels[o], clf[o].features(gen[d]), t, dataset.num_classes
                )
            )
    metrics = {}
    for name, job in jobs.items():
        try:
            metrics[name] = float(job())
        except ValueError as e:
            logging.warning("No %s: %s", name, e)
    return metrics


def predict(clf, images, batch_size=512):
    return np.concatenate(
        [
            np.argmax(np.asarray(clf.apply(images[i : i + batch_size])), -1)
            for i in range(0, len(images), batch_size)
        ]
    )


EVALUATOR = base.Evaluator("generation", applies_to, run, lower_is_better=("fd/",))
