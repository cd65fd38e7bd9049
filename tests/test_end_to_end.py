"""train.py and eval.py from the command line, and the run directory they leave behind."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import gaussian
from tests.tolerances import approx
from wyner_jax import parallel, trainer
from wyner_jax.evaluation import periodic, runner

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
    # TensorBoard itself (the `tensorboard` extra) reads the scalars at the logged steps and
    # the sample grids.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(workdir, "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("gen/total")] == [5, 10]
    assert "samples/x2y_grid" in events.Tags()["images"]
    # The final evaluation's metrics too, as eval/<name> at the last step (float32 there).
    (final,) = events.Scalars("eval/coherence/x2y")
    assert final.step == 10 and final.value == approx(metrics["coherence/x2y"])

    # eval.py restores the checkpoint and reproduces the numbers of the end-of-training
    # evaluation (same EMA weights, same evaluation seed).
    os.remove(os.path.join(workdir, "metrics.json"))
    proc = run("eval.py", workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.load(open(os.path.join(workdir, "metrics.json")))
    assert again.keys() == metrics.keys()
    # Same weights, seed and programs: equal up to the rounding of a few layers, should the
    # restored (resharded) state pick other kernels (on this machine they are bit-equal).
    for k in metrics:
        assert again[k] == approx(metrics[k], depth=16), k

    # eval.py --workdir alone evaluates with the run's own config.json: same numbers, without
    # repeating the config file and the overrides. Overrides without a config are refused.
    os.remove(os.path.join(workdir, "metrics.json"))
    alone = [sys.executable, os.path.join(ROOT, "eval.py"), f"--workdir={workdir}"]
    proc = subprocess.run(alone, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from_json = json.load(open(os.path.join(workdir, "metrics.json")))
    assert from_json.keys() == metrics.keys()
    for k in metrics:
        assert from_json[k] == approx(metrics[k], depth=16), k
    proc = subprocess.run(
        alone + ["--config.eval.batch_size=8"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "no --config file is given" in proc.stderr

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


def _check_periodic_evaluation(config, workdir, final):
    """Evaluations at steps 5, 10, 15 during training and the final one at 20 form
    eval_metrics.jsonl; the best checkpoint holds the step with the largest x→y slope among
    them, and evaluating it (eval.py --which=best) reproduces the logged value (same weights,
    same evaluation key), into WORKDIR/best/ without replacing the latest metrics.json."""
    records = periodic.read_log(workdir)
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[-1]["gaussian/x2y_slope"] == final["gaussian/x2y_slope"]
    slopes = {r["step"]: r["gaussian/x2y_slope"] for r in records}
    assert len(set(slopes.values())) == 4  # the weights moved: a real choice
    best_step = max(slopes, key=slopes.get)
    assert os.listdir(os.path.join(workdir, periodic.BEST_DIR)) == [str(best_step)]
    best = trainer.evaluate_checkpoint(config, workdir, "best")
    assert best["train/step"] == best_step
    # The same program on the same inputs: float64 statistics of the same float32 samples.
    assert best["gaussian/x2y_slope"] == approx(slopes[best_step], dtype=np.float64, depth=500)
    assert json.load(open(os.path.join(workdir, "best", "metrics.json")))["train/step"] == best_step
    assert json.load(open(os.path.join(workdir, "metrics.json")))["train/step"] == 20


def _numpy_slope_and_residual_variance(x, y):
    """Ordinary least squares y ≈ a + b·x per coordinate (np.polyfit, float64): the mean
    slope b and the mean squared residual (divisor N), as the metrics are documented."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    slopes, resids = [], []
    for d in range(x.shape[1]):
        b, a = np.polyfit(x[:, d], y[:, d], 1)
        slopes.append(b)
        resids.append(np.mean((y[:, d] - a - b * x[:, d]) ** 2))
    return float(np.mean(slopes)), float(np.mean(resids))


def test_gaussian_run_reports_the_regression_of_its_own_x2y_samples(tmp_path):
    """(Also, on the same run to save a compile: periodic evaluation and the best checkpoint,
    ``_check_periodic_evaluation`` below.)"""
    _gaussian_run(tmp_path)


def _gaussian_run(tmp_path):
    """What this checks is the evaluation, not the model: after 20 steps the generator has not
    learned p(y|x) (and the full config does not either, issue 21), so the slope is not compared
    with rho. The reported gaussian/x2y_slope and gaussian/x2y_resid_var must equal a NumPy
    least-squares fit on x→y samples that this test draws itself, through the restored
    checkpoint's x2y on the test inputs with the evaluation's key: a metric computed on other
    rows (misaligned x and y), on the data's y instead of generated samples, with another
    divisor or an uncentred fit fails. The Wyner constant is reported under closed_form/
    because it is computed from the config, not measured."""
    config = gaussian.get_config()
    config.train.num_steps = 20
    config.train.batch_size = 64
    config.eval.batch_size = 64
    config.train.log_every = 10
    config.data.n_train = 2000
    config.data.n_test = 500
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        config.loss.lambdas[k] = 0.0  # fewer terms, faster compile; the metrics are the point
    config.train.eval_every = 5
    config.eval.best_metric = "gaussian/x2y_slope"
    config.eval.best_mode = "max"
    metrics = trainer.train_and_evaluate(config, str(tmp_path))
    _check_periodic_evaluation(config, str(tmp_path), metrics)
    assert os.path.exists(tmp_path / "figures" / "x2y_scatter.png")

    # The constants from the config, under names that do not read as measurements.
    assert "gaussian/wyner_ci" not in metrics
    assert metrics["gaussian/rho"] == approx(0.7)
    assert metrics["gaussian/closed_form/wyner_ci"] == approx(
        config.data.dim * 0.5 * math.log((1 + 0.7) / (1 - 0.7))
    )

    # The measurement, recomputed from samples drawn here through the model's own x2y.
    model, state, dataset, _ = trainer.restore_for_eval(config, str(tmp_path))
    state = parallel.local_copy(state)
    k_x2y = jax.random.split(jax.random.PRNGKey(runner.EVAL_SEED), 4)[0]
    x = dataset.test.x
    y_gen = runner.Inference(model, state, config).x2y(x, k_x2y)
    assert y_gen.shape == x.shape == (500, config.data.dim)
    slope, resid = _numpy_slope_and_residual_variance(x, y_gen)
    # Float64 sums over the N = 500 rows on both sides; the samples themselves are the same
    # float32 numbers (same program, inputs and key).
    n = len(x)
    assert metrics["gaussian/x2y_slope"] == approx(slope, dtype=np.float64, depth=n)
    assert metrics["gaussian/x2y_resid_var"] == approx(resid, dtype=np.float64, depth=n)
    # y→x and the joint samples are measured the same way (their functions are tested alone
    # in test_evaluation.py); a joint sample's variances are positive.
    assert {"gaussian/y2x_slope", "gaussian/y2x_resid_var", "gaussian/joint_cov_xy"} <= set(metrics)
    assert metrics["gaussian/joint_var_x"] > 0 and metrics["gaussian/joint_var_y"] > 0
    # The samples are not the data's y: the fit of the data's own y on x (slope ≈ rho) is a
    # different number, so reporting it instead would fail above.
    data_slope, _ = _numpy_slope_and_residual_variance(x, dataset.test.y)
    assert abs(data_slope - slope) > 0.05, (data_slope, slope)
    # The draw above goes through the evaluation's own batching (a random order, put back in
    # place), so a misplacement there would pass it: a row-wise function through the same
    # helper must come back in row order.
    doubled = runner.batched(lambda a, key: 2.0 * a, (x,), config.eval.batch_size, k_x2y)
    np.testing.assert_array_equal(doubled, 2.0 * x)

    # The CI under instance noise: the closed form is the config's, the discriminator's
    # estimate is the mean of the model's ci_estimate over the test rows (batch means weighted
    # by batch sizes, the key folded per batch as the evaluation does).
    from wyner_jax.evaluation.gaussian import wyner_ci_under_instance_noise

    noise = config.loss.instance_noise
    assert metrics["gaussian/closed_form/ci_under_instance_noise"] == approx(
        config.data.dim * wyner_ci_under_instance_noise(0.7, noise.xy, noise.z)
    )
    k_ci = jax.random.fold_in(jax.random.PRNGKey(runner.EVAL_SEED), 5)
    bs, y = config.eval.batch_size, dataset.test.y
    values = [
        (
            float(
                model.ci_estimate(state, x[s : s + bs], y[s : s + bs], jax.random.fold_in(k_ci, i))
            ),
            len(x[s : s + bs]),
        )
        for i, s in enumerate(range(0, n, bs))
    ]
    want = sum(v * m for v, m in values) / n
    # jit vs eager of the same float32 program (depth: the discriminator's layers and a mean
    # over a batch), scaled by the largest batch value.
    assert metrics["gaussian/var_ci_estimate"] == approx(
        want, depth=bs, scale=max(abs(v) for v, _ in values)
    )
    assert len({round(v, 6) for v, _ in values}) > 1  # batches differ: not one value repeated
    assert np.isfinite(metrics["gaussian/ci_gaussian_fit"])
