"""The λ_CI sweep: argument checks, per-seed aggregation, and one tiny in-process sweep."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import digits_add1
from tests.tolerances import approx
from wyner_jax import sweep, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAMBDAS = [0.0, 0.5]


def tiny_config():
    """tests/test_end_to_end.py's TINY network, a few steps, a small evaluation."""
    config = digits_add1.get_config()
    config.model.mlp.encoder_hidden = ()
    config.model.mlp.encoder_features = 32
    config.model.mlp.decoder_hidden = (32,)
    config.model.mlp.disc_hidden = ()
    config.model.mlp.disc_features = 32
    config.model.disc.hidden_dim = 16
    config.data.multiplier = 1
    config.train.batch_size = 16
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.checkpoint_every = 6
    config.train.image_every = 0
    config.eval.batch_size = 16
    config.eval.classifier_steps = 30
    config.eval.num_joint_samples = 64
    # Fewer loss terms halve the train-step compile (~35 s instead of ~70 s on a loaded
    # 2-core machine), which happens once per λ: λ is a constant of the compiled program, so
    # the persistent cache cannot share it between λ values (init and evaluation do hit).
    # Kept: the three matchings every metric needs and the swept var_ci with its estimator.
    lam = config.loss.lambdas
    for k in ("c", "j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        lam[k] = 0.0
    lam.j_rec_zuv = 0.0
    lam.j_ci = lam.cx2y_ci = lam.cy2x_ci = -1.0  # < 0 drops a CI estimator (§7 item 4)
    config.lock()
    return config


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("sweep"))
    result = sweep.run_sweep(tiny_config(), LAMBDAS, workdir, ci_last=2)
    return workdir, result


@pytest.mark.slow  # ~100 s CPU (150-200 s wall on the shared 2 cores): a train-step compile per λ
@pytest.mark.heavy
def test_tiny_sweep_writes_one_row_per_lambda_with_lambda_applied(finished_sweep):
    workdir, result = finished_sweep
    names = ["lambda_0_seed_1", "lambda_0.5_seed_1"]
    assert sorted(result["runs"]) == sorted(names)
    for name, lam in zip(names, LAMBDAS):
        config = json.load(open(os.path.join(workdir, name, "config.json")))
        assert config["loss"]["lambdas"]["var_ci"] == lam and config["seed"] == 1
        assert not result["runs"][name]["reused"]
        assert os.path.isfile(os.path.join(workdir, name, "metrics.json"))

    rows = list(csv.DictReader(open(os.path.join(workdir, "sweep.csv"))))
    assert [float(r["lambda"]) for r in rows] == LAMBDAS
    assert "coherence/x2y_std" not in rows[0]  # one seed: no spread columns
    for r, name in zip(rows, names):
        metrics = json.load(open(os.path.join(workdir, name, "metrics.json")))
        for key in sweep.METRICS:
            # one seed: the CSV's mean is the float32 metric written to JSON and read back
            assert float(r[f"{key}_mean"]) == approx(metrics[key])
        # The CI estimate: mean gen/var_ci of the last 2 logged steps (4 and 6).
        records = [json.loads(l) for l in open(os.path.join(workdir, name, "train_metrics.jsonl"))]
        assert [rec["step"] for rec in records] == [2, 4, 6]
        # λ reached the loss: gen/total = Σ_k λ_k gen/k with this run's λ (var_ci included).
        lambdas = json.load(open(os.path.join(workdir, name, "config.json")))["loss"]["lambdas"]
        for rec in records:
            terms = {k[4:]: v for k, v in rec.items() if k.startswith("gen/") and k != "gen/total"}
            assert "var_ci" in terms
            total = sum(lambdas[k] * v for k, v in terms.items())
            # The program's float32 sum of the weighted terms against a float64 one of the
            # logged float32 terms: depth one per term, at the terms' magnitude (the total
            # can come out small where a term enters with a negative weight).
            scale = sum(abs(lambdas[k] * v) for k, v in terms.items())
            assert rec["gen/total"] == approx(total, depth=len(terms), scale=scale)
        expected = np.mean([rec["gen/var_ci"] for rec in records[-2:]])
        # the same float64 mean of the same logged values, written with repr: exact
        assert float(r["ci_estimate_mean"]) == pytest.approx(expected)

    table = open(os.path.join(workdir, "sweep.md")).read()
    lines = [l for l in table.splitlines() if l.startswith("|")]
    assert len(lines) == 2 + len(LAMBDAS)
    assert lines[0].startswith("| λ | seeds | coherence/x2y |") and "gen/var_ci" in lines[0]
    assert lines[2].startswith("| 0 | 1 |") and lines[3].startswith("| 0.5 | 1 |")
    assert result["table"] == "\n".join(lines)
    summary = json.load(open(os.path.join(workdir, "sweep.json")))
    assert [r["lambda"] for r in summary["rows"]] == LAMBDAS
    assert summary["ci_metric"] == "gen/var_ci"
    with open(os.path.join(workdir, "sweep.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 5000


@pytest.mark.slow
@pytest.mark.heavy
def test_rerun_reuses_finished_runs_without_training(finished_sweep, monkeypatch):
    workdir, first = finished_sweep
    mtimes = {n: os.path.getmtime(os.path.join(workdir, n, "metrics.json")) for n in first["runs"]}

    def no_training(config, workdir):
        raise AssertionError(f"retrained {workdir}")

    monkeypatch.setattr(trainer, "train_and_evaluate", no_training)
    again = sweep.run_sweep(tiny_config(), LAMBDAS, workdir, ci_last=2)
    assert all(r["reused"] for r in again["runs"].values())
    for n, t in mtimes.items():
        assert os.path.getmtime(os.path.join(workdir, n, "metrics.json")) == t
    assert again["table"] == first["table"]

    # A changed config (more steps) is not "finished": it goes back to the trainer.
    longer = tiny_config()
    with longer.unlocked():
        longer.train.num_steps = 8
    with pytest.raises(AssertionError, match="retrained"):
        sweep.run_sweep(longer, LAMBDAS, workdir)


def test_aggregation_mean_and_sample_std_over_seeds():
    per_seed = [
        {"coherence/x2y": 0.5, "probe/z_x": 0.9, "ci_estimate": 1.0},
        {"coherence/x2y": 0.7, "probe/z_x": 0.9, "ci_estimate": None},
        {"coherence/x2y": 0.9, "probe/z_x": 0.6},
    ]
    stats = sweep.aggregate(per_seed, ["coherence/x2y", "probe/z_x", "ci_estimate", "fd/x"])
    assert stats["coherence/x2y"]["mean"] == pytest.approx(0.7)
    assert stats["coherence/x2y"]["std"] == pytest.approx(0.2)  # ddof=1
    assert stats["probe/z_x"] == {
        "mean": pytest.approx(0.8),
        "std": pytest.approx(np.sqrt(0.03)),
        "n": 3,
    }
    assert stats["ci_estimate"] == {"mean": 1.0, "std": None, "n": 1}
    assert stats["fd/x"] == {"mean": None, "std": None, "n": 0}


def test_table_and_csv_with_several_seeds(tmp_path):
    rows = [
        {
            "lambda": lam,
            "n_seeds": 2,
            "stats": sweep.aggregate(ms, ["coherence/x2y", "ci_estimate"]),
        }
        for lam, ms in (
            (
                0.0,
                [
                    {"coherence/x2y": 0.8, "ci_estimate": 2.0},
                    {"coherence/x2y": 0.6, "ci_estimate": 3.0},
                ],
            ),
            (
                1.0,
                [
                    {"coherence/x2y": 0.5, "ci_estimate": 0.5},
                    {"coherence/x2y": 0.5, "ci_estimate": 0.7},
                ],
            ),
        )
    ]
    table = sweep.format_markdown(rows, ["coherence/x2y"], "CI")
    assert "| 0 | 2 | 0.700 ± 0.141 | 2.500 ± 0.707 |" in table.splitlines()
    assert "| 1 | 2 | 0.500 ± 0.000 | 0.600 ± 0.141 |" in table.splitlines()
    path = str(tmp_path / "s.csv")
    sweep.write_csv(path, rows, ["coherence/x2y"])
    out = list(csv.DictReader(open(path)))
    assert list(out[0]) == [
        "lambda",
        "n_seeds",
        "coherence/x2y_mean",
        "coherence/x2y_std",
        "ci_estimate_mean",
        "ci_estimate_std",
    ]
    assert float(out[0]["coherence/x2y_std"]) == pytest.approx(np.std([0.8, 0.6], ddof=1))
    sweep.plot(str(tmp_path / "s.png"), rows, ["coherence/x2y"], "CI")
    assert os.path.getsize(tmp_path / "s.png") > 5000


def test_ci_estimate_averages_the_last_logged_steps_once_each(tmp_path):
    records = [
        {"step": 10, "gen/var_ci": 1.0},
        {"step": 20, "gen/var_ci": 2.0},
        {"step": 30, "gen/var_ci": 9.0},
        {"step": 30, "gen/var_ci": 3.0},  # step 30 logged again after a resume: latest wins
        {"step": 40, "disc/total": 0.1},
    ]
    with open(tmp_path / "train_metrics.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    assert sweep.ci_estimate(str(tmp_path), "gen/var_ci", 2) == pytest.approx(2.5)
    assert sweep.ci_estimate(str(tmp_path), "gen/var_ci", 10) == pytest.approx(2.0)
    assert sweep.ci_estimate(str(tmp_path), "gen/j_ci", 2) is None
    assert sweep.ci_estimate(str(tmp_path / "nowhere"), "gen/var_ci", 2) is None


def test_lambda_parsing_and_config_errors():
    assert sweep.parse_lambdas("0,0.03, 0.1,1") == [0.0, 0.03, 0.1, 1.0]
    assert sweep.parse_lambdas(["0", "1e-5"]) == [0.0, 1e-5]
    assert sweep.run_dir_name(1e-5, 2) == "lambda_1e-05_seed_2"
    for bad, match in (
        ([], "empty"),
        ("", "empty"),
        ("0,abc", "not a number"),
        ("-0.1", ">= 0"),
        ("nan", ">= 0"),
        ("0.1,0.10", "repeats"),
    ):
        with pytest.raises(ValueError, match=match):
            sweep.parse_lambdas(bad)
    assert sweep.parse_seeds(None, 3) == [3] and sweep.parse_seeds(["1", "2"], 3) == [1, 2]
    with pytest.raises(ValueError, match="integers"):
        sweep.parse_seeds(["x"], 1)
    assert sweep.default_ci_metric("j_ci") == "gen/j_ci"
    assert sweep.default_ci_metric("c") == "gen/var_ci"
    config = tiny_config()
    with pytest.raises(ValueError, match="not a loss weight"):
        sweep.run_sweep(config, [0.1], "/nonexistent/never", lambda_key="var_cii")
    cfg = sweep.run_config(config, "j_ci", 0.3, 7)
    assert cfg.loss.lambdas.j_ci == 0.3 and cfg.seed == 7
    assert config.loss.lambdas.j_ci != 0.3 and config.seed == 1  # the base is untouched


def test_command_line_reports_an_empty_lambda_list_without_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "wyner_jax.sweep",
        "--config=configs/digits_add1.py",
        "--lambdas=",
        f"--workdir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: --lambdas is empty" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "tool, args",
    [
        ("wyner_jax.sweep", ["--config=configs/digits_add1.py", "--lambdas=0"]),
        ("wyner_jax.compare", ["--configs=configs/digits_add1.py"]),
    ],
)
def test_command_line_overrides_are_checked_like_train_py(tmp_path, tool, args):
    """``--config.a.b=value`` overrides on sweep and compare: a field the config does not
    have is one line naming the nearest field, before anything is written."""
    cmd = [sys.executable, "-m", tool, *args, f"--workdir={tmp_path}/w"]
    proc = subprocess.run(
        cmd + ["--config.train.num_stepz=3"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "did you mean config.train.num_steps" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "w")
