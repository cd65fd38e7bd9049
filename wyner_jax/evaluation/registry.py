"""Every evaluator, in the order ``runner.evaluate`` runs them. Adding a family of metrics
is one module with an ``Evaluator`` (``evaluation/base.py``) and one line here."""

from __future__ import annotations

from wyner_jax.evaluation import (
    caption_eval,
    gaussian_eval,
    generation,
    instance_retrieval,
    representation,
    view_eval,
    zero_shot,
)
from wyner_jax.evaluation.base import Evaluator

EVALUATORS: tuple[Evaluator, ...] = (
    representation.EVALUATOR,  # probes, retrieval by class
    zero_shot.EVALUATOR,  # Sketchy's own query and gallery sets
    instance_retrieval.EVALUATOR,  # pair Recall@k on instance-paired images
    view_eval.EVALUATOR,  # Cars: same-car retrieval, azimuth probes
    caption_eval.EVALUATOR,  # CUB: CCA scores, caption samples
    generation.EVALUATOR,  # classifiers, coherence, Fréchet distances
    gaussian_eval.EVALUATOR,  # closed forms of Gaussian pairs
)


def applicable(dataset) -> list[Evaluator]:
    return [e for e in EVALUATORS if e.applies_to(dataset)]


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` improves downwards (its evaluator says so); others improve upwards."""
    return any(metric.startswith(e.lower_is_better) for e in EVALUATORS if e.lower_is_better)
