"""Run-directory and data paths, local or in a Google Cloud Storage bucket (``gs://bucket/run``).

Every file of a run directory (checkpoints, config.json, metrics, logs, figures, sweep and
comparison folders, caches) and every file a dataset loader reads (``--config.data.dir``)
goes through ``etils.epath``: a local path is a local file, a
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

A loader that writes something next to data it reads from a URL (decoded caches, a TFDS copy)
writes it under ``local_cache(url)`` instead (``data.base.derived_dir``): a data bucket is
often read-only, several hosts would race to write the same objects, and TFDS's array_record
files can only be read from a local disk.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import uuid
from typing import BinaryIO, Callable

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
            f"{flag}={os.fspath(p)!r}: folders on {name}:// are not supported (the "
            "supported ones are local paths and gs://bucket/...). Use a local path every host "
            "sees (a shared file system, or the store mounted at the same path on every host), "
            "or a gs:// bucket."
        )
    if importlib.util.find_spec("gcsfs") is None:
        raise ValueError(
            f"{flag}={os.fspath(p)!r} needs the gcsfs package to read and write gs:// paths; "
            "install it with `pip install -e '.[gcs]'`."
        )


def write_atomic(p: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Writes ``data`` to ``p`` so that a reader sees the old file or the new one, never half.

    ``data`` is text, bytes, or a function that writes the content to a binary file (a large
    array, streamed instead of held twice in memory). Locally through a temporary file in the
    same folder and a rename (the folder is created if needed); on an object store with one
    write, since an object appears only once its upload completes (the content is gathered in
    memory first, so that a failing writer uploads nothing). The temporary name is unique, so
    concurrent writers never share one, and it is created with the usual permissions
    (``mkstemp`` would make it readable by its owner only).
    """
    target = path(p)
    if callable(data):
        write = data
    elif isinstance(data, bytes):
        write = lambda f: f.write(data)  # noqa: E731
    else:
        write = lambda f: f.write(data.encode())  # noqa: E731
    if scheme(p):
        buffer = io.BytesIO()
        write(buffer)
        target.write_bytes(buffer.getvalue())
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def stamp(p: str | os.PathLike) -> tuple[int, int]:
    """(size in bytes, modification time) of the file ``p``: what a cache key records of an
    input file, so that a replaced file invalidates the cache. Locally ``os.stat``'s size and
    ``st_mtime_ns``; for a URL the object's size and upload time (whole seconds)."""
    if scheme(p):
        st = path(p).stat()
        return int(st.length), int(st.mtime)
    st = os.stat(p)
    return st.st_size, st.st_mtime_ns


def local_cache(url: str | os.PathLike) -> str:
    """The local folder that stands for the folder at ``url`` (``gs://bucket/data/maps``) when
    something derived from its files must be written next to them:
    ``$XDG_CACHE_HOME/wyner_jax/gs/bucket/data/maps`` (``~/.cache`` without XDG_CACHE_HOME).
    See the module docstring for why not in the bucket."""
    name = scheme(url)
    if name is None:
        raise ValueError(f"local_cache takes a URL, got the local path {os.fspath(url)!r}.")
    rest = os.fspath(url)[len(name) + 3 :]
    parts = [part for part in rest.split("/") if part not in ("", ".", "..")]
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "wyner_jax", name, *parts)


def download(url: str | os.PathLike, local: str | os.PathLike, last: tuple[str, ...] = ()) -> None:
    """Copies the files under folder ``url`` into the local folder ``local`` (same names and
    sub-folders), skipping files already there with the same size. Each file is written
    atomically; the files named in ``last`` are copied after all others, so a marker of a
    complete folder (TFDS's ``dataset_info.json``) appears only once the rest is there."""
    source = path(url)
    items = sorted(source.iterdir(), key=lambda item: (item.name in last, item.name))
    for item in items:
        target = os.path.join(local, item.name)
        if item.is_dir():
            download(item, target, last)
            continue
        if os.path.isfile(target) and os.path.getsize(target) == item.stat().length:
            continue
        with item.open("rb") as src:
            write_atomic(target, lambda f: shutil.copyfileobj(src, f))
