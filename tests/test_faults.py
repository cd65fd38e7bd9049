"""Faults a long run must survive: a NaN batch, exact resume, preemption by SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_end_to_end import ROOT, TINY
from tests.test_wyner_model import small_config
from wyner_jax import data, faults, trainer
from wyner_jax.checkpointing import Checkpointer
from wyner_jax.models.base import build_model


class PoisonedDataset:
    """A dataset whose batch at ``bad_step`` is all NaN."""

    def __init__(self, base, bad_step):
        self.base, self.bad_step = base, bad_step

    def __getattr__(self, name):
        return getattr(self.base, name)

    def train_batch(self, step, *args, **kwargs):
        batch = self.base.train_batch(step, *args, **kwargs)
        if step == self.bad_step:
            batch = dict(batch, x=np.full_like(batch["x"], np.nan))
        return batch


def tiny(num_steps, **train):
    config = small_config()
    config.train.num_steps = num_steps
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    config.train.image_every = 0
    config.train.evaluate_at_end = False
    for k, v in train.items():
        config.train[k] = v
    return config


def test_nan_batch_stops_with_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny(6)
    dataset = PoisonedDataset(data.build(config.data), bad_step=2)  # the 3rd update
    with pytest.raises(FloatingPointError, match=r"step 3: .*gen/") as err:
        trainer.train(config, str(tmp_path), dataset=dataset)
    assert "on_nonfinite=skip" in str(err.value)
    ck = Checkpointer(str(tmp_path / "checkpoints"))
    assert ck.all_steps() == [2]
    ck.close()


class NaNParamsModel:
    """The real model, but the update of step ``bad_step`` writes NaN into the generator's
    parameters while its loss terms (computed before the update) stay finite: a non-finite
    gradient the per-step flag cannot see."""

    def __init__(self, base, bad_step):
        self.base, self.bad_step = base, bad_step

    def __getattr__(self, name):
        return getattr(self.base, name)

    def train_step(self, state, batch):
        new, metrics = self.base.train_step(state, batch)
        poison = jnp.where(state.step == self.bad_step, jnp.nan, 0.0)
        params = jax.tree_util.tree_map(lambda p: p + poison, new.gen_params)
        return new.replace(gen_params=params), metrics


# Both modes reach the same check before a save; 'stop' (the default, ~35 s of CI time)
# runs in make test-all.
@pytest.mark.parametrize("on_nonfinite", [pytest.param("stop", marks=pytest.mark.heavy), "skip"])
def test_a_nonfinite_state_behind_finite_losses_is_never_saved(tmp_path, on_nonfinite):
    config = tiny(6, on_nonfinite=on_nonfinite, log_every=1, checkpoint_every=1)
    dataset = data.build(config.data)
    model = NaNParamsModel(build_model(config, dataset), bad_step=2)  # the 3rd update
    with pytest.raises(FloatingPointError, match=r"NaN/Inf at step 3 .*non-finite gradient"):
        trainer.train(config, str(tmp_path), dataset=dataset, model=model)
    ck = Checkpointer(str(tmp_path / "checkpoints"))
    assert ck.all_steps() == [1, 2]
    ck.close()


def test_stop_applies_the_update_and_skip_discards_it():
    """Closed form on a one-parameter state: w ← w − 1, and the loss term is 1/w (Inf at 0)."""

    @chex.dataclass
    class State:
        step: jax.Array
        w: jax.Array

    def train_step(state, batch):
        return State(step=state.step + 1, w=state.w - 1.0), {"loss": 1.0 / state.w}

    toy = types.SimpleNamespace(train_step=train_step)
    # Exact comparisons: 0 − 1, 2 − 1 and 1/2 are exact in float32.
    start = State(step=jnp.asarray(0), w=jnp.asarray(0.0))
    stop_state, m, finite = jax.jit(faults.train_step_for(toy, "stop"))(start, None)
    assert not bool(finite) and float(stop_state.w) == -1.0 and int(stop_state.step) == 1
    skip_state, m, finite = jax.jit(faults.train_step_for(toy, "skip"))(start, None)
    assert not bool(finite) and float(skip_state.w) == 0.0 and int(skip_state.step) == 1
    ok_state, m, finite = jax.jit(faults.train_step_for(toy, "skip"))(
        State(step=jnp.asarray(0), w=jnp.asarray(2.0)), None
    )
    assert bool(finite) and float(ok_state.w) == 1.0 and float(m["loss"]) == 0.5
    assert bool(faults.state_is_finite(ok_state))
    assert not bool(faults.state_is_finite({"a": jnp.ones(3), "b": jnp.asarray([1.0, jnp.inf])}))
    assert bool(faults.state_is_finite({"n": jnp.arange(3)}))  # integer leaves are ignored
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        faults.train_step_for(toy, "ignore")


def test_nan_batch_is_skipped_and_counted_when_configured(tmp_path):
    config = tiny(6, on_nonfinite="skip")
    dataset = PoisonedDataset(data.build(config.data), bad_step=2)
    result = trainer.train(config, str(tmp_path), dataset=dataset)
    assert int(result.state.step) == 6
    leaves = jax.tree_util.tree_leaves(jax.device_get(result.state))
    assert all(np.all(np.isfinite(a)) for a in leaves if np.issubdtype(a.dtype, np.floating))
    records = [json.loads(l) for l in open(tmp_path / "train_metrics.jsonl")]
    assert [r["train/skipped_updates"] for r in records] == [0.0, 1.0, 1.0]

    # The count lives in the checkpoint's meta: a resumed run goes on counting from it.
    trainer.train(tiny(8, on_nonfinite="skip"), str(tmp_path), dataset=dataset)
    records = [json.loads(l) for l in open(tmp_path / "train_metrics.jsonl")]
    assert [r["step"] for r in records][-1] == 8 and records[-1]["train/skipped_updates"] == 1.0


def test_resume_is_bit_identical_to_training_straight_through(tmp_path):
    straight = trainer.train(tiny(4), str(tmp_path / "straight")).state
    trainer.train(tiny(2), str(tmp_path / "resumed"))
    resumed = trainer.train(tiny(4), str(tmp_path / "resumed")).state
    chex.assert_trees_all_equal(jax.device_get(straight), jax.device_get(resumed))


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_exits_zero(tmp_path):
    workdir = str(tmp_path / "run")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config=" + os.path.join(ROOT, "configs/digits_add1.py"),
        f"--workdir={workdir}",
        *TINY,
        "--config.train.num_steps=100000",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=100000",
        "--config.train.image_every=0",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("step 3/") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM received: saved the checkpoint of step" in out
    ck = Checkpointer(os.path.join(workdir, "checkpoints"))
    saved = ck.all_steps()
    ck.close()
    assert len(saved) == 1 and 3 <= saved[0] < 100000, (saved, out[-2000:])
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))  # no evaluation
