"""What this project's GCS clients do against the server of tests/gcs_server.py (127.0.0.1).

The clients of a `gs://` run directory: `etils.epath` (through gcsfs, TensorFlow being absent),
Orbax (tensorstore for arrays, epath for metadata), tensorboardX (google-cloud-storage), and
subprocesses that inherit the environment (`train.py`, `eval.py`). Each test states what the
client does on gs:// where it differs from a local folder: that is what the conversion of
the library to epath has to live with.
"""

import socket
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wyner_jax.paths  # noqa: F401 -- its fsspec setting (no listings cache) for every test

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def localhost_only(monkeypatch):
    """Fails a test whose Python code connects a socket anywhere but 127.0.0.1.

    Covers every pure-Python client (gcsfs's aiohttp, google-cloud-storage's requests,
    google-auth, urllib); not tensorstore or gRPC, which connect from C++.
    """
    refused = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address):
        if isinstance(address, tuple) and address[0] not in _LOCAL_HOSTS:
            refused.append(address)
            raise ConnectionRefusedError(f"test: no connection outside 127.0.0.1: {address}")

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (check(a), connect(s, a))[1])
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: (check(a), connect_ex(s, a))[1])
    yield
    assert not refused, f"connections outside 127.0.0.1 were attempted: {refused}"


def test_epath_files_and_directories(gcs_dir, localhost_only):
    run = gcs_dir
    (run / "config.json").write_text('{"seed": 0}')
    assert (run / "config.json").read_text() == '{"seed": 0}'
    assert (run / "config.json").exists() and (run / "config.json").is_file()
    assert not (run / "missing.json").exists()

    # No directories on GCS, only name prefixes: mkdir writes nothing, so the folder does not
    # exist until an object is written under it, and a second mkdir does not raise.
    (run / "figures").mkdir(parents=True)
    assert not (run / "figures").exists()
    (run / "figures").mkdir()
    (run / "figures" / "a.png").write_bytes(b"\x89PNG")
    assert (run / "figures").is_dir()
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "figures"]
    assert [p.name for p in run.glob("figures/*.png")] == ["a.png"]
    with pytest.raises(NotImplementedError, match="Recursive"):  # epath refuses ** on gs://
        list(run.rglob("*.png"))

    # rename copies each object then deletes it (not atomic); onto an existing name it
    # raises, as on a local disk.
    (run / "figures").rename(run / "plots")
    assert not (run / "figures").exists()
    assert (run / "plots" / "a.png").read_bytes() == b"\x89PNG"
    with pytest.raises(FileExistsError):
        (run / "config.json").rename(run / "plots" / "a.png")

    (run / "plots").rmtree()
    assert not (run / "plots").exists()
    assert [p.name for p in run.iterdir()] == ["config.json"]


def test_append_on_gcs_overwrites(gcs_dir, localhost_only):
    """`open(path, 'a')` on gs:// does not raise: gcsfs warns and rewrites the object.

    GCS objects are immutable; gcsfs turns 'a' into 'w' for standard buckets (only zonal
    buckets append). Whatever a run appends to (metrics.json as JSON lines, a log) keeps only
    the last write: such files have to be rewritten whole, or written as one object per
    append.
    """
    log = gcs_dir / "metrics.jsonl"
    log.write_text('{"step": 1}\n')
    with pytest.warns(UserWarning, match="Append mode 'a' is not supported"):
        with log.open("a") as f:
            f.write('{"step": 2}\n')
    assert log.read_text() == '{"step": 2}\n'


def test_orbax_checkpoint_manager_round_trip(gcs_dir):
    import orbax.checkpoint as ocp

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    state = {
        "params": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros((3,), jnp.int32)},
        "batch_stats": jax.device_put(jnp.arange(8.0), sharded),  # split over the 4 devices
    }
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    with ocp.CheckpointManager(gcs_dir / "checkpoints", options=options) as manager:
        manager.save(1, args=ocp.args.StandardSave(state))
        manager.save(2, args=ocp.args.StandardSave(jax.tree.map(lambda x: x + 1, state)))
        manager.wait_until_finished()
    # Orbax does not rename a temporary folder on GCS: it writes step 2 in place and marks it
    # complete with commit_success.txt. max_to_keep=1 deleted step 1.
    step = gcs_dir / "checkpoints" / "2"
    assert (step / "commit_success.txt").exists()
    assert [p.name for p in (gcs_dir / "checkpoints").iterdir()] == ["2"]

    with ocp.CheckpointManager(gcs_dir / "checkpoints") as manager:
        assert manager.all_steps() == [2]
        restored = manager.restore(2, args=ocp.args.StandardRestore(state))
    expected = jax.tree.map(lambda x: x + 1, state)
    jax.tree.map(np.testing.assert_array_equal, restored, expected)
    assert restored["batch_stats"].sharding == sharded


def test_tensorboardx_scalars_read_back_by_tensorboard(gcs_dir, localhost_only):
    """tensorboardX writes gs:// itself (google-cloud-storage, STORAGE_EMULATOR_HOST).

    It keeps the whole event file in memory and uploads all of it at each flush, and once
    more when the writer is garbage-collected (the gcs_bucket fixture lets that last upload
    happen before the server stops). TensorBoard reads gs:// through fsspec, so gcsfs.
    """
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(gcs_dir / "tensorboard"))
    writer.add_scalar("train/loss", 1.5, 10)
    writer.flush()
    assert [
        p.name.startswith("events.out.tfevents.") for p in (gcs_dir / "tensorboard").iterdir()
    ] == [True]
    writer.add_scalar("train/loss", 1.25, 20)
    writer.close()

    events = event_accumulator.EventAccumulator(str(gcs_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(10, 1.5), (20, 1.25)]


_CHILD = """
import json, sys
import fsspec, gcsfs, google.auth
from etils import epath

fs = fsspec.filesystem("gcs")
assert type(fs) is gcsfs.core.GCSFileSystem, type(fs)  # not the gRPC-probing extended one
assert fs.credentials.method == "anon", fs.credentials.method
try:
    google.auth.default()
except google.auth.exceptions.DefaultCredentialsError:
    pass  # no credentials found, and no metadata server asked (NO_GCE_CHECK)
else:
    sys.exit("google.auth.default() found credentials")
run = epath.Path(sys.argv[1])
(run / "from_child.json").write_text(json.dumps({"pid": 1}))
print(sorted(p.name for p in run.iterdir()))
"""


def test_subprocess_inherits_the_server(gcs_dir, localhost_only):
    """A child process finds the server through the inherited environment alone.

    A gcsfs file system with its listings cache (gcsfs's default) keeps each folder listing
    for its whole life, and answers `exists`, `open` and `iterdir` under a listed folder from
    it: an object another process (train.py for eval.py, another host) wrote there afterwards
    is missing until `invalidate_cache()`. wyner_jax.paths turns the cache off (fsspec config
    `use_listings_cache=False`) for the file system epath opens, which then always asks the
    server.
    """
    import fsspec

    cached = fsspec.filesystem("gcs", use_listings_cache=True, skip_instance_cache=True)
    (gcs_dir / "from_parent.json").write_text("{}")
    assert [p.name for p in gcs_dir.iterdir()] == ["from_parent.json"]
    assert [p.split("/")[-1] for p in cached.ls(str(gcs_dir))] == ["from_parent.json"]

    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(gcs_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split("\n")[-2] == "['from_child.json', 'from_parent.json']"

    from_child = gcs_dir / "from_child.json"
    assert not cached.exists(str(from_child))  # the stale listing
    with pytest.raises(FileNotFoundError):
        cached.open(str(from_child)).read()
    cached.invalidate_cache()
    assert cached.cat_file(str(from_child)) == b'{"pid": 1}'
    # What the library reads through: epath's file system, without the listings cache.
    assert gcs_dir._backend.fs(str(gcs_dir)).dircache.use_listings_cache is False
    assert from_child.read_text() == '{"pid": 1}'
    assert sorted(p.name for p in gcs_dir.iterdir()) == ["from_child.json", "from_parent.json"]


def test_google_auth_stays_off_the_metadata_server(gcs_bucket, localhost_only):
    """The environment of gcs_bucket keeps google-auth on 127.0.0.1.

    NO_GCE_CHECK=true makes `is_on_gce` answer False without a request, so
    `google.auth.default()` fails at once here (no credentials: CLOUDSDK_CONFIG is empty);
    a direct metadata request goes to the closed port 127.0.0.1:1.
    """
    import google.auth
    import google.auth.transport.requests
    from google.auth.compute_engine import _metadata

    request = google.auth.transport.requests.Request()
    assert not _metadata.is_on_gce(request)
    with pytest.raises(google.auth.exceptions.DefaultCredentialsError):
        google.auth.default()
    assert not _metadata.ping(request, timeout=1, retry_count=1)
    with warnings.catch_warnings(), pytest.raises(google.auth.exceptions.TransportError) as e:
        warnings.simplefilter("ignore")
        _metadata.get(request, "instance/service-accounts/default/token", retry_count=1)
    assert "127.0.0.1:1" in str(e.value)


def test_two_writers_in_one_second_keep_both_event_files(local_or_gcs_dir, monkeypatch):
    """tensorboardX names an event file after the second and the host: two writers of one
    run directory in the same second (training's, then the final evaluation's) must not
    share it, or on gs:// the second upload replaces the first writer's events."""
    import time

    from tensorboard.backend.event_processing import event_accumulator

    from wyner_jax import metrics_writer

    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)  # one second for both
    train = metrics_writer.summary_writer(local_or_gcs_dir)
    train.add_scalar("train/loss", 1.5, 10)
    train.close()
    metrics_writer.write_eval_scalars(local_or_gcs_dir, 10, {"coherence/x2y": 0.75})
    monkeypatch.undo()

    names = [p.name for p in (local_or_gcs_dir / "tensorboard").iterdir()]
    assert len(names) == 2 and all(n.startswith("events.out.tfevents.1700000000.") for n in names)
    events = event_accumulator.EventAccumulator(str(local_or_gcs_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(10, 1.5)]
    assert [(e.step, e.value) for e in events.Scalars("eval/coherence/x2y")] == [(10, 0.75)]
