"""Which way each metric improves: read by the comparison table, the sweep and the best
checkpoint (``eval.best_metric`` with ``eval.best_mode='auto'``)."""

from __future__ import annotations

# Metrics where lower is better: distances, and the checks that a code does NOT carry
# something (the exclusive codes' cross-domain retrieval, the shared code's azimuth).
LOWER_IS_BETTER = ("fd/", "retrieval/R@1_excl_", "probe/azimuth_from_shared")


def lower_is_better(metric: str) -> bool:
    return metric.startswith(LOWER_IS_BETTER)


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
