"""Times one training iteration (discriminator step, generator step, EMA) of a config: the
exact compiled step train.py runs, on the default devices.

  python benchmarks/bench_step.py --config=configs/digits_add1.py
  python benchmarks/bench_step.py --config=configs/sketchy.py --data=shapes --batch=64
  python benchmarks/bench_step.py --config=configs/digits_add1.py --config.model.dz=32

Prints one JSON line: compile seconds, step time (median / min / max ms, each step timed to
`block_until_ready` after the warm-up steps), examples/s, and the step's FLOPs from XLA's cost
analysis (`flops_per_step`: the whole step over the global batch; `flops_per_device_step`:
the partitioned program each device runs) with the GFLOP/s they imply.

`--data=shapes` replaces the dataset by random arrays of the config's x/y shapes
(benchmarks/synthetic.py; no files needed, and the output says so): the step's cost depends
on the shapes only. The batch is built once and reused, so the times are the compiled step alone
(`batch_ms` reports what building and placing one batch costs, separately).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

# The configs import `configs.default`, which lives at the repository root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

if __name__ == "__main__":  # before JAX starts: the allocator train.py runs with
    from wyner_jax import allocator

    allocator.use_caching_allocator()

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from benchmarks.common import device_info, total_flops  # noqa: E402
from benchmarks.synthetic import SHAPES_LABEL, shapes_dataset  # noqa: E402

DATA_MODES = ("real", "shapes")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
flags.DEFINE_integer("batch", None, "Global batch size (default: config.train.batch_size).")
flags.DEFINE_integer("steps", 20, "Timed steps (after the warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
flags.DEFINE_integer(
    "steps_per_call",
    None,
    "Steps per compiled call, one lax.scan (default: config.train.steps_per_call).",
)
flags.DEFINE_enum(
    "data",
    "real",
    DATA_MODES,
    "'real': the config's dataset; 'shapes': random arrays of its x/y shapes.",
)


def benchmark(
    config,
    batch_size: int | None = None,
    steps: int = 20,
    warmup: int = 3,
    data_mode: str = "real",
    config_name: str = "",
    steps_per_call: int | None = None,
) -> dict:
    """Compiles and times the training step of ``config``; returns the JSON record."""
    import jax

    from wyner_jax import data, faults, parallel, trainer
    from wyner_jax.models.base import build_model

    if data_mode not in DATA_MODES:
        raise ValueError(f"--data must be one of {DATA_MODES}, got {data_mode!r}.")
    if steps < 1 or warmup < 0:
        raise ValueError(f"Need --steps >= 1 and --warmup >= 0, got {steps} and {warmup}.")
    K = int(steps_per_call or config.train.steps_per_call)
    if K < 1:
        raise ValueError(f"Need --steps_per_call >= 1, got {K}.")
    # Whole calls: the timed and warm-up steps rounded up to multiples of K.
    warmup_calls, timed_calls = -(-warmup // K), -(-steps // K)
    B = int(batch_size or config.train.batch_size)
    config.train.batch_size = B  # create_state builds its example batch with this size
    mesh = parallel.make_mesh()
    parallel.check_batch_size(B, mesh, what="--batch")
    if data_mode == "real":
        try:
            dataset = data.build(config.data)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e}\nTo time the step without the data, pass --data=shapes (random arrays "
                "of the same shapes)."
            ) from e
    else:
        dataset = shapes_dataset(config.data, B, config.seed)
    model = build_model(config, dataset)
    state = trainer.create_state(model, config, dataset, mesh)
    # The step train.py runs: with on_nonfinite='skip' it also keeps or discards each update;
    # with steps_per_call > 1, K of them per call in one lax.scan, as the loop runs them.
    step_fn = faults.train_step_for(model, config.train.on_nonfinite)

    t0 = time.perf_counter()
    host_batch = dataset.train_batch(0, B, config.seed)
    batch = parallel.global_batch(host_batch, mesh)
    jax.block_until_ready(batch)
    batch_ms = (time.perf_counter() - t0) * 1e3
    if K > 1:  # the same batch K times: the cost depends on the shapes only
        program, inputs = parallel.compile_train_steps(step_fn, mesh), parallel.global_batches(
            [host_batch] * K, mesh
        )
    else:
        program, inputs = parallel.compile_train_step(step_fn, mesh), batch

    t0 = time.perf_counter()
    lowered = program.lower(state, inputs)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    # FLOPs of one step. The lowered program is the whole step over the global batch; the
    # compiled one is what each device runs after partitioning (its share of the batch plus
    # the replicated update). XLA's cost analysis counts a loop body once, so for a K-step
    # call these are one step's FLOPs too (checked: the same count for K = 1 and K = 4).
    flops_device = total_flops(compiled.cost_analysis())
    flops = total_flops(lowered.cost_analysis())
    if flops is None and mesh.devices.size == 1:
        flops = flops_device

    times = []
    for i in range(warmup_calls + timed_calls):
        t0 = time.perf_counter()
        state, metrics, finite = compiled(state, inputs)
        jax.block_until_ready((state, metrics, finite))
        if i >= warmup_calls:
            times.append((time.perf_counter() - t0) / K)
    if not bool(jax.device_get(finite).all()):
        bad = faults.nonfinite_terms(
            {k: v.reshape(-1)[-1] for k, v in jax.device_get(metrics).items()}
        )
        raise FloatingPointError(
            f"The timed step produced non-finite loss terms ({', '.join(bad)}); the timing "
            "is not that of a healthy step. Check the config's learning rates."
        )
    median = statistics.median(times)
    record = {
        "benchmark": "train_step",
        "config": config_name,
        "model": config.model.name,
        "data": "real" if data_mode == "real" else SHAPES_LABEL,
        "x_shape": list(dataset.x_shape),
        "y_shape": list(dataset.y_shape),
        **device_info(),
        "batch": B,
        "on_nonfinite": config.train.on_nonfinite,
        "steps_per_call": K,
        "steps": timed_calls * K,
        "warmup": warmup_calls * K,
        "compile_s": round(compile_s, 3),
        "step_ms_median": round(median * 1e3, 3),
        "step_ms_min": round(min(times) * 1e3, 3),
        "step_ms_max": round(max(times) * 1e3, 3),
        "examples_per_s": round(B / median, 2),
        "batch_ms": round(batch_ms, 3),
        "flops_per_step": flops,
        "flops_per_device_step": flops_device,
        "gflops_per_s": round(flops / median / 1e9, 3) if flops else None,
    }
    return record


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from wyner_jax.cli import USER_ERRORS

    name = config_flags.get_config_filename(FLAGS["config"])
    try:
        record = benchmark(
            FLAGS.config,
            FLAGS.batch,
            FLAGS.steps,
            FLAGS.warmup,
            FLAGS.data,
            name,
            FLAGS.steps_per_call,
        )
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    # The --config.* overrides, so the record says exactly what ran.
    record["overrides"] = config_flags.get_override_values(FLAGS["config"])
    print(json.dumps(record, default=str), flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
