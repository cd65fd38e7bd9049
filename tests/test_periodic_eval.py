"""Evaluation during training (train.eval_every), eval_metrics.jsonl and the best checkpoint
(eval.best_metric), and `eval.py --which=best`: the settings and the log here; a training run
with periodic evaluations and the best checkpoint is in test_end_to_end.py (the Gaussian run,
to share its compile)."""

import json
import os

import pytest

from configs import gaussian
from tests.tolerances import approx
from wyner_jax import trainer
from wyner_jax.evaluation import direction, periodic


def tiny_gaussian(num_steps=6):
    config = gaussian.get_config()
    config.train.num_steps = num_steps
    config.train.batch_size = 32
    config.eval.batch_size = 32
    config.train.log_every = 2
    config.train.checkpoint_every = 3
    config.data.n_train, config.data.n_test = 256, 128
    config.model.mlp.encoder_hidden = ()
    config.model.mlp.encoder_features = 16
    config.model.mlp.decoder_hidden = (16,)
    config.model.mlp.disc_hidden = ()
    config.model.mlp.disc_features = 16
    config.model.disc.hidden_dim = 16
    for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
        config.loss.lambdas[k] = 0.0  # fewer terms, faster compile
    return config


def test_the_log_drops_what_a_resumed_run_repeats(tmp_path):
    """A run resumed from step 4 evaluates step 6 again: the log keeps one record per step (the
    new one), and the earlier records stay."""
    config = tiny_gaussian()
    first = periodic.EvalRecorder(config, str(tmp_path), start_step=0)
    for step in (2, 4, 6):
        first.record(step, {"a": float(step), "train/step": float(step)})
    again = periodic.EvalRecorder(config, str(tmp_path), start_step=4)
    again.record(6, {"a": 60.0, "b": float("nan")})
    lines = open(tmp_path / periodic.EVAL_LOG).read().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [2, 4, 6]
    assert json.loads(lines[-1]) == {"step": 6, "a": 60.0, "b": "nan"}  # strict JSON


def test_best_direction_follows_the_metric():
    assert direction.best_mode("fd/x2y", "auto") == "min"
    assert direction.best_mode("retrieval/R@1_excl_x2y", "auto") == "min"
    assert direction.best_mode("coherence/x2y", "auto") == "max"
    assert direction.best_mode("fd/x2y", "max") == "max"
    with pytest.raises(ValueError, match="best_mode must be 'auto', 'max' or 'min'"):
        direction.best_mode("fd/x", "lowest")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.eval_every": -1}, "eval_every must be 0"),
        ({"eval.best_mode": "up", "eval.best_metric": "fd/x"}, "best_mode must be"),
        (
            {"eval.best_metric": "fd/x", "train.evaluate_at_end": False, "train.eval_every": 0},
            "needs evaluations to choose from",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_before_anything_is_written(
    tmp_path, overrides, message
):
    config = tiny_gaussian()
    for key, value in overrides.items():
        group, name = key.split(".")
        config[group][name] = value
    with pytest.raises(ValueError, match=message):
        trainer.train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_an_unknown_best_metric_names_the_metrics_there_are(tmp_path):
    config = tiny_gaussian()
    config.eval.best_metric = "coherence/x2y"  # not a Gaussian metric
    recorder = periodic.EvalRecorder(config, str(tmp_path), start_step=0)
    with pytest.raises(ValueError, match=r"not a metric of this evaluation.*gaussian/rho"):
        recorder.record(2, {"gaussian/rho": 0.7}, state=object())
    recorder.close()


def test_which_best_without_a_best_checkpoint_says_how_to_get_one(tmp_path):
    (tmp_path / "checkpoints" / "6").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="--config.eval.best_metric"):
        trainer.restore_for_eval(tiny_gaussian(), str(tmp_path), "best")
