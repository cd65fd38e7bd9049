"""Smoke tests of benchmarks/*.py (issue 6): each script runs from the command line and prints
one JSON line with the documented fields and sane values. Speeds are not checked (the
machine is shared); FLOP counting is checked against the closed form of a matrix product."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.common import total_flops
from benchmarks.synthetic import CAPTION_VOCAB_SIZE, config_shapes, shapes_dataset
from configs import cub, digits_add1, gaussian, mnist_add1, mnist_svhn, sketchy
from tests.test_end_to_end import ROOT, TINY
from tests.tolerances import tolerance
from wyner_jax import data

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import make_cub_fixture  # noqa: E402
import make_mnist_fixture  # noqa: E402
import make_sketchy_fixture  # noqa: E402

STEP_FIELDS = {
    "benchmark",
    "config",
    "model",
    "data",
    "x_shape",
    "y_shape",
    "platform",
    "device_kind",
    "device_count",
    "jax_version",
    "allocator",
    "batch",
    "steps_per_call",
    "steps",
    "warmup",
    "compile_s",
    "step_ms_median",
    "step_ms_min",
    "step_ms_max",
    "examples_per_s",
    "batch_ms",
    "flops_per_step",
    "flops_per_device_step",
    "gflops_per_s",
    "overrides",
}

# Only the joint matching term: the full D step, G step and EMA at half the compile time
# (the same program as tests/test_compilation.py, so a shared compilation cache can serve it).
ONLY_LAMBDA_J = [
    f"--config.loss.lambdas.{k}=0.0" for k, v in digits_add1.get_config().loss.lambdas.items() if v
] + ["--config.loss.lambdas.j=1.0"]


def run_script(name, *args):
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc


def record_of(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stdout  # exactly one JSON line
    return json.loads(lines[0])


def rounded_ratio(numerator, denominator, den_decimals, decimals):
    """`pytest.approx` of numerator / denominator as the scripts record it: computed from
    the unrounded denominator, then rounded to `decimals`, while the record holds the
    denominator rounded to `den_decimals` (their `round(..., n)` calls). Each rounding is at
    most half a unit of the last decimal kept: h on the denominator moves the quotient q by at
    most q·h / (denominator − h); float64 rounding on top."""
    q = numerator / denominator
    h_den, h_q = 0.5 * 10.0**-den_decimals, 0.5 * 10.0**-decimals
    slack = q * h_den / (denominator - h_den) + h_q + tolerance(q, dtype=np.float64, depth=4)
    return pytest.approx(q, rel=0, abs=slack)


def check_step_record(rec, batch, steps_per_call=1):
    assert STEP_FIELDS <= set(rec), STEP_FIELDS - set(rec)
    assert rec["benchmark"] == "train_step" and rec["batch"] == batch
    # --steps=2 --warmup=1, in whole calls of steps_per_call steps
    assert rec["steps_per_call"] == steps_per_call
    assert rec["steps"] == 2 and rec["warmup"] == (1 if steps_per_call == 1 else 2)
    assert rec["device_count"] == jax.device_count()  # conftest's fake devices reach the child
    assert rec["compile_s"] > 0
    assert 0 < rec["step_ms_min"] <= rec["step_ms_median"] <= rec["step_ms_max"]
    # bench_step.py: step_ms_median to 3 decimals, examples_per_s to 2, gflops_per_s to 3
    assert rec["examples_per_s"] == rounded_ratio(batch * 1e3, rec["step_ms_median"], 3, 2)
    # Not flops_per_step >= flops_per_device_step: the compiled (per-device) count is taken
    # after fusion, and XLA counts a producer fused into a slicing consumer at its full shape.
    assert rec["flops_per_step"] > 0 and rec["flops_per_device_step"] > 0
    gflops = rounded_ratio(rec["flops_per_step"] / 1e6, rec["step_ms_median"], 3, 3)
    assert rec["gflops_per_s"] == gflops


def test_bench_step_on_digits_real_data():
    tiny = [a for a in TINY if "train.batch_size" not in a and "eval." not in a]
    proc = run_script(
        "bench_step.py",
        "--config=configs/digits_add1.py",
        "--steps=2",
        "--warmup=1",
        "--batch=16",
        *tiny,
        *ONLY_LAMBDA_J,
    )
    rec = record_of(proc)
    check_step_record(rec, 16)
    assert rec["config"] == "configs/digits_add1.py" and rec["model"] == "wyner"
    assert rec["data"] == "real" and rec["x_shape"] == [64] and rec["y_shape"] == [64]
    assert rec["overrides"]["model.mlp.disc_features"] == 32  # the --config.* flags given


def test_bench_step_on_sketchy_shapes_without_the_data(tmp_path):
    tiny = [
        f"--config.data.dir={tmp_path}",  # empty: real data would fail
        "--config.model.mlp.encoder_features=32",
        "--config.model.mlp.decoder_hidden=(16,)",
        "--config.model.mlp.disc_features=32",
        "--config.model.disc.hidden_dim=16",
        "--config.model.dz=8",
        "--config.model.du=4",
        "--config.model.dv=4",
    ]
    args = ["--config=configs/sketchy.py", "--steps=2", "--warmup=1", "--batch=8", *tiny]
    missing = run_script("bench_step.py", *args)
    assert missing.returncode == 1
    assert "--data=shapes" in missing.stderr and "Traceback" not in missing.stderr

    # Two steps per call (one lax.scan), as config.train.steps_per_call=2 would run them.
    rec = record_of(
        run_script("bench_step.py", *args, "--data=shapes", "--steps_per_call=2", *ONLY_LAMBDA_J)
    )
    check_step_record(rec, 8, steps_per_call=2)
    assert rec["data"].startswith("shapes") and "not the dataset" in rec["data"]
    assert rec["x_shape"] == [512] and rec["y_shape"] == [512]


def test_bench_retrieval_and_matmul_print_their_records():
    rec = record_of(
        run_script("bench_retrieval.py", "--queries=300", "--gallery=500", "--dim=8", "--k=10")
    )
    assert rec["queries"] == 300 and rec["gallery"] == 500 and rec["dim"] == 8
    assert rec["seconds"] > 0 and rec["warmup_s"] > 0
    # bench_retrieval.py: seconds to 3 decimals, queries_per_s to 1
    assert rec["queries_per_s"] == rounded_ratio(300, rec["seconds"], 3, 1)
    # Random embeddings: precision at chance level (100 classes), well below 0.1.
    assert 0 <= rec["P@10"] < 0.1 and 0 < rec["mAP@all"] < 0.1

    rec = record_of(run_script("bench_matmul.py", "--size=128", "--runs=3"))
    assert rec["size"] == 128 and rec["dtype"] == "float32"
    assert 0 < rec["seconds_min"] <= rec["seconds_median"]
    # bench_matmul.py: seconds_median to 6 decimals, gflops_per_s to 2
    assert rec["gflops_per_s"] == rounded_ratio(2 * 128**3 / 1e9, rec["seconds_median"], 6, 2)


def test_flop_count_of_a_matrix_product_is_its_closed_form():
    n, m, k = 48, 32, 24
    a, b = jnp.ones((n, k)), jnp.ones((k, m))
    lowered = jax.jit(jnp.matmul).lower(a, b)
    assert total_flops(lowered.compile().cost_analysis()) == 2 * n * m * k
    assert total_flops(lowered.cost_analysis()) == 2 * n * m * k
    # Older JAX returned one dict per program in a list; no cost model gives None.
    assert total_flops([{"flops": 3.0}, {"flops": 4.0}]) == 7.0
    assert total_flops(None) is None and total_flops({"bytes accessed": 1.0}) is None


def test_shapes_registry_matches_the_loaders(tmp_path):
    """`--data=shapes` must build what each loader builds: compare with the real loaders on
    the embedded data and on the fixture files of the Sketchy, MNIST and CUB tests."""
    make_sketchy_fixture.make_fixture(str(tmp_path / "sketchy"), split=1)
    make_cub_fixture.make_fixture(str(tmp_path / "cub"))
    make_mnist_fixture.make_fixture(str(tmp_path / "tfds"))
    configs = [digits_add1.get_config("mlp"), digits_add1.get_config("conv"), gaussian.get_config()]
    configs[-1].data.dim = 3
    configs.append(sketchy.get_config())
    configs[-1].data.dir, configs[-1].data.use_tfds = str(tmp_path / "sketchy"), False
    for make in (mnist_add1.get_config, mnist_svhn.get_config):
        configs.append(make())
        configs[-1].data.tfds_dir = str(tmp_path / "tfds")
        configs[-1].data.cache_dir = str(tmp_path / "cache")
        configs[-1].data.max_per_class = configs[-1].data.test_max_per_class = 5
    configs.append(cub.get_config())
    configs[-1].data.dir, configs[-1].data.use_tfds = str(tmp_path / "cub"), False
    for config in configs:
        real = data.build(config.data)
        x_shape, y_shape, num_classes = config_shapes(config.data)
        assert (x_shape, y_shape) == (real.x_shape, real.y_shape), config.data.name
        if config.data.name != "sketchy":  # the fixture holds a subset of the 125 classes
            assert num_classes == real.num_classes, config.data.name
        fake = shapes_dataset(config.data, 8)
        batch = fake.train_batch(0, 8, 0)
        assert batch["x"].shape == (8, *x_shape) and batch["y"].shape == (8, *y_shape)
        real_batch = real.train_batch(0, 8, 0)
        assert batch["x"].dtype == real_batch["x"].dtype
        assert batch["y"].dtype == real_batch["y"].dtype  # int32 token ids for captions
        if config.data.name == "cub":  # what the caption networks are built from
            assert fake.vocab_size == CAPTION_VOCAB_SIZE and fake.y_std.shape == real.y_std.shape
            assert batch["y"].min() >= 3 and batch["y"].max() < CAPTION_VOCAB_SIZE
    config = digits_add1.get_config()
    config.data.name = "unknown"
    with pytest.raises(ValueError, match="synthetic.py"):
        config_shapes(config.data)
