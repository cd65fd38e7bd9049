"""Run directories through wyner_jax.paths: local folders and gs:// prefixes on the GCS
server of tests/gcs_server.py (127.0.0.1) behave alike; other URLs are refused."""

import importlib.util
import json
import os

import pytest

from wyner_jax import paths
from wyner_jax.metrics_writer import JsonLinesLog


@pytest.mark.parametrize("url", ["s3://bucket/run", "az://container/run", "ftp://host/run"])
def test_urls_other_than_gs_are_refused_with_the_fix(url):
    with pytest.raises(ValueError) as err:
        paths.check_supported(url)
    message = str(err.value)
    assert f"--workdir={url!r}" in message and "are not supported" in message
    assert "gs://bucket" in message and "mounted at the same path" in message


@pytest.mark.parametrize("local", ["runs/a", "/tmp/x:y/run", "gs:/bucket/run", "./gs"])
def test_local_paths_are_never_refused(local):
    paths.check_supported(local)
    assert paths.scheme(local) is None
    assert str(paths.absolute(local)) == os.path.abspath(local)


def test_gs_needs_gcsfs(monkeypatch):
    paths.check_supported("gs://bucket/run")
    assert str(paths.absolute("gs://bucket/run")) == "gs://bucket/run"
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gcsfs" else find_spec(name)
    )
    with pytest.raises(ValueError, match=r"needs the gcsfs package.*pip install -e '\.\[gcs\]'"):
        paths.check_supported("gs://bucket/run")


def test_write_atomic_replaces_whole_and_leaves_nothing_behind(local_or_gcs_dir, monkeypatch):
    run_dir = local_or_gcs_dir
    paths.write_atomic(run_dir / "figures" / "a.png", b"\x89PNG old")  # parent made if local
    paths.write_atomic(run_dir / "figures" / "a.png", b"\x89PNG new")
    paths.write_atomic(run_dir / "metrics.json", '{"a": 1}\n')
    assert (run_dir / "figures" / "a.png").read_bytes() == b"\x89PNG new"
    assert (run_dir / "metrics.json").read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in run_dir.iterdir()) == ["figures", "metrics.json"]
    assert [p.name for p in (run_dir / "figures").iterdir()] == ["a.png"]
    if paths.scheme(run_dir) is None:
        # A failure before the rename keeps the old file and removes the temporary one.
        def fail(*args):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", fail)
        with pytest.raises(OSError, match="disk full"):
            paths.write_atomic(run_dir / "metrics.json", '{"a": 2}\n')
        assert (run_dir / "metrics.json").read_text() == '{"a": 1}\n'
        assert sorted(p.name for p in run_dir.iterdir()) == ["figures", "metrics.json"]


def test_a_log_keeps_every_line_across_a_resume(local_or_gcs_dir):
    """A run logs steps 1–5 and is interrupted; its checkpoint is step 3. The resumed run
    logs 4 and 5 again: the log keeps 1–3 and the new 4–5, each step once (on gs:// an
    append would keep only the resumed run's lines, locally it would repeat 4 and 5).
    train_metrics.jsonl (MetricsWriter) and eval_metrics.jsonl (EvalRecorder) are such logs."""
    run_dir = local_or_gcs_dir
    log = JsonLinesLog(run_dir / "train_metrics.jsonl", through_step=0)
    for step in range(1, 6):
        log.write(step, {"loss": float(step)})
    log = JsonLinesLog(run_dir / "train_metrics.jsonl", through_step=3)
    log.write(4, {"loss": 40.0})
    log.write(5, {"loss": float("nan")})
    records = [json.loads(l) for l in (run_dir / "train_metrics.jsonl").read_text().splitlines()]
    assert records == [
        {"step": 1, "loss": 1.0},
        {"step": 2, "loss": 2.0},
        {"step": 3, "loss": 3.0},
        {"step": 4, "loss": 40.0},
        {"step": 5, "loss": "nan"},  # strict JSON
    ]
    assert [p.name for p in run_dir.iterdir()] == ["train_metrics.jsonl"]
