"""Faults a long run must survive: a NaN batch, exact resume, preemption by SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from tests.test_end_to_end import ROOT, TINY
from tests.test_wyner_model import small_config
from wyner_jax import data, trainer
from wyner_jax.checkpointing import Checkpointer


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
