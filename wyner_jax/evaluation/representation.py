"""The learned representations of labelled pairs (wyner-model.md §6.3, §6.5).

* ``probe/z_xy``, ``probe/z_x``, ``probe/z_y``: linear softmax probe accuracy on the joint /
  marginal codes, fitted on the training pairs, scored on the test pairs (targets: the label
  of y, of x, of y);
* ``retrieval/mAP@all``, ``retrieval/mAP@all_interp``, ``retrieval/P@k``: x-queries (z_x)
  against the y-gallery (z_y) of the test set, relevant when the labels match under the
  pairing rule.

Datasets with their own query and gallery sets (zero-shot Sketchy) have disjoint train and
test classes: ``zero_shot.py`` evaluates them instead.
"""

from __future__ import annotations

from wyner_jax.evaluation import base
from wyner_jax.evaluation.coherence import add_one
from wyner_jax.evaluation.probe import linear_probe_accuracy
from wyner_jax.evaluation.retrieval import retrieval_metrics

PROBE_TARGETS = {"z_xy": "label_y", "z_x": "label_x", "z_y": "label_y"}


def target_labels(dataset, labels_x):
    """The label y should have for an x of class ``labels_x`` under the pairing rule."""
    if dataset.label_rule == "add1":
        return add_one(labels_x, dataset.num_classes)
    return labels_x


def applies_to(dataset) -> bool:
    return base.labelled(dataset) and not base.zero_shot(dataset)


def run(ctx: base.EvalContext) -> base.Result:
    dataset, config, emb_test = ctx.dataset, ctx.config, ctx.emb_test
    train, test = dataset.train, dataset.test
    metrics = {}
    for name, target in PROBE_TARGETS.items():
        if name in emb_test:
            metrics[f"probe/{name}"] = linear_probe_accuracy(
                ctx.emb_train[name],
                getattr(train, target),
                emb_test[name],
                getattr(test, target),
                dataset.num_classes,
                seed=0,
            )
    if "z_x" in emb_test and "z_y" in emb_test:
        r = retrieval_metrics(
            emb_test["z_x"],
            emb_test["z_y"],
            target_labels(dataset, test.label_x),
            test.label_y,
            ks=tuple(config.eval.retrieval_ks),
            metric=config.eval.retrieval_metric,
        )
        metrics.update({f"retrieval/{k}": float(v) for k, v in r.items()})
    return metrics, {}


def check(dataset, config) -> None:
    """Every ``eval.retrieval_ks`` cut-off must lie in [1, the test set's size]."""
    if base.instance_pairs(dataset):
        return
    check_cutoffs(
        config, ("retrieval_ks",), len(dataset.test.y), "the retrieval gallery (the test set's y)"
    )


def check_cutoffs(config, keys, gallery: int, what: str) -> None:
    """Refuses a retrieval cut-off k outside [1, ``gallery``] in any of ``config.eval.<keys>``."""
    for key in keys:
        for k in config.eval.get(key, ()):
            if not 1 <= int(k) <= gallery:
                raise ValueError(
                    f"config.eval.{key} contains k={k}, but {what} has {gallery} items, so "
                    f"P@k / mAP@k cannot be computed at the end of training; set "
                    f"--config.eval.{key} to cut-offs between 1 and {gallery}."
                )


EVALUATOR = base.Evaluator("representation", applies_to, run, check=check)
