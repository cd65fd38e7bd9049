"""Multi-host training: 2 processes × 2 CPU devices (gloo collectives over 127.0.0.1) must
take the same steps as 1 process × 4 devices."""

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest
from etils import epath

from tests.test_end_to_end import ROOT, TINY
from tests.test_faults import tiny
from tests.tolerances import assert_trees_close
from wyner_jax import trainer
from wyner_jax.checkpointing import Checkpointer

# Fewer loss terms, a smaller program: three compiles (two processes and the reference run)
# share the 2 cores of a CI machine. The step is still D update, G update and EMA.
NO_RECONSTRUCTION = ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_processes(workdir: str, *args: str) -> list[subprocess.Popen]:
    """train.py as 2 processes × 2 CPU devices on the tiny digits config; ``args`` are more
    flags (later ones win)."""
    port = free_port()
    # The session's flags (conftest's and any the user set, e.g. --xla_cpu_max_isa) with two
    # devices a process instead of four.
    flags = re.sub(
        r"--xla_force_host_platform_device_count=\d+",
        "--xla_force_host_platform_device_count=2",
        os.environ["XLA_FLAGS"],
    )
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    common = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config=" + os.path.join(ROOT, "configs/digits_add1.py"),
        f"--workdir={workdir}",
        *TINY,
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        *[f"--config.loss.lambdas.{k}=0.0" for k in NO_RECONSTRUCTION],
        *args,
    ]
    return [
        _popen_with_logs(common + [f"--process_id={i}"], env, pipe_stdout=i == 0) for i in range(2)
    ]


def _popen_with_logs(cmd, env, pipe_stdout: bool) -> subprocess.Popen:
    """Only process 0's stdout is a pipe (the test reads its progress lines as they come);
    every other stream goes to a file. With pipes, ``finish`` would drain process 0 first
    while process 1 blocks on a full stderr pipe (64 KiB: a slow machine's warnings) inside
    a collective that process 0 waits on: both hang."""
    logs = {name: tempfile.TemporaryFile("w+") for name in ("stdout", "stderr")}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if pipe_stdout else logs["stdout"],
        stderr=logs["stderr"],
        text=True,
    )
    proc.logs = logs
    return proc


def finish(procs, timeout: int = 600) -> list[subprocess.CompletedProcess]:
    results = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            text = {}
            for name, f in p.logs.items():
                f.seek(0)
                text[name] = f.read()
                f.close()
            stdout = out if out is not None else text["stdout"]
            results.append(
                subprocess.CompletedProcess(p.args, p.returncode, stdout, text["stderr"])
            )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


@pytest.mark.slow
@pytest.mark.parametrize(
    "against_a_straight_run", [False, pytest.param(True, marks=pytest.mark.heavy)]
)
def test_a_preemption_notice_to_one_worker_stops_every_worker_at_one_step(
    tmp_path, gcs_dir, against_a_straight_run
):
    """SIGTERM to process 1 only: both processes agree (faults.agreed_stop), save one
    checkpoint of the same step, exit 0; a restart resumes from it.

    The run's directory is a gs:// prefix on the test's GCS server (the pod case: both
    processes write one bucket); train_metrics.jsonl there keeps every line across the resume
    (an appended object would keep only the resumed run's lines). Then eval.py evaluates the
    bucket's run with its own config.json.

    The resumed run is the multi-host check: 2 processes × 2 devices take the same steps as
    1 process × 4 devices (trained here, in this process), up to the order of the
    cross-process reductions; only process 0 prints and logs, and it draws the image grids
    mid-run (image_every=2). A resume that lost or repeated a step, or restored the wrong
    RNG, is off by orders of magnitude more than that rounding.

    ``against_a_straight_run`` (make test-all; a third two-process launch, ~1 minute of CI
    time): the resumed run also equals a two-process run straight through, bit for bit, the
    logged numbers included (same programs, same process layout; the single-process case of
    this is tests/test_faults.py's resume test)."""
    assert jax.device_count() == 4, "conftest sets 4 fake CPU devices"
    workdir = str(gcs_dir / "run")
    run_flags = (
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=100000",
        "--config.train.image_every=2",  # figures on process 0 only, mid-run
        "--config.train.evaluate_at_end=False",
    )
    procs = start_two_processes(workdir, "--config.train.num_steps=100000", *run_flags)
    deadline = time.time() + 300
    for line in procs[0].stdout:  # only process 0 prints progress
        if line.startswith("step 3/") or time.time() > deadline:
            break
    procs[1].send_signal(signal.SIGTERM)  # the notice reaches one worker
    results = finish(procs, timeout=240)
    for i, r in enumerate(results):
        assert r.returncode == 0, f"process {i}:\n{r.stderr[-3000:]}"
    assert "SIGTERM received: saved the checkpoint of step" in results[0].stdout
    ck = Checkpointer(gcs_dir / "run" / "checkpoints")
    saved = ck.all_steps()
    ck.close()
    assert len(saved) == 1 and 3 <= saved[0] < 100000, saved
    stop = saved[0]

    # Resume for two more steps (and, in make test-all, two processes straight through).
    resumed = finish(
        start_two_processes(workdir, f"--config.train.num_steps={stop + 2}", *run_flags)
    )
    runs = [(gcs_dir / "run", resumed)]
    if against_a_straight_run:
        straight_dir = tmp_path / "straight"
        straight = finish(
            start_two_processes(
                str(straight_dir), f"--config.train.num_steps={stop + 2}", *run_flags
            )
        )
        runs.append((epath.Path(straight_dir), straight))
    for _, results in runs:
        for r in results:
            assert r.returncode == 0, r.stderr[-3000:]
        assert f"step {stop + 2}/{stop + 2}" in results[0].stdout
        assert "step " not in results[1].stdout  # only process 0 prints progress
    assert f"Resumed from {workdir}/checkpoints/{stop}" in resumed[0].stdout
    states, logs = [], []
    for d, _ in runs:
        ck = Checkpointer(d / "checkpoints")
        state, step = ck.restore(trainer_state_template())
        ck.close()
        assert step == stop + 2
        states.append(jax.device_get(state))
        records = (d / "train_metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["step"] for r in records] == list(range(1, stop + 3))
        logs.append(records)
    if against_a_straight_run:
        jax.tree_util.tree_map(np.testing.assert_array_equal, states[0], states[1])
        assert logs[0] == logs[1]  # the same numbers logged, every line once
    _check_one_process_takes_the_same_steps(states[0], stop + 2, tmp_path)

    # eval.py --workdir=gs://... alone: the run's own config.json, from the bucket.
    evaluate = [sys.executable, os.path.join(ROOT, "eval.py"), f"--workdir={workdir}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(evaluate, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((gcs_dir / "run" / "metrics.json").read_text())
    assert metrics["train/step"] == stop + 2
    assert 0.0 <= metrics["coherence/x2y"] <= 1.0
    assert (gcs_dir / "run" / "figures" / "x2y_grid.png").read_bytes().startswith(b"\x89PNG")


def _check_one_process_takes_the_same_steps(multi, steps: int, tmp_path) -> None:
    """``multi`` (the state of 2 processes × 2 devices after ``steps`` steps) against
    1 process × 4 devices trained here on the same config."""
    config = tiny(steps)
    for k in NO_RECONSTRUCTION:
        config.loss.lambdas[k] = 0.0
    single = jax.device_get(trainer.train(config, str(tmp_path / "one_process")).state)
    # Same batches, same keys, same global-batch statistics; only the order of the
    # cross-process reductions differs (an all-reduce over 2 processes × 2 devices against
    # one over 4 devices), so the two runs agree up to rounding, each leaf at its own scale.
    params = ("gen_params", "disc_params", "ema_params")
    others = [f.name for f in dataclasses.fields(single) if f.name not in params]

    def part(state, names):
        return {k: getattr(state, k) for k in names}

    # Optimiser moments (running sums of the gradients), BatchNorm / spectral-norm statistics,
    # RNG and step: each step a D and a G update whose gradients pass through the networks'
    # layers and the 16-row global-batch reductions: depth steps·2·64. Measured at 3 steps
    # (AMD EPYC, AVX2, 2 cores): at most 242·eps·scale (ν of F_x's kernel), 13× below the
    # bound; feeding each process's rows as the whole batch (a per-process batch statistic)
    # is off by 2.7e5 to 4e7·eps·scale.
    rounding_depth = steps * 2 * 64
    assert_trees_close(part(multi, others), part(single, others), depth=rounding_depth)
    # Parameters and EMA: Adam steps by m̂/√v̂, normalised, so an entry whose gradient is itself
    # at rounding level moves by a fraction of lr that the rounding decides. Measured at 3
    # steps: one entry of g_x's kernel (of 2,048) 0.1·lr apart, 1,319·eps·scale; the bound, 6×
    # the depth above, is 14× that, and the per-process batch is off by 1.3e7·eps·scale.
    assert_trees_close(part(multi, params), part(single, params), depth=6 * rounding_depth)


def trainer_state_template():
    """An abstract Wyner state of the tiny digits config on this process's devices, to restore
    the two-process checkpoints into."""
    config = tiny(1)
    for k in NO_RECONSTRUCTION:
        config.loss.lambdas[k] = 0.0
    from wyner_jax import data, parallel
    from wyner_jax.models.base import build_model

    dataset = data.build(config.data)
    mesh = parallel.make_mesh()
    return trainer.abstract_state(build_model(config, dataset), config, dataset, mesh)
