"""The machine's matrix-product speed through JAX: the yardstick the step benchmark's GFLOP/s
are compared with (issue 6 states its targets as ratios to it).

  python benchmarks/bench_matmul.py                 # 2048 x 2048 @ 2048 x 2048, float32
  python benchmarks/bench_matmul.py --size=4096 --runs=10

Prints one JSON line: the size, dtype, median / best seconds of one product (timed to
`block_until_ready`, after one warm-up call that also compiles) and GFLOP/s = 2·n³ / time.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.common import device_info  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 2048, "n: an n x n by n x n product.")
flags.DEFINE_integer("runs", 20, "Timed products (the median is reported).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"], "Operand dtype.")


def benchmark(size: int = 2048, runs: int = 20, dtype: str = "float32") -> dict:
    import jax
    import jax.numpy as jnp

    if size < 1 or runs < 1:
        raise ValueError(f"Need --size >= 1 and --runs >= 1, got {size} and {runs}.")
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (size, size), dtype)
    b = jax.random.normal(kb, (size, size), dtype)
    # Default precision, as the model's layers use it (full f32 on CPU; TF32 may apply on GPU).
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        product(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    flops = 2.0 * size**3
    return {
        "benchmark": "matmul",
        "size": size,
        "dtype": dtype,
        **device_info(),
        "runs": runs,
        "seconds_median": round(median, 6),
        "seconds_min": round(min(times), 6),
        "gflops_per_s": round(flops / median / 1e9, 2),
        "gflops_per_s_best": round(flops / min(times) / 1e9, 2),
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        record = benchmark(FLAGS.size, FLAGS.runs, FLAGS.dtype)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
