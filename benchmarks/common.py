"""What the benchmark scripts share: the record of the machine they ran on and XLA's FLOP
count of a program."""

from __future__ import annotations

import os

from wyner_jax import allocator


def device_info() -> dict:
    """Platform, device kind and count, JAX version and, on CPU, the usable cores."""
    import jax

    devices = jax.devices()
    info = {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "jax_version": jax.__version__,
        # e.g. the tests' --xla_backend_optimization_level=0 would make timings meaningless.
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # glibc malloc page-faults XLA:CPU's step memory in every step (wyner_jax/allocator.py).
        "allocator": allocator.current(),
    }
    if devices[0].platform == "cpu":
        # XLA's CPU thread pool uses the cores this process may run on.
        affinity = getattr(os, "sched_getaffinity", None)  # Linux only
        info["cpu_cores"] = len(affinity(0)) if affinity else os.cpu_count()
    return info


def total_flops(cost) -> float | None:
    """The 'flops' entry of a `cost_analysis()`: a dict in current JAX, a list with one dict
    per program in older versions, None where the backend has no cost model (e.g.
    `Lowered.cost_analysis` on plugin backends such as CUDA)."""
    if cost is None:
        return None
    if isinstance(cost, dict):
        cost = [cost]
    values = [c.get("flops") for c in cost if isinstance(c, dict)]
    values = [float(v) for v in values if v is not None]
    return sum(values) if values else None
