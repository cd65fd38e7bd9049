"""The λ_CI sweep: one training per (λ, seed) of the Wyner CI weight, then a table and a plot
of what the representation and the generations gain or lose as λ grows (the trade-off the
paper shows for MNIST-SVHN / Add1; results-anchors.md §1.2).

  python -m wyner_jax.sweep --config=configs/digits_add1.py --lambdas=0,0.03,0.1,0.3,1 \\
      --workdir=runs/sweep [--seeds=1,2] [--config.train.num_steps=1000]

Every ``--config.*`` override applies to every run. Run (λ, s) sets
``config.loss.lambdas.<--lambda_key> = λ`` (default ``var_ci``, the λ_CI of the variational
model's I(X,Y;Z) penalty, §2.4) and ``config.seed = s``, and trains with
``trainer.train_and_evaluate`` in ``<workdir>/lambda_<λ>_seed_<s>``. Re-running the same
command reuses every finished run (its ``metrics.json`` and ``config.json`` match the
requested config) and resumes unfinished ones from their checkpoints.

Outputs in ``--workdir``: ``sweep.json`` (every run's metrics and the per-λ mean/std),
``sweep.csv`` (one row per λ), ``sweep.md`` and ``sweep.png``; the table is also printed.

The CI estimate column is a *training* diagnostic, not an evaluation: ``gen/var_ci`` is the
mean logit of the CI discriminator on q(x,y,z) samples, the plug-in estimate of I(X,Y;Z) in
nats that the λ_CI term penalises (``losses.ci_penalty``), averaged over the last
``--ci_last`` logged training steps of ``train_metrics.jsonl``. Its discriminator is trained
even at λ = 0 (reference behaviour, wyner-model.md §7 item 4), so every row has one.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX starts: see wyner_jax/allocator.py
    from wyner_jax import allocator

    allocator.use_caching_allocator()

import copy
import csv
import io
import json
import math
import time
from typing import Sequence

import numpy as np
from absl import app, flags, logging

from wyner_jax import cli, paths
from wyner_jax.evaluation import figures
from wyner_jax.metrics_writer import log_progress, read_json_lines, write_json_atomic

# Evaluation metrics shown per λ (all "higher is better"), in table order. Fréchet distances
# ("fd/...", lower is better) are added when the evaluation produces them.
METRICS = (
    "coherence/x2y",
    "coherence/y2x",
    "coherence/joint",
    "probe/z_xy",
    "probe/z_x",
    "probe/z_y",
    "retrieval/mAP@all",
)
EXTRA_PREFIXES = ("fd/",)
MISSING = "–"


# --------------------------------------------------------------------------- inputs


def parse_lambdas(values: Sequence[str] | str | None) -> list[float]:
    """'0,0.03,0.1' (or its list) → [0.0, 0.03, 0.1]; rejects empty, non-numeric, negative,
    non-finite and repeated values."""
    if isinstance(values, str):
        values = values.split(",")
    items = [str(v).strip() for v in (values or []) if str(v).strip()]
    if not items:
        raise ValueError(
            "--lambdas is empty; pass the λ values to sweep as a comma-separated list, e.g. "
            "--lambdas=0,0.03,0.1,0.3,1."
        )
    out = []
    for item in items:
        try:
            lam = float(item)
        except ValueError:
            raise ValueError(
                f"--lambdas has {item!r}, which is not a number; pass numbers such as "
                "--lambdas=0,0.1,1."
            ) from None
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(
                f"--lambdas has {item!r}; every λ must be a finite number >= 0 (a negative "
                "λ would drop the CI term and its estimator altogether, wyner-model.md §7 "
                "item 4)."
            )
        out.append(lam)
    names = [lambda_name(v) for v in out]
    if len(set(names)) != len(names):
        raise ValueError(f"--lambdas repeats a value ({', '.join(items)}); list each λ once.")
    return out


def parse_seeds(values: Sequence[str] | None, default: int) -> list[int]:
    """--seeds as ints; none given → [config.seed]."""
    if values is None:
        return [int(default)]
    items = [str(v).strip() for v in values if str(v).strip()]
    if not items:
        raise ValueError("--seeds is empty; pass seeds such as --seeds=1,2, or leave it out.")
    try:
        seeds = [int(v) for v in items]
    except ValueError:
        raise ValueError(f"--seeds must be integers, got {','.join(items)}.") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a value ({','.join(items)}); list each seed once.")
    return seeds


def lambda_name(lam: float) -> str:
    """The λ as written in directory names and tables: 0, 0.03, 1, 1e-05."""
    return f"{lam:g}"


def run_dir_name(lam: float, seed: int) -> str:
    return f"lambda_{lambda_name(lam)}_seed_{seed}"


def default_ci_metric(lambda_key: str) -> str:
    """The training metric holding the estimate a CI weight penalises: ``gen/<key>`` for the
    CI terms (var_ci, j_ci, cx2y_ci, cy2x_ci), else the variational one, ``gen/var_ci``."""
    return f"gen/{lambda_key}" if lambda_key.endswith("_ci") else "gen/var_ci"


def run_config(config, lambda_key: str, lam: float, seed: int):
    """A copy of ``config`` with ``loss.lambdas.<lambda_key> = lam`` and ``seed = seed``."""
    if lambda_key not in config.loss.lambdas:
        raise ValueError(
            f"--lambda_key={lambda_key!r} is not a loss weight of this config; choose one of "
            f"{', '.join(sorted(config.loss.lambdas))}."
        )
    cfg = copy.deepcopy(config)
    with cfg.unlocked():
        cfg.loss.lambdas[lambda_key] = float(lam)
        cfg.seed = int(seed)
    return cfg


# --------------------------------------------------------------------------- per-run numbers


def ci_estimate(workdir: str, metric: str, last: int) -> float | None:
    """Mean of ``metric`` over the last ``last`` logged steps of ``train_metrics.jsonl``
    (a step logged twice, after a resume, counts once: its latest record). None if absent."""
    by_step = {}
    for record in read_json_lines(paths.path(workdir) / "train_metrics.jsonl"):
        if metric in record:
            by_step[int(record["step"])] = float(record[metric])  # "nan" strings too
    if not by_step:
        return None
    values = [by_step[s] for s in sorted(by_step)[-last:]]
    return float(np.mean(values))


def finished_metrics(run_dir: str, cfg) -> dict | None:
    """The run's metrics.json if it belongs to exactly this config and step count, else None."""
    metrics_path = paths.path(run_dir) / "metrics.json"
    config_path = paths.path(run_dir) / "config.json"
    if not (metrics_path.is_file() and config_path.is_file()):
        return None
    saved = json.loads(config_path.read_text())
    if saved != json.loads(cfg.to_json_best_effort()):
        return None  # another config in this directory: train_and_evaluate decides
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("train/step") != float(cfg.train.num_steps):
        return None
    return metrics


# --------------------------------------------------------------------------- aggregation


def metric_keys(runs: Sequence[dict]) -> list[str]:
    """METRICS, then any Fréchet distance the evaluation reported, in sorted order."""
    extra = sorted({k for m in runs for k in m if k.startswith(EXTRA_PREFIXES)})
    return list(METRICS) + extra


def aggregate(per_seed: Sequence[dict], keys: Sequence[str]) -> dict[str, dict]:
    """Mean, sample std (ddof=1; None with one value) and count of each key over the seeds
    that report it (None mean when none does)."""
    out = {}
    for k in keys:
        values = [float(m[k]) for m in per_seed if m.get(k) is not None]
        out[k] = {
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values),
        }
    return out


def _cell(stats: dict, several: bool) -> str:
    if stats["mean"] is None:
        return MISSING
    text = f"{stats['mean']:.3f}"
    if several and stats["std"] is not None:
        text += f" ± {stats['std']:.3f}"
    return text


def format_markdown(rows: Sequence[dict], keys: Sequence[str], ci_label: str) -> str:
    """One row per λ: mean (± std over seeds when several) of each metric and the CI estimate."""
    several = any(r["n_seeds"] > 1 for r in rows)
    header = ["λ", "seeds", *keys, ci_label]
    lines = ["| " + " | ".join(header) + " |", "|---:|---:|" + "---:|" * (len(keys) + 1)]
    for r in rows:
        cells = [lambda_name(r["lambda"]), str(r["n_seeds"])]
        cells += [_cell(r["stats"][k], several) for k in [*keys, "ci_estimate"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: str, rows: Sequence[dict], keys: Sequence[str]) -> None:
    """One row per λ: lambda, n_seeds, <metric>_mean [, <metric>_std with several seeds]."""
    several = any(r["n_seeds"] > 1 for r in rows)
    columns = ["lambda", "n_seeds"]
    for k in [*keys, "ci_estimate"]:
        columns += [f"{k}_mean"] + ([f"{k}_std"] if several else [])
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    for r in rows:
        line = [r["lambda"], r["n_seeds"]]
        for k in [*keys, "ci_estimate"]:
            s = r["stats"][k]
            line += [_csv(s["mean"])] + ([_csv(s["std"])] if several else [])
        writer.writerow(line)
    paths.write_atomic(path, text.getvalue())


def _csv(v):
    return "" if v is None else repr(float(v))


def plot(path: str, rows: Sequence[dict], keys: Sequence[str], ci_label: str) -> None:
    """Metrics against λ (symlog x: linear below the smallest positive λ, so λ = 0 fits) with
    seed std as error bars; the CI estimate on its own axis; Fréchet distances on a third."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lams = np.array([r["lambda"] for r in rows])
    positive = lams[lams > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    scores = [k for k in keys if not k.startswith(EXTRA_PREFIXES)]
    fds = [k for k in keys if k.startswith(EXTRA_PREFIXES)]
    panels = [("evaluation (higher is better)", scores), (ci_label, ["ci_estimate"])]
    if fds:
        panels.append(("Fréchet distance (lower is better)", fds))
    fig = Figure(figsize=(5.5 * len(panels), 4.2))
    FigureCanvasAgg(fig)
    for i, (title, panel_keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k in panel_keys:
            mean = np.array([_nan(r["stats"][k]["mean"]) for r in rows])
            std = np.array([_nan(r["stats"][k]["std"]) for r in rows])
            if np.all(np.isnan(mean)):
                continue
            err = None if np.all(np.isnan(std)) else np.nan_to_num(std)
            label = ci_label if k == "ci_estimate" else k
            ax.errorbar(lams, mean, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xticks(lams)
        ax.set_xticklabels([lambda_name(v) for v in lams], fontsize=8)
        ax.set_xlabel("λ")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if k == "ci_estimate":
            ax.set_ylabel("nats (training estimate)")
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    figures.save_figure(path, fig, dpi=100)


def _nan(v):
    return np.nan if v is None else float(v)


# --------------------------------------------------------------------------- running


def run_sweep(
    config,
    lambdas: Sequence[float],
    workdir: str,
    seeds: Sequence[int] | None = None,
    lambda_key: str = "var_ci",
    ci_metric: str | None = None,
    ci_last: int = 5,
) -> dict:
    """Trains and evaluates one run per (λ, seed); writes sweep.{json,csv,md,png}.

    Args:
      config: the base config (every override already applied).
      lambdas: λ values for ``config.loss.lambdas.<lambda_key>``.
      workdir: parent directory; run (λ, s) goes to ``lambda_<λ>_seed_<s>``.
      seeds: ``config.seed`` of each repetition; None → the config's own seed.
      ci_metric: training metric holding the CI estimate; None → ``default_ci_metric``.
      ci_last: how many of the last logged steps the CI estimate averages.

    Returns:
      {'rows': [per-λ dicts], 'runs': {dir name: per-run dict}, 'table': markdown, ...}.
    """
    lambdas = [float(v) for v in lambdas]
    if not lambdas:
        raise ValueError("No λ to sweep; pass --lambdas=0,0.1,1 or similar.")
    seeds = [int(config.seed)] if seeds is None else [int(s) for s in seeds]
    ci_metric = ci_metric or default_ci_metric(lambda_key)
    if ci_last < 1:
        raise ValueError(f"--ci_last must be >= 1, got {ci_last}.")
    if not config.train.evaluate_at_end:
        raise ValueError(
            "config.train.evaluate_at_end is False, so the runs would have no metrics to "
            "sweep; set --config.train.evaluate_at_end=True."
        )
    # Build every run's config first, so a bad --lambda_key fails before any training.
    plan = [(lam, s, run_config(config, lambda_key, lam, s)) for lam in lambdas for s in seeds]
    paths.check_supported(workdir)
    workdir = paths.path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://

    runs = {}
    for i, (lam, seed, cfg) in enumerate(plan):
        name = run_dir_name(lam, seed)
        run_dir = str(workdir / name)
        metrics = finished_metrics(run_dir, cfg)
        reused = metrics is not None
        start = time.perf_counter()
        if reused:
            log_progress(f"== [{i + 1}/{len(plan)}] {name}: finished earlier, reusing metrics.json")
        else:
            from wyner_jax import trainer  # after flag parsing: it touches jax.devices()

            log_progress(
                f"== [{i + 1}/{len(plan)}] {name}: {lambda_key}={lambda_name(lam)}, "
                f"seed {seed}, {cfg.train.num_steps} steps → {run_dir}"
            )
            metrics = trainer.train_and_evaluate(cfg, run_dir)
            if not metrics:  # preempted: its checkpoint is saved, nothing to tabulate
                raise ValueError(
                    f"Run {name} stopped before its evaluation (preempted); run the same "
                    "command again to finish it and the rest of the sweep."
                )
        runs[name] = {
            "lambda": lam,
            "seed": seed,
            "reused": reused,
            "seconds": round(time.perf_counter() - start, 1),
            "metrics": metrics,
            "ci_estimate": ci_estimate(run_dir, ci_metric, ci_last),
        }

    keys = metric_keys([r["metrics"] for r in runs.values()])
    rows = []
    for lam in lambdas:
        mine = [r for r in runs.values() if r["lambda"] == lam]
        per_seed = [{**r["metrics"], "ci_estimate": r["ci_estimate"]} for r in mine]
        rows.append(
            {
                "lambda": lam,
                "n_seeds": len(mine),
                "runs": [run_dir_name(lam, r["seed"]) for r in mine],
                "stats": aggregate(per_seed, [*keys, "ci_estimate"]),
            }
        )
    ci_label = f"{ci_metric} (I(X,Y;Z) est., train, last {ci_last} logs)"
    table = format_markdown(rows, keys, ci_label)
    summary = {
        "lambda_key": lambda_key,
        "lambdas": lambdas,
        "seeds": seeds,
        "ci_metric": ci_metric,
        "ci_last": ci_last,
        "ci_note": (
            f"{ci_metric}: mean CI-discriminator logit on q(x,y,z) samples, the plug-in "
            "estimate of I(X,Y;Z) (nats) penalised by the λ_CI term, averaged over the last "
            f"{ci_last} logged training steps; a training diagnostic, not an evaluation."
            + (
                ""
                if config.loss.uniform_disc_weights
                else " config.loss.uniform_disc_weights is False, so at λ = 0 the CI "
                "discriminator has weight 0 and its estimate is not trained: ignore it there."
            )
        ),
        "metrics": keys,
        "rows": rows,
        "runs": runs,
    }
    write_json_atomic(workdir / "sweep.json", summary)
    write_csv(workdir / "sweep.csv", rows, keys)
    paths.write_atomic(workdir / "sweep.md", table + "\n\n" + summary["ci_note"] + "\n")
    plot(workdir / "sweep.png", rows, keys, ci_label)
    log_progress(table)
    return {**summary, "table": table}


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined only when run as a program, so importing this module (tests) registers no
    global flags that could clash with train.py's."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file(
        "config", None, "Base experiment config file (configs/*.py).", lock_config=True
    )
    flags.DEFINE_list("lambdas", None, "Comma-separated λ values to sweep, e.g. 0,0.1,1.")
    flags.DEFINE_string("workdir", None, "Parent directory of the runs and of sweep.*.")
    flags.DEFINE_list("seeds", None, "Comma-separated seeds (default: the config's seed).")
    flags.DEFINE_string("lambda_key", "var_ci", "Which config.loss.lambdas entry to sweep.")
    flags.DEFINE_string(
        "ci_metric", None, "Training metric holding the CI estimate (default gen/<lambda_key>)."
    )
    flags.DEFINE_integer("ci_last", 5, "Average the CI estimate over this many last logs.")
    flags.mark_flags_as_required(["config", "lambdas", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep the console to progress lines and tables
    try:
        lambdas = parse_lambdas(FLAGS.lambdas)
        seeds = parse_seeds(FLAGS.seeds, FLAGS.config.seed)
        run_sweep(
            FLAGS.config,
            lambdas,
            FLAGS.workdir,
            seeds=seeds,
            lambda_key=FLAGS.lambda_key,
            ci_metric=FLAGS.ci_metric,
            ci_last=FLAGS.ci_last,
        )
    except cli.USER_ERRORS as e:
        cli.fail(e)


if __name__ == "__main__":
    define_flags()
    # One-line errors for a bad --config file or --config.a.b override, as train.py's.
    app.run(main, flags_parser=cli.parse_flags)
