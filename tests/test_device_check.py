"""benchmarks/device_check.sh, the accelerator speed table (issue 24): the table's arithmetic
on known records, and the script end to end on a CPU at a tiny size (make test-all)."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import device_table
from tests.test_end_to_end import ROOT


def record(**kw):
    r = {
        "config": "configs/sketchy.py",
        "batch": 64,
        "steps_per_call": 1,
        "step_ms_median": 20.0,
        "examples_per_s": 3200.0,
        "flops_per_step": 4.0e12,
        "device_kind": "NVIDIA H100 80GB HBM3",
        "device_count": 1,
        "jax_version": "0",
        "overrides": {"model.compute_dtype": "bfloat16"},
    }
    r.update(kw)
    return r


def test_table_reports_achieved_tflops_and_the_share_of_the_bf16_peak():
    rows = device_table.table([record(), record(device_kind="cpu", flops_per_step=None)])
    lines = rows.splitlines()
    # 4e12 FLOPs in 20 ms: 200 TFLOP/s, 20.2 % of an H100's 989 dense bf16 TFLOP/s.
    assert lines[2] == "| configs/sketchy.py | 64 | bfloat16 | 1 | 20.00 | 3200 | 200.00 | 20.2 |"
    assert lines[3].endswith("| – | – |")  # no cost model, no known peak
    two = device_table.table([record(device_count=2)]).splitlines()[2]
    assert two.endswith("| 200.00 | 10.1 |")  # the peak of both devices
    assert device_table.peak_tflops("NVIDIA H200") == 989.0
    assert device_table.peak_tflops("TPU v9") is None


@pytest.mark.heavy
def test_device_check_runs_end_to_end_at_a_tiny_size_on_cpu(tmp_path):
    env = dict(
        os.environ,
        DEVICE_CHECK_TINY="1",
        OUT=str(tmp_path),
        PYTHON=sys.executable,
        RUN_LIMIT_S="600",
    )
    env.pop("XLA_FLAGS", None)  # the tests' 4 fake devices and -O0 would skew the table
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmarks/device_check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(l) for l in open(tmp_path / "device_check.jsonl")]
    assert [(r["batch"], r["steps_per_call"]) for r in records] == [(8, 1), (8, 2)]
    assert [r["overrides"]["model.compute_dtype"] for r in records] == ["float32", "bfloat16"]
    table = proc.stdout.splitlines()
    assert table[0].startswith("| config | batch | precision")
    assert len([l for l in table if l.startswith("| configs/digits_add1.py")]) == 2
