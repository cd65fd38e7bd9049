"""Run-directory paths, local or in a Google Cloud Storage bucket (``gs://bucket/run``).

Every file of a run directory (checkpoints, config.json, metrics, logs, figures, sweep and
comparison folders, caches) goes through ``etils.epath``: a local path is a local file, a
``gs://`` path an object, read and written through gcsfs (the ``gcs`` extra; TensorFlow's
gfile instead when TensorFlow is installed). Orbax (tensorstore) and tensorboardX open
``gs://`` themselves. What an object store does differently, and how this code lives with it:

- No append: an object is written whole. Logs are kept in memory and rewritten whole
  (``metrics_writer.JsonLinesLog``).
- An object appears whole when its writer closes, so a single write is already atomic; a
  local file is written to a temporary file and renamed (``write_atomic``).
- No folders, only name prefixes: ``mkdir`` writes nothing, a folder exists once an object
  is written under it. Nothing here relies on an empty folder.
- Listings: gcsfs would keep each folder listing for the life of the process, so that a file
  another process (another host, or train.py for eval.py) wrote later stayed invisible.
  Importing this module turns that cache off for every gcsfs file system created afterwards
  (fsspec's config), epath's included.
"""

from __future__ import annotations

import importlib.util
import os
import re
import uuid

import fsspec.config
from etils import epath

# Schemes of run directories that work end to end: epath, Orbax and tensorboardX all write
# them, and tests/test_gcs_server.py checks it against a GCS server on 127.0.0.1.
SUPPORTED_SCHEMES = ("gs",)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

fsspec.config.conf.setdefault("gcs", {})["use_listings_cache"] = False


def path(p: str | os.PathLike) -> epath.Path:
    """``p`` as an ``epath.Path`` (a ``gs://`` URL stays one)."""
    return epath.Path(p)


def scheme(p: str | os.PathLike) -> str | None:
    """The URL scheme of ``p`` ('gs' for ``gs://bucket/run``); None for a local path."""
    match = _URL.match(os.fspath(p))
    return match.group(1).lower() if match else None


def absolute(p: str | os.PathLike) -> epath.Path:
    """``p`` made absolute when local (relative to the current directory); a URL as it is."""
    return path(p) if scheme(p) else path(os.path.abspath(p))


def check_supported(p: str | os.PathLike, flag: str = "--workdir") -> None:
    """Refuses a URL this code cannot write as a run directory, before anything is built.

    epath treats an unknown scheme (``ftp://h/run``) as a local folder named ``ftp:``, and
    ``s3://``/``az://`` would need clients for Orbax and tensorboardX that are not set up or
    tested here; ``gs://`` needs gcsfs. Local paths are never refused here.
    """
    name = scheme(p)
    if name is None:
        return
    if name not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"{flag}={os.fspath(p)!r}: run directories on {name}:// are not supported (the "
            "supported ones are local paths and gs://bucket/...). Use a local path every host "
            "sees (a shared file system, or the store mounted at the same path on every host), "
            "or a gs:// bucket."
        )
    if importlib.util.find_spec("gcsfs") is None:
        raise ValueError(
            f"{flag}={os.fspath(p)!r} needs the gcsfs package to read and write gs:// paths; "
            "install it with `pip install -e '.[gcs]'`."
        )


def write_atomic(p: str | os.PathLike, data: str | bytes) -> None:
    """Writes ``data`` to ``p`` so that a reader sees the old file or the new one, never half.

    Locally through a temporary file in the same folder and a rename (the folder is created
    if needed); on an object store with one write, since an object appears only once its
    upload completes (the files here are below gcsfs's 5 MiB block: one upload, at close).
    The temporary name is unique, so concurrent writers never share one, and it is created
    with the usual permissions (``mkstemp`` would make it readable by its owner only).
    """
    target = path(p)
    if scheme(p):
        target.write_bytes(data) if isinstance(data, bytes) else target.write_text(data)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb" if isinstance(data, bytes) else "x") as f:
            f.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
