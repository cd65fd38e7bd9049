"""Where a run's numbers go: TensorBoard scalars and images, ``train_metrics.jsonl`` and a
progress line with step rate and ETA. Only process 0 writes."""

from __future__ import annotations

import json
import math
import os
import time
import uuid

import numpy as np

from wyner_jax import paths


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Writes JSON to ``path`` (local or gs://) so that readers never see half a file."""
    paths.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file (as written: non-finite numbers are strings); [] when
    the file does not exist."""
    path = paths.path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class JsonLinesLog:
    """A JSON-lines log of ``{"step": ..., ...}`` records, kept in memory and rewritten whole
    (``paths.write_atomic``) at each record: ``train_metrics.jsonl`` and
    ``eval_metrics.jsonl``.

    Appending cannot work on an object store (gcsfs's ``open(path, 'a')`` rewrites the object
    with the new lines only), and rewriting also keeps a resume exact: the records after the
    restored step, which the resumed run logs again, are dropped at the start instead of
    being repeated, and a record replaces any of the same or a later step. A reader never
    sees half a line. One short line per logged step: for 1,000 logs of 40 metrics the file
    is under 2 MB, the size of a TensorBoard event file, which tensorboardX uploads whole at
    each flush too.
    """

    def __init__(self, path: str | os.PathLike, through_step: int):
        self.path = paths.path(path)
        self.records = [r for r in read_json_lines(self.path) if r["step"] <= through_step]

    def write(self, step: int, values: dict[str, float]) -> None:
        """Adds the record of ``step`` (non-finite values as strings) and rewrites the file."""
        record = {"step": int(step), **{k: json_number(v) for k, v in values.items()}}
        self.records = [r for r in self.records if r["step"] < record["step"]] + [record]
        paths.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


class MetricsWriter:
    """TensorBoard (tensorboardX, no TensorFlow needed) plus ``train_metrics.jsonl``, whose
    records after ``start_step`` (the restored checkpoint's) are dropped: the resumed run
    logs those steps again."""

    def __init__(self, workdir: str | os.PathLike, start_step: int, enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            workdir = paths.path(workdir)
            self._tb = summary_writer(workdir, flush_secs=30)
            self._jsonl = JsonLinesLog(workdir / "train_metrics.jsonl", start_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            self._tb.add_scalar(k, float(v), step)
        self._jsonl.write(step, values)

    def eval_scalars(self, step: int, metrics: dict[str, float]) -> None:
        """An evaluation's metrics as ``eval/<name>`` TensorBoard scalars (not in the jsonl log,
        which is training's: evaluations go to eval_metrics.jsonl)."""
        if self.enabled:
            _add_eval_scalars(self._tb, step, metrics)

    def image(self, step: int, tag: str, image_hwc_uint8: np.ndarray) -> None:
        if self.enabled:
            self._tb.add_image(tag, image_hwc_uint8, step, dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()


def write_eval_scalars(workdir: str, step: int, metrics: dict[str, float]) -> None:
    """The final evaluation's metrics to TensorBoard as ``eval/<name>`` at ``step`` (their own
    event file in ``<workdir>/tensorboard``, beside the training one, which is closed by
    then)."""
    with summary_writer(workdir) as tb:
        _add_eval_scalars(tb, step, metrics)


def summary_writer(workdir, **kwargs):
    """A tensorboardX writer on ``<workdir>/tensorboard`` whose event file name is its own.

    tensorboardX names the file after the second it was opened and the host
    (``events.out.tfevents.<seconds>.<host>``). Two writers opened in the same second on one
    host (training's and the final evaluation's after a short run; train.py and eval.py)
    share that name: locally the second appends to the first's file, but on gs:// it
    uploads its own content over the object and the first writer's events are gone. The
    process id and a random tag keep every writer's file apart."""
    from tensorboardX import SummaryWriter

    suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}"
    return SummaryWriter(
        logdir=str(paths.path(workdir) / "tensorboard"), filename_suffix=suffix, **kwargs
    )


def _add_eval_scalars(tb, step: int, metrics: dict[str, float]) -> None:
    for k, v in metrics.items():
        if k != "train/step":
            tb.add_scalar(f"eval/{k}", float(v), step)


def json_number(v):
    """A float for JSON; 'nan'/'inf'/'-inf' as strings (JSON has no non-finite numbers)."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


class Progress:
    """Formats 'step 400/2000 (20%) | 12.3 steps/s | ETA 2m10s | loss ...'."""

    def __init__(self, start_step: int, total_steps: int):
        self.total = total_steps
        self.last_step = start_step
        self.last_time = time.perf_counter()

    def line(self, step: int, values: dict[str, float], keys: tuple[str, ...]) -> str:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        shown = " ".join(f"{k}={values[k]:.4g}" for k in keys if k in values)
        return (
            f"step {step}/{self.total} ({100 * step / self.total:.0f}%) | {rate:.2f} steps/s | "
            f"ETA {_duration(eta)} | {shown}"
        )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def log_progress(message: str) -> None:
    """Prints a progress line or table to stdout (absl logging goes to stderr)."""
    print(message, flush=True)
