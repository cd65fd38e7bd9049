"""Device mesh, global batches and the data-parallel compiled step.

Why not pmap: a pmapped step makes every batch-level estimator per-device (BatchNorm
statistics, the batch shuffle of the CI penalty, log-mean-exp objectives) and is in
maintenance mode. Instead the step is written with global-batch semantics and compiled once
with ``jax.jit`` over a 1-D ``('data',)`` mesh of every device of every process: the batch is
sharded along ``'data'``, the state is replicated and donated, and XLA inserts the
collectives. The same config therefore gives the same parameters on 1 or N devices.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Calls ``jax.distributed.initialize`` when launched as several processes.

    Explicit arguments win; otherwise JAX's own environment detection is used (TPU pods,
    SLURM, Open MPI) when one of the usual variables is set. A single process does nothing.
    """
    if coordinator_address or (num_processes or 0) > 1:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif any(
        v in os.environ
        for v in (
            "JAX_COORDINATOR_ADDRESS",
            "SLURM_NTASKS",
            "OMPI_COMM_WORLD_SIZE",
            "TPU_WORKER_HOSTNAMES",
        )
    ):
        jax.distributed.initialize()
    if jax.process_count() > 1:
        logging.info(
            "Process %d of %d, %d local / %d global devices.",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
        )


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``('data',)`` mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def batches_sharded(mesh: Mesh) -> NamedSharding:
    """Several steps' batches stacked on a leading axis: each step's rows over ``'data'``."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "config.train.batch_size") -> None:
    """The global batch must split evenly over the devices (and over the processes)."""
    n = mesh.devices.size
    if batch_size % n:
        lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
        raise ValueError(
            f"{what} = {batch_size} does not divide over the {n} devices of the mesh; use a "
            f"multiple of {n}, e.g. {what.split('.')[-1]}={upper}"
            + (f" or {lower}" if lower else "")
            + "."
        )


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Builds global arrays sharded over ``'data'`` from this process's rows of the batch."""
    sharding = batch_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def global_batches(local_batches: list[dict[str, np.ndarray]], mesh: Mesh) -> dict:
    """``global_batch`` of several steps' batches, stacked: [steps, global batch, ...] with
    the batch axis over ``'data'`` (the input of ``compile_train_steps``)."""
    sharding = batches_sharded(mesh)
    return {
        k: jax.make_array_from_process_local_data(
            sharding, np.stack([np.asarray(b[k]) for b in local_batches])
        )
        for k in local_batches[0]
    }


def replicate(tree, mesh: Mesh):
    """Places a host pytree on every device of the mesh (fully replicated)."""
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding), tree)


def local_copy(tree):
    """A replicated global pytree as arrays on this process's first device.

    Evaluation and figures run per process on its own copy of the (replicated) state: a
    computation on the global arrays would be a multi-process program that every process
    must enter, whereas only process 0 draws figures and each process evaluates on its own.
    """
    if jax.process_count() == 1:
        return tree
    device = jax.local_devices()[0]

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return jax.device_put(a.addressable_data(0), device)
        return a

    return jax.tree_util.tree_map(one, tree)


# XLA:CPU compile options of the train step. The state is donated, so every updated
# parameter and optimiser slot is written into its input's buffer. XLA:CPU's default copy
# insertion cannot tell that all reads of the old value come before that write and copies
# the input first (123 copies of parameters and Adam moments per Sketchy step, at the start
# of the step); its region analysis can, and leaves none. Same program otherwise: the
# results are bit-identical (tests/test_compilation.py), Sketchy steps 7–9 % faster
# (benchmarks/README.md).
CPU_COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


@functools.cache
def cpu_compiler_options() -> dict | None:
    """``CPU_COMPILER_OPTIONS`` if this jaxlib has them, else None (they are XLA debug
    options, which another jaxlib may rename or drop: the step then compiles without)."""
    try:
        jax.jit(lambda v: v + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
            np.float32(0)
        ).compile()
    except jax.errors.JaxRuntimeError as e:  # "No such compile option: ..."
        logging.warning("Compiling without %s: %s", CPU_COMPILER_OPTIONS, e)
        return None
    return CPU_COMPILER_OPTIONS


def _jit_step(fn: Callable, mesh: Mesh, batch_sharding: NamedSharding) -> Callable:
    """``jit(fn)`` with the state replicated and donated, the batch(es) sharded as given, every
    output replicated; on CPU with ``cpu_compiler_options()``."""
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    return jax.jit(
        fn,
        in_shardings=(replicated(mesh), batch_sharding),
        out_shardings=replicated(mesh),
        donate_argnums=(0,),
        compiler_options=cpu_compiler_options() if on_cpu else None,
    )


def compile_train_step(step_fn: Callable, mesh: Mesh) -> Callable:
    """``jit(step_fn)`` with the state replicated and donated, the batch sharded, and every
    output (state, metrics, flags) replicated; on CPU with ``cpu_compiler_options()``."""
    return _jit_step(step_fn, mesh, batch_sharded(mesh))


def scan_steps(step_fn: Callable) -> Callable:
    """``step_fn(state, batch) -> (state, metrics, finite)`` ⟶ ``steps(state, batches)``: one
    ``step_fn`` per leading index of ``batches`` inside one ``lax.scan``, returning the last
    state and every step's metrics and flag stacked on a leading axis."""

    def body(state, batch):
        state, metrics, finite = step_fn(state, batch)
        return state, (metrics, finite)

    def steps(state, batches):
        state, (metrics, finite) = jax.lax.scan(body, state, batches)
        return state, metrics, finite

    return steps


def compile_train_steps(step_fn: Callable, mesh: Mesh) -> Callable:
    """``compile_train_step`` for several steps per call (``config.train.steps_per_call``):
    ``jit(scan_steps(step_fn))`` on batches stacked by ``global_batches``. One host dispatch
    and one program launch per call instead of per step; compiled once per number of steps."""
    return _jit_step(scan_steps(step_fn), mesh, batches_sharded(mesh))
