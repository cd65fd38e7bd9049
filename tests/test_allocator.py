"""wyner_jax/allocator.py: which allocator an entry point re-executes with, and that the
re-executed process keeps its command line and sees the library preloaded."""

import os
import subprocess
import sys
import textwrap

import pytest

from wyner_jax import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def libdir(tmp_path):
    """A library folder with (empty) jemalloc and tcmalloc files."""
    for name in ("libjemalloc.so.2", "libtcmalloc_minimal.so.4"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def plan(env, libdir, platform="linux", device_files=()):
    return allocator.preload_env(
        env, platform=platform, search_dirs=(str(libdir),), device_files=device_files
    )


def test_auto_prefers_tcmalloc_and_quietens_its_large_allocation_reports(libdir):
    env = plan({"PATH": "/bin"}, libdir)
    path = str(libdir / "libtcmalloc_minimal.so.4")
    assert env["LD_PRELOAD"] == path
    assert env[allocator._DONE] == path
    assert env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == str(1 << 40)
    assert env["PATH"] == "/bin" and "MALLOC_CONF" not in env


def test_jemalloc_when_only_it_is_installed_keeps_the_users_settings(libdir):
    (libdir / "libtcmalloc_minimal.so.4").unlink()
    env = plan({"LD_PRELOAD": "/opt/libfoo.so"}, libdir)
    assert env["LD_PRELOAD"] == f"{libdir / 'libjemalloc.so.2'} /opt/libfoo.so"
    assert env["MALLOC_CONF"] == "oversize_threshold:0"
    env = plan({"MALLOC_CONF": "narenas:2"}, libdir)
    assert env["MALLOC_CONF"] == "narenas:2"


@pytest.mark.parametrize(
    "env, platform",
    [
        ({allocator.ENV: "system"}, "linux"),
        ({}, "darwin"),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "linux"),  # the user chose already
        ({allocator._DONE: "/x/libtcmalloc.so.4"}, "linux"),  # this is the re-executed process
    ],
)
def test_no_reexecution(libdir, env, platform):
    assert plan(env, libdir, platform) is None


def test_nothing_installed_means_no_reexecution(tmp_path):
    assert plan({}, tmp_path) is None


def test_explicit_library_and_bad_values(libdir, tmp_path):
    lib = tmp_path / "custom" / "libmymalloc.so"
    lib.parent.mkdir()
    lib.write_bytes(b"")
    env = plan({allocator.ENV: str(lib)}, libdir)
    assert env["LD_PRELOAD"] == str(lib)
    with pytest.raises(ValueError, match="WYNER_JAX_ALLOCATOR='tcmaloc'.*system"):
        plan({allocator.ENV: "tcmaloc"}, libdir)


def run_entry(tmp_path, env_extra, *args):
    """Runs a script that calls use_caching_allocator() first, as train.py does, and reports
    its command line, the chosen allocator and whether the library is mapped."""
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent("""
            import os, sys
            sys.path.insert(0, os.environ["ROOT"])
            from wyner_jax import allocator
            allocator.use_caching_allocator()
            maps = open("/proc/self/maps").read()
            lib = os.environ.get("WYNER_JAX_ALLOCATOR_CHOSEN", "")
            print(sys.argv[1:], allocator.current(), bool(lib) and lib in maps)
            """))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator._DONE)}
    env.update(ROOT=ROOT, **env_extra)
    return subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
def test_reexecution_keeps_the_command_line(tmp_path):
    # An empty file cannot be loaded (ld.so says so and goes on), but the process is
    # re-executed once with the same arguments and knows what was chosen.
    fake = tmp_path / "libtcmalloc_minimal.so.4"
    fake.write_bytes(b"")
    r = run_entry(tmp_path, {allocator.ENV: str(fake)}, "--config=a.py", "x y")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"['--config=a.py', 'x y'] {fake} False"
    assert "re-running with" in r.stderr and "WYNER_JAX_ALLOCATOR=system" in r.stderr
    r = run_entry(tmp_path, {allocator.ENV: "system"}, "a")
    assert r.stdout.strip() == "['a'] system False" and "re-running" not in r.stderr
    r = run_entry(tmp_path, {allocator.ENV: "nonsense"})
    assert r.returncode == 1 and "error: WYNER_JAX_ALLOCATOR='nonsense'" in r.stderr


@pytest.mark.skipif(allocator.find_library() is None, reason="no tcmalloc/jemalloc installed")
def test_an_installed_library_is_really_preloaded(tmp_path):
    r = run_entry(tmp_path, {allocator.ENV: "auto"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"[] {allocator.find_library()} True"


def test_auto_leaves_accelerator_runs_alone(libdir, tmp_path):
    """The page faults the allocator removes are XLA:CPU's: with a GPU/TPU in use, 'auto'
    does not re-execute; a CPU run on the same host still does; an explicit library does."""
    gpu = tmp_path / "nvidia0"
    gpu.write_bytes(b"")
    assert plan({}, libdir, device_files=(str(gpu),)) is None
    assert plan({"JAX_PLATFORMS": "cuda"}, libdir) is None
    assert plan({"JAX_PLATFORMS": "tpu,cpu"}, libdir) is None
    on_cpu = plan({"JAX_PLATFORMS": "cpu"}, libdir, device_files=(str(gpu),))
    assert on_cpu is not None and "tcmalloc" in on_cpu["LD_PRELOAD"]
    assert plan({}, libdir, device_files=(str(tmp_path / "absent"),)) is not None
    explicit = str(libdir / "libjemalloc.so.2")
    assert plan({allocator.ENV: explicit}, libdir, device_files=(str(gpu),)) is not None
