"""Trains several configs (the Variational Wyner model and IIAE) on the same data and budget
and prints their evaluations side by side: linear probes, retrieval, coherence, Fréchet
distances (the best of each row in bold; for distances and leakage checks the lowest).

  python -m wyner_jax.compare \
      --configs=configs/digits_add1.py,configs/iiae_digits_add1.py \
      --workdir=runs/compare [--steps=N] [--config.a.b=value ...]

A config path may carry an argument after ':' (``configs/iiae_digits_add1.py:conv``). Each
run trains in ``<workdir>/<config name>[_<arg>]`` with ``trainer.train_and_evaluate``;
re-running resumes every run from its checkpoints (a finished run is only re-evaluated).
``--steps`` overrides ``config.train.num_steps`` of every run alike, and each
``--config.a.b=value`` that field of every config (refused, before anything trains, when a
config has no such field or the value is not of its type). The table goes to
stdout, ``<workdir>/comparison.md`` and, with every metric and the wall-clock time of each
run, ``<workdir>/comparison.json``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Callable, Sequence

from absl import app, flags, logging

from wyner_jax import cli, paths
from wyner_jax.evaluation.direction import lower_is_better
from wyner_jax.metrics_writer import log_progress, write_json_atomic

# Table sections: (metric-name prefix, title).
SECTIONS = (
    ("probe/", "linear probe accuracy"),
    ("retrieval/", "retrieval (x → y)"),
    ("coherence/", "generation coherence"),
    ("fd/", "Fréchet distance on classifier features (lower is better)"),
)
MISSING = "–"


def better(metric: str):
    """``max`` or ``min``: which value of ``metric`` wins the row; None for reference values
    that no run can win (chance levels)."""
    if metric.endswith("_chance"):
        return None
    return min if lower_is_better(metric) else max


# --------------------------------------------------------------------------- configs


def split_spec(spec: str) -> tuple[str, str | None]:
    """'configs/x.py:arg' → ('configs/x.py', 'arg'); no ':' → (path, None)."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def run_name(spec: str) -> str:
    """The run's directory name: the config file's stem, plus '_<arg>' when one is given."""
    path, arg = split_spec(spec)
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{stem}_{arg}" if arg else stem


def load_config(spec: str):
    """Calls ``get_config([arg])`` of the config file named by ``spec``."""
    path, arg = split_spec(spec)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Config file {path!r} (from --configs) does not exist; pass paths such as "
            "configs/digits_add1.py, relative to the directory you run from."
        )
    # Config files import their base as ``from configs import default``: the repository root
    # (the config directory's parent) must be importable.
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"_compare_config_{run_name(spec)}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"Config file {path!r} has no get_config(); every configs/*.py needs one.")
    return module.get_config(arg) if arg is not None else module.get_config()


# --------------------------------------------------------------------------- the table


def _fmt(value) -> str:
    return MISSING if value is None else f"{value:.3f}"


def comparison_rows(metrics: dict[str, dict[str, float]]) -> list[tuple[str, list]]:
    """[(title or metric, values per run)], section titles with an empty list of values."""
    names = list(metrics)
    rows = []
    for prefix, title in SECTIONS:
        keys = sorted({k for m in metrics.values() for k in m if k.startswith(prefix)})
        if keys:
            rows.append((title, []))
            rows += [(k, [metrics[n].get(k) for n in names]) for k in keys]
    return rows


def format_markdown(
    metrics: dict[str, dict[str, float]], extra: dict[str, dict[str, str]] | None = None
) -> str:
    """A markdown table, one column per run, the best value of each metric row in bold.

    Args:
      metrics: run name → its metrics dict (as ``metrics.json``); runs keep their order.
      extra: optional rows shown first, row title → run name → text (model, steps, time).
    """
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for title, by_run in (extra or {}).items():
        lines.append(f"| {title} | " + " | ".join(by_run.get(n, MISSING) for n in names) + " |")
    for label, values in comparison_rows(metrics):
        if not values:
            lines.append(f"| **{label}** |" + " |" * len(names))
            continue
        present = [v for v in values if v is not None]
        pick = better(label)
        best = pick(present) if pick and len(present) > 1 and len(set(present)) > 1 else None
        cells = [f"**{_fmt(v)}**" if v is not None and v == best else _fmt(v) for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


def run_comparison(
    specs: Sequence[str],
    workdir: str,
    steps: int | None = None,
    configure: Callable | None = None,
    overrides: dict | None = None,
) -> dict:
    """Trains and evaluates every config of ``specs``; writes comparison.json and .md.

    Args:
      specs: config paths, each optionally with ':arg'.
      workdir: parent directory; run i goes to ``workdir/run_name(specs[i])``.
      steps: if given, ``config.train.num_steps`` of every run.
      configure: optional ``f(config)`` applied to every config after loading (tests use it
        to shrink the networks).
      overrides: {dotted field: value} set in every config (``--config.a.b=value``).

    Returns:
      {'runs': {name: {'config', 'model', 'steps', 'seconds', 'metrics'}}, 'table': markdown}.
    """
    from wyner_jax import trainer  # after flag parsing: it touches jax.devices()

    names = [run_name(s) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(
            f"--configs names a run twice ({', '.join(names)}); each config:arg "
            "pair must be unique, since each run gets its own directory."
        )
    # Load every config before training anything, so a typo fails at once.
    configs = [load_config(s) for s in specs]
    for spec, config in zip(specs, configs):
        try:
            cli.apply_overrides(config, overrides or {})
        except ValueError as e:
            raise ValueError(f"{spec}: {e}") from e
        if steps is not None:
            config.train.num_steps = int(steps)
        if configure is not None:
            configure(config)
    paths.check_supported(workdir)
    workdir = paths.path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://
    runs = {}
    for spec, name, config in zip(specs, names, configs):
        if not config.train.evaluate_at_end:
            raise ValueError(
                f"{spec}: config.train.evaluate_at_end is False, so there is nothing "
                "to compare; set it to True."
            )
        log_progress(
            f"== {name}: {config.model.name}, {config.train.num_steps} steps " f"→ {workdir / name}"
        )
        start = time.perf_counter()
        metrics = trainer.train_and_evaluate(config, str(workdir / name))
        runs[name] = {
            "config": spec,
            "model": config.model.name,
            "steps": int(config.train.num_steps),
            "seconds": round(time.perf_counter() - start, 1),
            "metrics": metrics,
        }
    extra = {
        "model": {n: r["model"] for n, r in runs.items()},
        "training steps": {n: str(r["steps"]) for n, r in runs.items()},
        "wall-clock s (train + eval)": {n: f"{r['seconds']:.0f}" for n, r in runs.items()},
    }
    table = format_markdown({n: r["metrics"] for n, r in runs.items()}, extra)
    write_json_atomic(workdir / "comparison.json", {"runs": runs, "order": names})
    paths.write_atomic(workdir / "comparison.md", table + "\n")
    log_progress(table)
    return {"runs": runs, "table": table}


FLAGS = flags.FLAGS
OVERRIDES: dict = {}  # the command line's --config.a.b=value, for every config


def parse_flags(argv: list[str]) -> list[str]:
    """Takes the ``--config.*`` overrides out (they apply to every config), then parses the
    rest as train.py does, with one-line errors."""
    try:
        rest, overrides = cli.split_config_overrides(argv)
    except ValueError as e:
        cli.fail(e)
    OVERRIDES.update(overrides)
    return cli.parse_flags(rest)


def define_flags() -> None:
    """Defined only when run as a program, so importing this module (tests, notebooks)
    registers no global flags that could clash with train.py's."""
    flags.DEFINE_list("configs", None, "Comma-separated config files (path[:arg]) to compare.")
    flags.DEFINE_string(
        "workdir", None, "Parent directory of the runs and of comparison.{json,md}."
    )
    flags.DEFINE_integer("steps", None, "Override config.train.num_steps of every run.")
    flags.mark_flags_as_required(["configs", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep the console to progress lines and tables
    try:
        run_comparison(FLAGS.configs, FLAGS.workdir, FLAGS.steps, overrides=OVERRIDES)
    except cli.USER_ERRORS as e:
        cli.fail(e)


if __name__ == "__main__":
    from wyner_jax import allocator

    allocator.use_caching_allocator()  # before JAX starts: see wyner_jax/allocator.py
    define_flags()
    app.run(main, flags_parser=parse_flags)
