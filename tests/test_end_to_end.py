"""train.py and eval.py from the command line, and the run directory they leave behind."""

import json
import os
import subprocess
import sys

import pytest

from configs import gaussian
from wyner_jax import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = [
    "--config.model.mlp.encoder_hidden=()",
    "--config.model.mlp.encoder_features=32",
    "--config.model.mlp.decoder_hidden=(32,)",
    "--config.model.mlp.disc_hidden=()",
    "--config.model.mlp.disc_features=32",
    "--config.model.disc.hidden_dim=16",
    "--config.train.batch_size=16",
    "--config.eval.batch_size=16",
    "--config.train.log_every=5",
    "--config.train.checkpoint_every=10",
    "--config.train.image_every=10",
    "--config.eval.classifier_steps=150",
    "--config.eval.num_joint_samples=256",
    "--config.data.multiplier=1",
]


def run(script, workdir, *extra):
    cmd = [
        sys.executable,
        os.path.join(ROOT, script),
        "--config=" + os.path.join(ROOT, "configs/digits_add1.py"),
        f"--workdir={workdir}",
        *TINY,
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_train_then_eval_from_the_command_line(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run("train.py", workdir, "--config.train.num_steps=10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 10/10" in proc.stdout and "steps/s" in proc.stdout and "ETA" in proc.stdout

    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in (
        "classifier/x_acc",
        "classifier/y_acc",
        "coherence/x2y",
        "coherence/y2x",
        "coherence/joint",
        "probe/z_xy",
        "probe/z_x",
        "probe/z_y",
        "retrieval/mAP@all",
        "retrieval/P@10",
    ):
        assert key in metrics and 0.0 <= metrics[key] <= 1.0, key
    assert metrics["classifier/x_acc"] > 0.9
    config = json.load(open(os.path.join(workdir, "config.json")))
    assert config["train"]["num_steps"] == 10 and config["model"]["mlp"]["encoder_features"] == 32
    for fig in ("joint_samples", "x2y_grid", "y2x_grid", "reconstructions"):
        assert os.path.getsize(os.path.join(workdir, "figures", f"{fig}.png")) > 100
    records = [json.loads(l) for l in open(os.path.join(workdir, "train_metrics.jsonl"))]
    assert [r["step"] for r in records] == [5, 10]
    assert {"disc/total", "gen/total", "gen/j", "gen/var_ci", "gen/j_rec_x"} <= set(records[-1])
    assert os.listdir(os.path.join(workdir, "tensorboard"))

    # eval.py restores the checkpoint and reproduces the numbers of the end-of-training
    # evaluation (same EMA weights, same evaluation seed).
    os.remove(os.path.join(workdir, "metrics.json"))
    proc = run("eval.py", workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.load(open(os.path.join(workdir, "metrics.json")))
    assert again.keys() == metrics.keys()
    for k in metrics:
        assert again[k] == pytest.approx(metrics[k], abs=1e-6), k

    # Running train.py again with more steps resumes from the checkpoint at step 10.
    proc = run(
        "train.py", workdir, "--config.train.num_steps=15", "--config.train.evaluate_at_end=False"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed from" in proc.stdout and "step 15/15" in proc.stdout
    assert "step 5/" not in proc.stdout


def test_unknown_override_and_bad_batch_size_fail_with_a_clear_message(tmp_path):
    proc = run("train.py", str(tmp_path / "a"), "--config.train.no_such_key=1")
    assert proc.returncode != 0 and "no_such_key" in proc.stderr
    proc = run("train.py", str(tmp_path / "b"), "--config.train.batch_size=18")
    assert proc.returncode == 1
    assert "does not divide over the 4 devices" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "b" / "checkpoints")


def test_gaussian_run_reports_the_closed_form_metrics(tmp_path):
    config = gaussian.get_config()
    config.train.num_steps = 20
    config.train.batch_size = 64
    config.eval.batch_size = 64
    config.train.log_every = 10
    config.data.n_train = 2000
    config.data.n_test = 500
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        config.loss.lambdas[k] = 0.0  # fewer terms, faster compile; the metrics are the point
    metrics = trainer.train_and_evaluate(config, str(tmp_path))
    assert metrics["gaussian/rho"] == pytest.approx(0.7)
    assert metrics["gaussian/wyner_ci"] == pytest.approx(0.8673, abs=1e-3)  # artanh(0.7)
    assert "gaussian/x2y_slope" in metrics and "gaussian/x2y_resid_var" in metrics
    assert os.path.exists(tmp_path / "figures" / "x2y_scatter.png")
