"""Evaluation during training (``train.eval_every``) and the best checkpoint
(``eval.best_metric``).

Every evaluation (the periodic ones and the final one) becomes a line of
``<workdir>/eval_metrics.jsonl`` (``{"step": ..., <metric>: ...}``) and ``eval/<metric>``
TensorBoard scalars. With ``eval.best_metric`` set, the state of the best evaluation so far
is kept in ``<workdir>/best_checkpoint`` (one checkpoint, apart from the latest
``train.keep_checkpoints`` in ``checkpoints/``); ``python eval.py --workdir=DIR --which=best``
evaluates it.

None of the datasets here has a validation split (the reference protocols evaluate on the
test split), so the best checkpoint is chosen on the test metrics, as the reference Wyner code
selects its epoch (``--ref-value-key``, wyner-model.md §3.4): a diagnostic, not an unbiased
result. ``metrics.json`` is always the latest checkpoint's.
"""

from __future__ import annotations

import math
import os

import jax

from wyner_jax import checkpointing, paths
from wyner_jax.evaluation.direction import best_mode
from wyner_jax.metrics_writer import JsonLinesLog, read_json_lines

EVAL_LOG = "eval_metrics.jsonl"
BEST_DIR = "best_checkpoint"


def check_settings(config) -> None:
    """Refuses, before training, periodic-evaluation settings that cannot work."""
    every = config.train.eval_every
    if not isinstance(every, int) or every < 0:
        raise ValueError(
            f"config.train.eval_every must be 0 (off) or a positive number of steps, got "
            f"{every!r}; set --config.train.eval_every=0 or e.g. 500."
        )
    metric = config.eval.best_metric
    if metric:
        best_mode(metric, config.eval.best_mode)
        if every == 0 and not config.train.evaluate_at_end:
            raise ValueError(
                f"config.eval.best_metric={metric!r} needs evaluations to choose from; set "
                "--config.train.eval_every (e.g. 500) or leave train.evaluate_at_end on."
            )


def read_log(workdir: str | os.PathLike) -> list[dict]:
    """The records of ``eval_metrics.jsonl`` (non-finite values come back as floats)."""
    records = read_json_lines(paths.path(workdir) / EVAL_LOG)
    return [{k: float(v) if isinstance(v, str) else v for k, v in r.items()} for r in records]


class EvalRecorder:
    """Keeps ``eval_metrics.jsonl`` and the best checkpoint of one run.

    The log is a ``JsonLinesLog``, rewritten whole at each record: a resumed run drops the
    records after its restored step instead of repeating them. All processes call ``record``
    (the checkpoint save is collective); only process 0 reads and writes the log.
    """

    def __init__(
        self, config, workdir: str | os.PathLike, start_step: int, fingerprint: dict | None = None
    ):
        workdir = paths.path(workdir)
        self.log = (
            JsonLinesLog(workdir / EVAL_LOG, start_step) if jax.process_index() == 0 else None
        )
        self.metric = config.eval.best_metric
        self.best = None
        if self.metric:
            self.mode = best_mode(self.metric, config.eval.best_mode)
            self.best = checkpointing.Checkpointer(
                workdir / BEST_DIR, keep=1, fingerprint=fingerprint
            )
            meta = self.best.latest_meta()
            self.best_value = meta.get("best_value")
            self.best_step = meta.get("step")

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def record(self, step: int, metrics: dict[str, float], state=None) -> None:
        """Logs the metrics of ``step``; saves ``state`` as the best when it beats the best."""
        values = {k: float(v) for k, v in metrics.items() if k != "train/step"}
        if self.log is not None:
            self.log.write(step, values)
        if self.best is None or state is None:
            return
        if self.metric not in values:
            raise ValueError(
                f"config.eval.best_metric={self.metric!r} is not a metric of this evaluation; "
                f"it produced: {', '.join(sorted(values))}."
            )
        value = values[self.metric]
        if self.is_better(value):
            extra = {"best_metric": self.metric, "best_value": value}
            self.best.save(step, state, force=True, extra=extra)
            self.best_value, self.best_step = value, int(step)

    def close(self) -> None:
        if self.best is not None:
            self.best.close()
