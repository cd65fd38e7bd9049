"""A caching memory allocator (tcmalloc or jemalloc) for the entry points, chosen before JAX starts.

Why: XLA:CPU allocates a step's temporaries afresh at every execution. glibc's ``malloc`` serves
blocks above its mmap threshold (at most 32 MiB) with ``mmap`` and gives them back to the kernel
on ``free``, so every step page-faults its whole working set in again: measured on the 2-core
dev machine, the Sketchy step at batch 64 took ~50,000 minor page faults per step (~200 MB
zeroed by the kernel) and 165-175 ms; with tcmalloc preloaded, ~2,400 faults and 120-130 ms.
MNIST-SVHN: 4.46 s -> 4.02 s per step (benchmarks/README.md). glibc's own knobs do not fix it
(``MALLOC_MMAP_MAX_=0`` plus ``MALLOC_ARENA_MAX=1`` removes the faults but serialises the
threads on one arena: 150 ms). Cloud TPU VM images preload tcmalloc for the same reason.

A library can only replace the allocator of a process before that process starts, so
``use_caching_allocator()`` — called first thing by ``train.py``, ``eval.py``, the sweep, the
comparison and ``benchmarks/bench_step.py`` — re-executes the same command once with ``LD_PRELOAD`` set when a
tcmalloc or jemalloc shared library is installed (Debian/Ubuntu: ``apt install
libtcmalloc-minimal4`` or ``libjemalloc2``). ``WYNER_JAX_ALLOCATOR`` chooses:

* ``auto`` (default): the first installed of tcmalloc, jemalloc; nothing when neither is, and
  nothing when the run will use an accelerator (``JAX_PLATFORMS`` names no CPU first, or a GPU
  or TPU device file exists and ``JAX_PLATFORMS`` does not ask for the CPU): the page faults
  above are XLA:CPU's, so there the re-execution would change nothing but what a profiler
  sees;
* ``system``: never re-execute (glibc malloc, or whatever ``LD_PRELOAD`` already says);
* a path to a shared library: preload that one.

Nothing happens off Linux, when ``LD_PRELOAD`` already names an allocator, or when JAX has
already been imported (the allocator could not be swapped for it anyway). This module must not
import JAX.
"""

from __future__ import annotations

import os
import sys

ENV = "WYNER_JAX_ALLOCATOR"
# Set in the re-executed process: the choice is made once, never in a loop.
_DONE = "WYNER_JAX_ALLOCATOR_CHOSEN"

# Shared-library names in order of preference (tcmalloc measured fastest here).
LIBRARIES = (
    "libtcmalloc_minimal.so.4",
    "libtcmalloc.so.4",
    "libjemalloc.so.2",
)
SEARCH_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)
# Per-library settings, applied only where the user has not set them:
# * tcmalloc reports every allocation above 1 GiB on stderr by default; XLA makes such
#   allocations routinely at large batch sizes.
# * jemalloc serves blocks above 8 MiB from an arena that returns them to the kernel at once
#   (the glibc behaviour this module avoids); oversize_threshold:0 turns that arena off.
# Device files of the accelerators JAX runs on: NVIDIA and AMD GPUs, TPU VMs (v4: accel,
# v5e and later: vfio groups).
ACCELERATOR_DEVICES = ("/dev/nvidia0", "/dev/kfd", "/dev/accel0", "/dev/vfio/0")
SETTINGS = {
    "tcmalloc": {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)},
    "jemalloc": {"MALLOC_CONF": "oversize_threshold:0"},
}


def _kind(path: str) -> str | None:
    name = os.path.basename(path)
    for kind in SETTINGS:
        if kind in name:
            return kind
    return None


def find_library(search_dirs=SEARCH_DIRS) -> str | None:
    """The path of the first installed library of ``LIBRARIES``, or None."""
    for name in LIBRARIES:
        for d in search_dirs:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    return None


def runs_on_accelerator(env: dict, device_files=ACCELERATOR_DEVICES) -> bool:
    """Whether JAX will pick a GPU/TPU: ``JAX_PLATFORMS`` decides when set (its first entry),
    otherwise the presence of an accelerator's device file."""
    platforms = env.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() != "cpu"
    return any(os.path.exists(f) for f in device_files)


def preload_env(
    env: dict,
    platform: str = sys.platform,
    search_dirs=SEARCH_DIRS,
    device_files=ACCELERATOR_DEVICES,
) -> dict | None:
    """The environment to re-execute with, or None to run as is (a pure function of its input).

    Raises ValueError for a ``WYNER_JAX_ALLOCATOR`` that is neither a mode nor an existing file.
    """
    choice = env.get(ENV, "auto").strip() or "auto"
    if platform != "linux" or env.get(_DONE) or choice == "system":
        return None
    preloaded = env.get("LD_PRELOAD", "")
    if any(_kind(p) for p in preloaded.replace(":", " ").split()):
        return None
    if choice == "auto":
        if runs_on_accelerator(env, device_files):
            return None
        path = find_library(search_dirs)
        if path is None:
            return None
    elif os.path.isfile(choice):
        path = choice
    else:
        raise ValueError(
            f"{ENV}={choice!r} is neither 'auto', 'system' nor an existing shared library; "
            f"set it to one of those (e.g. {ENV}=system for the default allocator)."
        )
    new = dict(env)
    new["LD_PRELOAD"] = f"{path} {preloaded}".strip()
    new[_DONE] = path
    for key, value in SETTINGS.get(_kind(path) or "", {}).items():
        new.setdefault(key, value)
    return new


def current() -> str:
    """The allocator this process runs with: the preloaded library's path, or 'system'."""
    return os.environ.get(_DONE) or "system"


def use_caching_allocator() -> None:
    """Re-executes this command with tcmalloc/jemalloc preloaded when that applies (see the
    module docstring); returns normally otherwise. Call it before anything imports JAX."""
    if "jax" in sys.modules:
        return
    try:
        env = preload_env(dict(os.environ))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if env is None:
        return
    print(
        f"wyner_jax: re-running with {env[_DONE]} preloaded (XLA:CPU reuses its step memory "
        f"instead of page-faulting it in every step; {ENV}=system turns this off).",
        file=sys.stderr,
        flush=True,
    )
    # sys.orig_argv keeps `-m module` and interpreter options, which sys.argv loses.
    argv = [sys.executable, *sys.orig_argv[1:]]
    os.execve(sys.executable, argv, env)
