"""How far one training run's law moves between evaluations: mean ± std of each Gaussian
metric over a run's evaluations after a given step (its ``eval_metrics.jsonl``, written with
``train.eval_every``), one row per run, with the closed forms of the runs' ρ.

  python -m wyner_jax.studies.trajectory --after=4000 runs/diag/r05_s1 runs/diag/ttur_s1

The std here is over time within one run (not over seeds, as in the study's table): an
adversarial game that oscillates has a large one even when its time average is right.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np
from absl import app, flags

from wyner_jax.evaluation import periodic
from wyner_jax.metrics_writer import log_progress
from wyner_jax.studies.gaussian import CHECKS, KEYS, SHORT


def trajectory_stats(run_dir: str, after: int) -> dict:
    """{metric: (mean, std, n)} over the evaluations of ``run_dir`` at steps > ``after``."""
    records = [r for r in periodic.read_log(run_dir) if r["step"] > after]
    if not records:
        raise ValueError(
            f"{run_dir} has no evaluation after step {after} in {periodic.EVAL_LOG}; train "
            "with --config.train.eval_every=<steps> or pass a smaller --after."
        )
    out = {}
    for key in KEYS:
        values = np.array([r[key] for r in records if key in r], np.float64)
        if len(values):
            out[key] = (float(values.mean()), float(values.std()), len(values))
    return out


def format_markdown(rows: Sequence[tuple[str, dict]], rho: float | None) -> str:
    keys = [k for k in KEYS if any(k in stats for _, stats in rows)]
    lines = [
        "| run | evaluations | " + " | ".join(SHORT[k] for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    if rho is not None:
        closed = {k: f(rho) for k, f, *_ in CHECKS}
        cells = [f"{closed[k]:.3f}" if k in closed else "" for k in keys]
        lines.append(f"| **closed form** (ρ = {rho:g}) | | " + " | ".join(cells) + " |")
    for name, stats in rows:
        n = max(s[2] for s in stats.values())
        cells = [f"{stats[k][0]:.2f} ± {stats[k][1]:.2f}" if k in stats else "–" for k in keys]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_rho(run_dir: str) -> float | None:
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return float(json.load(f)["data"]["rho"])


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("after", 0, "Use the evaluations at steps after this one.")


def main(argv):
    runs = argv[1:]
    try:
        if not runs:
            raise ValueError("Name at least one run directory (with eval_metrics.jsonl).")
        rhos = {run_rho(r) for r in runs}
        rho = rhos.pop() if len(rhos) == 1 else None  # a closed-form row only for one ρ
        rows = [
            (os.path.basename(os.path.normpath(r)), trajectory_stats(r, FLAGS.after)) for r in runs
        ]
        log_progress(format_markdown(rows, rho))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
