"""Test set-up: four fake CPU devices, so the data-parallel paths are exercised on a laptop.

The flags must be set before JAX initialises its backends, hence at import time here.
LLVM optimisation level 0 halves XLA's CPU compile time, which dominates these small tests;
the programs compute the same values.
"""

import os
import re


def _add_xla_flags(flags: str, **wanted) -> str:
    """`flags` with each `--name=value` of `wanted` appended unless `flags` already sets it.

    A user's own XLA_FLAGS (say `--xla_cpu_max_isa=AVX2`) must add to the test set-up, not
    replace it: without the device count the multi-device tests would silently run on one.
    """
    for name, value in wanted.items():
        if not re.search(rf"--{name}(=|\s|$)", flags):
            flags = f"{flags} --{name}={value}".strip()
    return flags


os.environ["XLA_FLAGS"] = _add_xla_flags(
    os.environ.get("XLA_FLAGS", ""),
    xla_force_host_platform_device_count=4,
    xla_backend_optimization_level=0,
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402

# Tests build the same small programs several times (train.py then eval.py on one run
# directory, the same model in several tests): a per-session persistent compilation cache,
# also passed to the subprocesses through the environment, turns repeats into cache hits.
# The xdist workers of one run share it (the run's id names it): a program compiled in one
# worker is a hit in the other.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN_ID:
    _CACHE = os.path.join(tempfile.gettempdir(), f"wyner_jax_xla_cache_{_RUN_ID}")
    os.makedirs(_CACHE, exist_ok=True)
else:
    _CACHE = tempfile.mkdtemp(prefix="wyner_jax_xla_cache_")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# `gcs_bucket` and `gcs_dir`: a GCS-compatible server on 127.0.0.1 for gs:// run directories.
pytest_plugins = ["tests.gcs_server"]


def pytest_collection_modifyitems(config, items):
    """The long tests (marked ``slow``) first: with two workers a long test that starts last
    leaves the other worker idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
