"""Which way each metric improves: read by the comparison table, the sweep and the best
checkpoint (``eval.best_metric`` with ``eval.best_mode='auto'``). Each evaluator declares
its own lower-is-better metrics (``evaluation/registry.py``)."""

from __future__ import annotations

from wyner_jax.evaluation.registry import lower_is_better

__all__ = ["best_mode", "lower_is_better"]


def best_mode(metric: str, mode: str) -> str:
    """'max' or 'min' for ``eval.best_mode`` ('auto' reads the metric's direction)."""
    if mode not in ("auto", "max", "min"):
        raise ValueError(
            f"config.eval.best_mode must be 'auto', 'max' or 'min', got {mode!r}; set "
            "--config.eval.best_mode=auto (the metric's own direction)."
        )
    if mode != "auto":
        return mode
    return "min" if lower_is_better(metric) else "max"
