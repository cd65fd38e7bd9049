"""Does the model learn the right conditional law? Gaussian pairs against their closed forms.

  python -m wyner_jax.studies.gaussian --rhos=0.3,0.5,0.7,0.9 --seeds=1,2,3 \\
      --workdir=runs/gaussian_study [--variants=stochastic,deterministic,iiae] \\
      [--set=train.num_steps=1000] [--set=train.eval_every=250 --average_last=4]

Trains every (variant, ρ, seed) with ``trainer.train_and_evaluate`` in
``<workdir>/<variant>/rho_<ρ>_seed_<s>`` (a finished run with the same config is reused, an
unfinished one resumes), then writes ``study.json`` (every run and the mean ± std over seeds),
``study.md`` (the table, with the closed forms) and ``study.png`` (the metrics against ρ with
the closed-form curves).

The adversarial game does not settle to a point: evaluated every 250 steps, one run's x→y
slope at ρ = 0.5 swings between 0.13 and 0.84 from one evaluation to the next (issue 21's
note), so one evaluation is one draw from that oscillation. ``--average_last=K`` reports each
run's metrics as their mean over its last K evaluations (``train.eval_every`` must be set,
e.g. ``--set=train.eval_every=250``; eval_metrics.jsonl): the time-averaged law, which is not
the law of any one generator; K = 1 (the default) is the final evaluation alone.

Variants:
* ``stochastic``: ``configs/gaussian.py`` (the Wyner model with stochastic encoders);
* ``deterministic``: the same with every encoder deterministic (noise columns 0, the
  reference's default);
* ``iiae``: ``configs/iiae_gaussian.py`` (its x→y law is decoder_y(mean r(z^s|x), z^y ~ prior)).

Closed forms per coordinate pair with correlation ρ: x→y and y→x slopes ρ and residual
variances 1 − ρ²; joint samples' covariance [[1, ρ], [ρ, 1]]; the CI of Wyner's optimal Z
seen through the CI discriminator's instance noise
(``evaluation.gaussian.wyner_ci_under_instance_noise``), next to C(X; Y) = artanh ρ.
``within`` counts how many of the seven checks of issue 21 a run's mean meets: slopes within
0.05 of ρ, residual variances within 10 % of 1 − ρ², joint entries within 0.05.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before JAX starts: see wyner_jax/allocator.py
    from wyner_jax import allocator

    allocator.use_caching_allocator()

import ast
import copy
import sys
import time
from typing import Sequence

import numpy as np
from absl import app, flags, logging

from wyner_jax import cli, paths
from wyner_jax.evaluation import figures, periodic
from wyner_jax.evaluation.gaussian import (
    wyner_ci_under_instance_noise,
    wyner_common_information_gaussian,
)
from wyner_jax.metrics_writer import log_progress, write_json_atomic

# The sweep's per-run bookkeeping and table cells (mean ± std over seeds) serve the study too.
from wyner_jax.sweep import _cell, _nan, aggregate, finished_metrics, parse_seeds

VARIANTS = ("stochastic", "deterministic", "iiae")

# (metric, closed form as a function of rho, tolerance kind, tolerance)
CHECKS = (
    ("gaussian/x2y_slope", lambda r: r, "abs", 0.05),
    ("gaussian/x2y_resid_var", lambda r: 1 - r**2, "rel", 0.10),
    ("gaussian/y2x_slope", lambda r: r, "abs", 0.05),
    ("gaussian/y2x_resid_var", lambda r: 1 - r**2, "rel", 0.10),
    ("gaussian/joint_var_x", lambda r: 1.0, "abs", 0.05),
    ("gaussian/joint_var_y", lambda r: 1.0, "abs", 0.05),
    ("gaussian/joint_cov_xy", lambda r: r, "abs", 0.05),
)
CI_KEYS = ("gaussian/var_ci_estimate", "gaussian/ci_gaussian_fit")
KEYS = tuple(k for k, *_ in CHECKS) + CI_KEYS
SHORT = {
    "gaussian/x2y_slope": "x→y slope",
    "gaussian/x2y_resid_var": "x→y resid var",
    "gaussian/y2x_slope": "y→x slope",
    "gaussian/y2x_resid_var": "y→x resid var",
    "gaussian/joint_var_x": "joint var x",
    "gaussian/joint_var_y": "joint var y",
    "gaussian/joint_cov_xy": "joint cov",
    "gaussian/var_ci_estimate": "CI est. (discriminator)",
    "gaussian/ci_gaussian_fit": "CI est. (Gaussian fit)",
}


def base_config(variant: str):
    """The config of a variant (see the module docstring)."""
    from configs import gaussian, iiae_gaussian

    if variant == "stochastic":
        return gaussian.get_config()
    if variant == "deterministic":
        config = gaussian.get_config()
        config.model.joint_encoder_noise_dim = 0
        config.model.marginal_encoder_noise_dim = 0
        return config
    if variant == "iiae":
        return iiae_gaussian.get_config()
    raise ValueError(f"Unknown variant {variant!r}; choose from {', '.join(VARIANTS)}.")


def parse_overrides(items: Sequence[str]) -> dict:
    """``--set=key=value`` items (dotted config keys, Python literals) as a dict."""
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value (e.g. train.num_steps=1000), got {item!r}.")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def run_config(variant: str, rho: float, seed: int, overrides: dict):
    """The variant's config with data.rho, seed and every override; unknown keys refused."""
    cfg = copy.deepcopy(base_config(variant))
    with cfg.unlocked():
        cfg.data.rho = float(rho)
        cfg.seed = int(seed)
        cli.apply_overrides(cfg, overrides, flag="--set ")
    return cfg


def time_average(run_dir: str, metrics: dict, last: int) -> dict:
    """``metrics`` with each study metric replaced by its mean over the run's last ``last``
    evaluations (``eval_metrics.jsonl``, the final one included)."""
    records = periodic.read_log(run_dir)[-last:]
    if len(records) < last:
        raise ValueError(
            f"--average_last={last}: {run_dir} has {len(records)} evaluation(s) in "
            f"{periodic.EVAL_LOG}; train with --set=train.eval_every=<steps> so that there are "
            f"at least {last} (a finished run without them must be trained again in a fresh "
            "--workdir)."
        )
    averaged = {k: float(np.mean([r[k] for r in records])) for k in KEYS if k in records[-1]}
    steps = [int(r["step"]) for r in records]
    return {**metrics, **averaged, "average/first_step": float(steps[0])}


def rho_name(rho: float) -> str:
    return f"{rho:g}"


def checks_met(metrics: dict, rho: float) -> dict[str, bool]:
    """Which of the closed-form checks (CHECKS) the metrics meet."""
    out = {}
    for key, closed, kind, tol in CHECKS:
        if metrics.get(key) is None:
            continue
        want = closed(rho)
        bound = tol * abs(want) if kind == "rel" else tol
        out[key] = abs(float(metrics[key]) - want) <= bound
    return out


def closed_forms(rho: float, sigma_xy: float, sigma_z: float) -> dict[str, float]:
    out = {key: float(closed(rho)) for key, closed, *_ in CHECKS}
    out["gaussian/var_ci_estimate"] = wyner_ci_under_instance_noise(rho, sigma_xy, sigma_z)
    out["gaussian/ci_gaussian_fit"] = out["gaussian/var_ci_estimate"]
    return out


def format_markdown(rows: Sequence[dict], closed: dict) -> str:
    """One row per (ρ, variant) and one closed-form row per ρ."""
    several = any(r["n_seeds"] > 1 for r in rows)
    header = ["ρ", "variant", "seeds", *[SHORT[k] for k in KEYS], "checks met"]
    lines = ["| " + " | ".join(header) + " |", "|---:|---|---:|" + "---:|" * (len(KEYS) + 1)]
    for rho in sorted({r["rho"] for r in rows}):
        c = closed[rho_name(rho)]
        cells = [rho_name(rho), "**closed form**", ""]
        cells += [f"{c[k]:.3f}" for k in KEYS]
        cells += [f"C(X;Y) = artanh ρ = {c['wyner_ci']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
        for r in (r for r in rows if r["rho"] == rho):
            cells = [rho_name(rho), r["variant"], str(r["n_seeds"])]
            cells += [_cell(r["stats"][k], several) for k in KEYS]
            cells += [f"{sum(r['checks'].values())}/{len(r['checks'])}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: str, rows: Sequence[dict]) -> None:
    """Four panels against ρ: slopes, residual variances, joint moments, CI; closed-form
    curves as lines, measurements as markers with the seed std as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = np.linspace(0.02, 0.98, 97)
    sigma = rows[0]["sigma"]
    panels = (
        ("slope", ("gaussian/x2y_slope", "gaussian/y2x_slope"), [("ρ", grid)]),
        (
            "residual variance",
            ("gaussian/x2y_resid_var", "gaussian/y2x_resid_var"),
            [("1 − ρ²", 1 - grid**2)],
        ),
        (
            "joint samples",
            ("gaussian/joint_cov_xy", "gaussian/joint_var_y"),
            [("cov = ρ", grid), ("var = 1", np.ones_like(grid))],
        ),
        (
            "CI I(X',Y';Z') (nats)",
            CI_KEYS,
            [
                (
                    "closed form under instance noise",
                    [wyner_ci_under_instance_noise(r, *sigma) for r in grid],
                ),
                ("C(X;Y) = artanh ρ", np.arctanh(grid)),
            ],
        ),
    )
    fig = Figure(figsize=(16, 4.2))
    FigureCanvasAgg(fig)
    variants = sorted({r["variant"] for r in rows}, key=VARIANTS.index)
    markers = dict(zip(VARIANTS, "osD"))
    for i, (title, keys, curves) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, ys in curves:
            ax.plot(
                grid, ys, color="k", lw=1, ls="-" if "artanh" not in label else "--", label=label
            )
        for v in variants:
            mine = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["rho"])
            rhos = np.array([r["rho"] for r in mine])
            for j, k in enumerate(keys):
                mean = np.array([_nan(r["stats"][k]["mean"]) for r in mine])
                if np.all(np.isnan(mean)):
                    continue
                std = np.nan_to_num([_nan(r["stats"][k]["std"]) for r in mine])
                ax.errorbar(
                    rhos + 0.008 * (j - 0.5),
                    mean,
                    yerr=std,
                    marker=markers[v],
                    ls="none",
                    capsize=3,
                    fillstyle="full" if j == 0 else "none",
                    label=f"{v}: {SHORT[k]}",
                )
        ax.set_xlabel("ρ")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    figures.save_figure(path, fig, dpi=100)


def run_study(
    rhos: Sequence[float],
    seeds: Sequence[int],
    workdir: str,
    variants: Sequence[str] = VARIANTS,
    overrides: dict | None = None,
    average_last: int = 1,
) -> dict:
    """Trains and evaluates every (variant, ρ, seed); writes study.{json,md,png}."""
    overrides = overrides or {}
    if average_last < 1:
        raise ValueError(f"--average_last must be 1 or more, got {average_last}.")
    if not rhos or not seeds or not variants:
        raise ValueError("Pass at least one ρ (--rhos), one seed (--seeds) and one variant.")
    for rho in rhos:
        if not -1 < rho < 1:
            raise ValueError(f"--rhos: every ρ must lie strictly inside (-1, 1), got {rho}.")
    # Build every config first, so a bad variant or --set key fails before any training.
    plan = [
        (v, float(r), int(s), run_config(v, r, s, overrides))
        for v in variants
        for r in rhos
        for s in seeds
    ]
    paths.check_supported(workdir)
    workdir = paths.path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)  # writes nothing on gs://
    runs = {}
    for i, (variant, rho, seed, cfg) in enumerate(plan):
        name = f"{variant}/rho_{rho_name(rho)}_seed_{seed}"
        run_dir = str(workdir / name)
        metrics = finished_metrics(run_dir, cfg)
        reused, start = metrics is not None, time.perf_counter()
        if reused:
            log_progress(f"== [{i + 1}/{len(plan)}] {name}: finished earlier, reusing it")
        else:
            from wyner_jax import trainer  # after flag parsing: it touches jax.devices()

            log_progress(
                f"== [{i + 1}/{len(plan)}] {name}: {cfg.train.num_steps} steps → {run_dir}"
            )
            metrics = trainer.train_and_evaluate(cfg, run_dir)
            if not metrics:
                raise ValueError(
                    f"Run {name} stopped before its evaluation (preempted); run the same "
                    "command again to finish it and the rest of the study."
                )
        if average_last > 1:
            metrics = time_average(run_dir, metrics, average_last)
        runs[name] = dict(
            variant=variant,
            rho=rho,
            seed=seed,
            reused=reused,
            seconds=round(time.perf_counter() - start, 1),
            metrics=metrics,
        )

    noise = plan[0][3].loss.instance_noise
    sigma = (float(noise.xy), float(noise.z))
    closed = {}
    rows = []
    for rho in sorted({p[1] for p in plan}):
        closed[rho_name(rho)] = {
            **closed_forms(rho, *sigma),
            "wyner_ci": wyner_common_information_gaussian(rho),
        }
        for variant in variants:
            mine = [r for r in runs.values() if r["variant"] == variant and r["rho"] == rho]
            stats = aggregate([r["metrics"] for r in mine], KEYS)
            means = {k: s["mean"] for k, s in stats.items()}
            rows.append(
                dict(
                    variant=variant,
                    rho=rho,
                    n_seeds=len(mine),
                    sigma=sigma,
                    stats=stats,
                    checks=checks_met(means, rho),
                )
            )
    table = format_markdown(rows, closed)
    note = (
        "Closed forms per coordinate: slopes ρ, residual variances 1 − ρ², joint [[1, ρ], "
        f"[ρ, 1]]; CI of Wyner's optimal Z under instance noise σ_xy = {sigma[0]:g}, "
        f"σ_z = {sigma[1]:g}. CI est. (discriminator): the trained CI discriminator's mean "
        "logit over the test set; CI est. (Gaussian fit): log-det information of the "
        "encoder's (x', y', z'). checks met: slopes ±0.05, residual variances ±10 %, joint "
        "entries ±0.05, on the mean over seeds."
    )
    if average_last > 1:
        note += (
            f" Each run's metrics: the mean of its last {average_last} evaluations "
            "(eval_metrics.jsonl), not the final one alone."
        )
    summary = dict(
        rhos=[float(r) for r in rhos],
        seeds=[int(s) for s in seeds],
        variants=list(variants),
        overrides=overrides,
        average_last=average_last,
        closed_forms=closed,
        rows=rows,
        runs=runs,
        note=note,
    )
    write_json_atomic(workdir / "study.json", summary)
    paths.write_atomic(workdir / "study.md", table + "\n\n" + note + "\n")
    plot(workdir / "study.png", rows)
    log_progress(table)
    return {**summary, "table": table}


FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_list("rhos", ["0.3", "0.5", "0.7", "0.9"], "Correlations ρ to train on.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds (config.seed) per (variant, ρ).")
    flags.DEFINE_list("variants", list(VARIANTS), f"Any of {', '.join(VARIANTS)}.")
    flags.DEFINE_string("workdir", None, "Parent directory of the runs and of study.*.")
    flags.DEFINE_multi_string(
        "set",
        [],
        "key=value for every run's config, e.g. " "--set=train.num_steps=1000 (repeatable).",
    )
    flags.DEFINE_integer(
        "average_last",
        1,
        "Report each run's metrics as the mean of its last K evaluations (needs "
        "--set=train.eval_every=N); 1: the final evaluation.",
    )
    flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        try:
            rhos = [float(r) for r in FLAGS.rhos]
        except ValueError:
            raise ValueError(f"--rhos must be numbers, got {','.join(FLAGS.rhos)}.") from None
        run_study(
            rhos,
            parse_seeds(FLAGS.seeds, 1),
            FLAGS.workdir,
            FLAGS.variants,
            parse_overrides(FLAGS.set),
            FLAGS.average_last,
        )
    except cli.USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
