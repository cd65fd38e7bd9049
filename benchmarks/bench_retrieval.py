"""Times zero-shot retrieval scoring (paper §6.6: P@100 and mAP@all of every query against
the whole gallery) with `wyner_jax.evaluation.retrieval.retrieval_metrics`, on the default
device, at Sketchy Extended's size (about 15k test sketches x 15k test photos, 64-d codes).

  python benchmarks/bench_retrieval.py
  python benchmarks/bench_retrieval.py --queries=2000 --gallery=5000 --dim=64 --chunk_size=512

Embeddings are random normal vectors with random labels (`--classes`), so the metrics are at
chance (P@100 ≈ 1/classes): only the time is meaningful. A warm-up call on one chunk of
queries compiles the chunk program (`warmup_s`); then the whole query set is timed
(`seconds`, `queries_per_s`). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from benchmarks.common import device_info  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("queries", 15000, "Number of queries.")
flags.DEFINE_integer("gallery", 15000, "Number of gallery items.")
flags.DEFINE_integer("dim", 64, "Embedding dimension.")
flags.DEFINE_integer("classes", 100, "Number of random labels.")
flags.DEFINE_integer("k", 100, "Cut-off of P@k.")
flags.DEFINE_integer("chunk_size", 1024, "Queries ranked at once (retrieval_metrics' chunk).")
flags.DEFINE_enum("metric", "cosine", ["cosine", "euclidean"], "Distance.")


def benchmark(
    queries: int = 15000,
    gallery: int = 15000,
    dim: int = 64,
    classes: int = 100,
    k: int = 100,
    chunk_size: int = 1024,
    metric: str = "cosine",
    seed: int = 0,
) -> dict:
    import numpy as np

    from wyner_jax.evaluation.retrieval import retrieval_metrics

    if min(queries, gallery, dim, classes, chunk_size) < 1:
        raise ValueError("--queries, --gallery, --dim, --classes and --chunk_size must be >= 1.")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    g = rng.standard_normal((gallery, dim)).astype(np.float32)
    q_labels = rng.integers(0, classes, queries).astype(np.int32)
    g_labels = rng.integers(0, classes, gallery).astype(np.int32)
    args = dict(ks=(k,), metric=metric, chunk_size=chunk_size)

    # One chunk of queries: the same chunk shape as the full run, so this compiles it.
    n_warm = min(chunk_size, queries)
    t0 = time.perf_counter()
    retrieval_metrics(q[:n_warm], g, q_labels[:n_warm], g_labels, **args)
    warmup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics = retrieval_metrics(q, g, q_labels, g_labels, **args)  # returns host floats
    seconds = time.perf_counter() - t0
    return {
        "benchmark": "retrieval",
        "queries": queries,
        "gallery": gallery,
        "dim": dim,
        "classes": classes,
        "metric": metric,
        "chunk_size": chunk_size,
        "data": "random normal embeddings, random labels",
        **device_info(),
        "warmup_s": round(warmup_s, 3),
        "seconds": round(seconds, 3),
        "queries_per_s": round(queries / seconds, 1),
        f"P@{k}": round(metrics[f"P@{k}"], 5),
        "mAP@all": round(metrics["mAP@all"], 5),
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        record = benchmark(
            FLAGS.queries,
            FLAGS.gallery,
            FLAGS.dim,
            FLAGS.classes,
            FLAGS.k,
            FLAGS.chunk_size,
            FLAGS.metric,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
