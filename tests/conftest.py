"""Test set-up: four fake CPU devices, so the data-parallel paths are exercised on a laptop.

The flags must be set before JAX initialises its backends, hence at import time here.
LLVM optimisation level 0 halves XLA's CPU compile time, which dominates these small tests;
the programs compute the same values.
"""
import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

# Tests build the same small programs several times (e.g. one model on 1 and on 4
# devices): a per-session persistent cache turns the repeats into cache hits.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="wyner_jax_xla_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
