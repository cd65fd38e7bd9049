"""Multi-host training: 2 processes × 2 CPU devices (gloo collectives over 127.0.0.1) must
take the same steps as 1 process × 4 devices."""

import json
import os
import socket
import subprocess
import sys

import chex
import jax
import pytest

from tests.test_end_to_end import ROOT, TINY
from tests.test_faults import tiny
from wyner_jax import trainer
from wyner_jax.checkpointing import Checkpointer

STEPS = 3
# Fewer loss terms, a smaller program: three compiles (two processes and the reference run)
# share the 2 cores of a CI machine. The step is still D update, G update and EMA.
NO_RECONSTRUCTION = ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(workdir: str) -> list[subprocess.CompletedProcess]:
    port = free_port()
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    common = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config=" + os.path.join(ROOT, "configs/digits_add1.py"),
        f"--workdir={workdir}",
        *TINY,
        f"--config.train.num_steps={STEPS}",
        "--config.train.log_every=1",
        f"--config.train.checkpoint_every={STEPS}",
        "--config.train.image_every=2",  # figures on process 0 only, mid-run
        "--config.train.evaluate_at_end=False",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        *[f"--config.loss.lambdas.{k}=0.0" for k in NO_RECONSTRUCTION],
    ]
    procs = [
        subprocess.Popen(
            common + [f"--process_id={i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(tmp_path):
    assert jax.device_count() == 4, "conftest sets 4 fake CPU devices"
    multi = str(tmp_path / "two_processes")
    results = launch_two_processes(multi)
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}:\n{r.stderr[-3000:]}"
    # Only process 0 prints progress and writes logs: one record per step, not two.
    assert f"step {STEPS}/{STEPS}" in results[0].stdout
    assert "step " not in results[1].stdout
    records = [json.loads(l) for l in open(os.path.join(multi, "train_metrics.jsonl"))]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))

    config = tiny(STEPS)
    for k in NO_RECONSTRUCTION:
        config.loss.lambdas[k] = 0.0
    single = trainer.train(config, str(tmp_path / "one_process")).state
    ckpt = Checkpointer(os.path.join(multi, "checkpoints"))
    restored, step = ckpt.restore(single)
    ckpt.close()
    assert step == STEPS
    # Same batches, same keys, same global-batch statistics; only the order of the
    # cross-process reductions differs.
    # Parameters, optimiser moments, EMA, BatchNorm/spectral-norm statistics, RNG and step.
    chex.assert_trees_all_close(
        jax.device_get(restored), jax.device_get(single), rtol=1e-4, atol=1e-6
    )
