"""The Gaussian study (wyner_jax/studies/gaussian.py): its checks, overrides, table, and one
small end-to-end run through the command line, reused on a second call."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.tolerances import approx
from wyner_jax.evaluation.gaussian import wyner_ci_under_instance_noise
from wyner_jax.studies import gaussian as study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exact_metrics(rho):
    return {
        "gaussian/x2y_slope": rho,
        "gaussian/x2y_resid_var": 1 - rho**2,
        "gaussian/y2x_slope": rho,
        "gaussian/y2x_resid_var": 1 - rho**2,
        "gaussian/joint_var_x": 1.0,
        "gaussian/joint_var_y": 1.0,
        "gaussian/joint_cov_xy": rho,
    }


def test_checks_follow_the_issue_tolerances():
    rho = 0.7
    assert all(study.checks_met(exact_metrics(rho), rho).values())
    m = exact_metrics(rho)
    m["gaussian/x2y_slope"] = rho + 0.049  # inside ±0.05
    m["gaussian/y2x_slope"] = rho - 0.051  # outside
    m["gaussian/x2y_resid_var"] = (1 - rho**2) * 1.09  # inside ±10 %
    m["gaussian/y2x_resid_var"] = (1 - rho**2) * 0.89  # outside
    m["gaussian/joint_cov_xy"] = rho + 0.06  # outside
    met = study.checks_met(m, rho)
    assert met == {
        "gaussian/x2y_slope": True,
        "gaussian/x2y_resid_var": True,
        "gaussian/y2x_slope": False,
        "gaussian/y2x_resid_var": False,
        "gaussian/joint_var_x": True,
        "gaussian/joint_var_y": True,
        "gaussian/joint_cov_xy": False,
    }
    # A metric a model does not report is not counted as met or failed.
    del m["gaussian/joint_cov_xy"]
    assert "gaussian/joint_cov_xy" not in study.checks_met(m, rho)


def test_run_config_sets_rho_seed_variant_and_refuses_unknown_keys():
    cfg = study.run_config("deterministic", 0.3, 2, {"train.num_steps": 7, "data.n_test": "300"})
    assert (cfg.data.rho, cfg.seed, cfg.train.num_steps, cfg.data.n_test) == (0.3, 2, 7, 300)
    assert cfg.model.joint_encoder_noise_dim == cfg.model.marginal_encoder_noise_dim == 0
    stochastic = study.run_config("stochastic", 0.3, 2, {})
    assert stochastic.model.marginal_encoder_noise_dim > 0
    assert study.run_config("iiae", 0.3, 2, {}).model.name == "iiae"
    with pytest.raises(ValueError, match="did you mean config.train.num_steps"):
        study.run_config("stochastic", 0.3, 1, {"train.num_stpes": 7})
    with pytest.raises(ValueError, match="Unknown variant"):
        study.run_config("vae", 0.3, 1, {})
    assert study.parse_overrides(["train.num_steps=10", "model.name=iiae"]) == {
        "train.num_steps": 10,
        "model.name": "iiae",
    }
    with pytest.raises(ValueError, match="key=value"):
        study.parse_overrides(["train.num_steps"])


def test_closed_form_row_of_the_table():
    closed = {"0.5": {**study.closed_forms(0.5, 0.1, 0.25), "wyner_ci": np.arctanh(0.5)}}
    assert closed["0.5"]["gaussian/var_ci_estimate"] == wyner_ci_under_instance_noise(
        0.5, 0.1, 0.25
    )
    stats = {k: {"mean": 0.5, "std": 0.01, "n": 2} for k in study.KEYS}
    rows = [
        dict(
            variant="stochastic",
            rho=0.5,
            n_seeds=2,
            stats=stats,
            checks=study.checks_met({k: 0.5 for k in study.KEYS}, 0.5),
        )
    ]
    table = study.format_markdown(rows, closed)
    lines = table.splitlines()
    assert "**closed form**" in lines[2] and "0.750" in lines[2] and "0.549" in lines[2]
    # slopes and joint cov (0.5) meet, residual variances (0.5 vs 0.75) and variances do not
    assert lines[3].endswith("| 3/7 |") and "0.500 ± 0.010" in lines[3]


def test_study_command_trains_tabulates_and_reuses(tmp_path):
    """One variant at one ρ, one seed, a few steps: the command line writes the table, the
    JSON and the figure, and a second call reuses the finished run instead of training.
    (The IIAE variant's config is trained for one step in the next test.)"""
    cmd = [
        sys.executable,
        "-m",
        "wyner_jax.studies.gaussian",
        "--rhos=0.5",
        "--seeds=1",
        "--variants=stochastic",
        f"--workdir={tmp_path}",
        "--set=train.num_steps=4",
        "--set=train.log_every=2",
        "--set=data.n_train=600",
        "--set=data.n_test=300",
        "--set=train.checkpoint_every=4",
        "--set=train.eval_every=2",
        "--average_last=2",
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "study.json").read_text())
    assert set(summary["runs"]) == {"stochastic/rho_0.5_seed_1"}
    wyner = summary["runs"]["stochastic/rho_0.5_seed_1"]["metrics"]
    assert wyner["train/step"] == 4.0 and "gaussian/var_ci_estimate" in wyner
    # --average_last=2: the mean of the evaluations at steps 2 and 4 (the final one), not the
    # final one alone.
    log = [json.loads(l) for l in open(tmp_path / "stochastic/rho_0.5_seed_1/eval_metrics.jsonl")]
    assert [r["step"] for r in log] == [2, 4] and wyner["average/first_step"] == 2
    for key in ("gaussian/x2y_slope", "gaussian/joint_cov_xy", "gaussian/var_ci_estimate"):
        assert log[0][key] != log[1][key]
        assert wyner[key] == approx((log[0][key] + log[1][key]) / 2, dtype=np.float64), key
    assert (tmp_path / "study.png").stat().st_size > 10_000
    assert "**closed form**" in (tmp_path / "study.md").read_text()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing it") == 1, again.stdout[-3000:]


def test_iiae_gaussian_config_trains_and_translates():
    """configs/iiae_gaussian.py (the study's IIAE variant): one step, then x→y samples of the
    data's shape; IIAE has no CI estimator, so the study's CI columns stay empty for it."""
    import jax

    from configs import iiae_gaussian
    from wyner_jax import data
    from wyner_jax.models.base import build_model

    config = iiae_gaussian.get_config()
    config.data.n_train, config.data.n_test = 512, 64
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    batch = {"x": dataset.train.x[:256], "y": dataset.train.y[:256]}
    state, metrics = jax.jit(model.train_step)(model.init(jax.random.PRNGKey(0), batch), batch)
    assert np.isfinite(float(metrics["loss/total"]))
    y = model.translate_x2y(model.eval_variables(state), dataset.test.x, jax.random.PRNGKey(1))
    assert y.shape == dataset.test.x.shape and not hasattr(model, "ci_estimate")


def test_trajectory_statistics_over_the_evaluations_after_a_step(tmp_path):
    """studies/trajectory.py: mean and (population) std over one run's evaluations after
    --after, read from eval_metrics.jsonl as the trainer writes it."""
    from configs import gaussian as gaussian_config
    from wyner_jax.evaluation import periodic
    from wyner_jax.studies import trajectory

    slopes = {250: 0.9, 500: 0.2, 750: 0.6, 1000: 0.4}
    recorder = periodic.EvalRecorder(gaussian_config.get_config(), str(tmp_path), start_step=0)
    for step, slope in slopes.items():
        recorder.record(step, {"gaussian/x2y_slope": slope, "gaussian/joint_cov_xy": 0.5})
    stats = trajectory.trajectory_stats(str(tmp_path), after=250)
    later = np.array([0.2, 0.6, 0.4])
    assert stats["gaussian/x2y_slope"] == (
        approx(later.mean(), dtype=np.float64),
        approx(later.std(), dtype=np.float64),
        3,
    )
    assert stats["gaussian/joint_cov_xy"][1] == 0.0
    table = trajectory.format_markdown([("run", stats)], 0.5)
    assert "| **closed form** (ρ = 0.5) | | 0.500 |" in table and "| run | 3 | 0.40 ± 0.16 |" in table
    with pytest.raises(ValueError, match="no evaluation after step 1000"):
        trajectory.trajectory_stats(str(tmp_path), after=1000)
