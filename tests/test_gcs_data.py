"""Data folders in a bucket (`--config.data.dir=gs://...`) on the GCS server of
tests/gcs_server.py (127.0.0.1).

Each loader that reads files is given the small fixture of its own tests (scripts/make_*.py,
in the real on-disk formats) once from a local folder and once uploaded to a gs:// prefix: the
two datasets must hold the same arrays, nothing may be written to the bucket (caches and TFDS
copies go to the local cache folder, `paths.local_cache`), and a dataset missing from the
bucket gets the same "where to get it, where to put it" message as locally, naming its gs://
path.
"""

import dataclasses
import json
import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest

from wyner_jax import data, paths
from wyner_jax.data import mnist
from wyner_jax.data.base import IndexedRows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import make_cars_fixture  # noqa: E402
import make_cub_fixture  # noqa: E402
import make_mnist_fixture  # noqa: E402
import make_pix2pix_fixture  # noqa: E402
import make_sketchy_fixture  # noqa: E402


def _sketchy(out):
    make_sketchy_fixture.make_fixture(out, num_train_classes=4, per_class=2)
    return out


def _mnist_only(out):
    """A TFDS data_dir holding the prepared `mnist` fixture alone (svhn is not needed)."""
    splits = {s: make_mnist_fixture.make_split("mnist", s) for s in ("train", "test")}
    make_mnist_fixture._write(out, "mnist", splits)
    return out


# name: (write the fixture into a folder and return the data folder, the loader's arguments
# other than that folder, the config key naming it, what the loader writes under
# `paths.local_cache(<the gs:// folder>)`). The gs:// side reads through TFDS where the
# loader converts (its copy goes to the local cache folder); the local side reads the files
# directly, which the datasets' own tests check equal to the TFDS copy.
DATASETS = {
    "sketchy": (_sketchy, {"split": 1}, "dir", ["tfds"]),
    "cub": (
        lambda out: make_cub_fixture.make_fixture(out, num_train=3, num_test=2),
        {},
        "dir",
        ["tfds"],
    ),
    "cars": (
        lambda out: make_cars_fixture.make_fixture(out, (1, 192), size=8),
        {"image_size": 8},
        "dir",
        ["wyner_jax_cache"],
    ),
    "maps": (
        lambda out: make_pix2pix_fixture.make_fixture(out, "maps", n_train=3, n_test=2),
        {"image_size": 8},
        "dir",
        ["wyner_jax_cache"],
    ),
    # The prepared dataset is copied to the local folder first: TFDS reads array_record from
    # a local disk only.
    "mnist_add1": (_mnist_only, {}, "tfds_dir", ["mnist", "wyner_jax_cache"]),
}


@pytest.fixture(autouse=True)
def local_cache_in_tmp(tmp_path, monkeypatch):
    """`paths.local_cache` under the test's folder, not the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def upload(local: str, url) -> None:
    """Copies the files under folder `local` to the gs:// prefix `url`."""
    for root, _, files in os.walk(local):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), local)
            with open(os.path.join(root, name), "rb") as f:
                (url / rel).write_bytes(f.read())


def objects(url) -> list[str]:
    return sorted(fsspec.filesystem("gs").find(os.fspath(url)))


def assert_same(a, b, where="dataset"):
    """Every field of two datasets equal: arrays element for element, nested containers
    field by field (the cache folder may differ: it is where each copy was cached)."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for field in dataclasses.fields(a):
            if field.name != "cache_dir":
                assert_same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (np.ndarray, IndexedRows)):
        assert isinstance(b, type(a)), where
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b, where


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_a_gs_data_folder_gives_the_arrays_of_the_local_one(name, gcs_dir, tmp_path):
    make, args, key, written = DATASETS[name]
    local = make(str(tmp_path / "data"))
    upload(local, gcs_dir)
    uploaded = objects(gcs_dir)
    direct = {"use_tfds": False} if name in ("sketchy", "cub") else {}
    # The local loader first: its caches are written next to the local files, not uploaded.
    expected = data.build({"name": name, key: local, **args, **direct})
    got = data.build({"name": name, key: os.fspath(gcs_dir), **args})
    assert_same(got, expected)
    assert objects(gcs_dir) == uploaded  # nothing written next to the data in the bucket
    assert sorted(os.listdir(paths.local_cache(gcs_dir))) == written  # but locally
    # Again, from the caches (and the local TFDS copy): still the same arrays.
    assert_same(data.build({"name": name, key: os.fspath(gcs_dir), **args}), expected)


# The message each loader gives for a missing dataset (its own tests check the rest of it).
MISSING = {
    "sketchy": r"cannot find .*train_sketch_features\.npy.* under 'gs://.*--config\.data\.dir",
    "cub": r"cannot find gs://.*text_trainvalclasses\.txt.*--config\.data\.dir",
    "cars": r"cannot find the folder 'gs://.*car_001_mesh\.mat.*--config\.data\.dir",
    "maps": r"cannot find 'gs://.*/train' .*Get the data: pix2pix's Maps.*--config\.data\.dir",
    "mnist_add1": r"not prepared under data_dir 'gs://.*tfds build mnist",
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_a_dataset_missing_from_the_bucket_says_where_to_get_it(name, gcs_dir):
    key = DATASETS[name][2]
    with pytest.raises(FileNotFoundError, match="(?s)" + MISSING[name]) as err:
        data.build({"name": name, key: os.fspath(gcs_dir / "nothing")})
    assert "gs:/" not in str(err.value).replace("gs://", "")  # not made a local path


def test_a_cache_folder_in_a_bucket(gcs_dir):
    """--config.data.cache_dir=gs://...: cache files are written and read back through epath."""
    folder = os.fspath(gcs_dir / "cache")
    assert mnist.usable_cache_dir(folder) == folder
    path = os.fspath(gcs_dir / "cache" / "a.npz")
    mnist._save_cached(path, {"k": 1}, {"a": np.arange(3)})
    np.testing.assert_array_equal(mnist._load_cached(path, {"k": 1}, ("a",))["a"], np.arange(3))
    with pytest.warns(UserWarning, match="written for other parameters"):
        assert mnist._load_cached(path, {"k": 2}, ("a",)) is None


def test_other_urls_and_a_tfds_copy_in_a_bucket_are_refused():
    with pytest.raises(ValueError, match=r"--config\.data\.dir='s3://b/maps': folders on s3://"):
        data.build({"name": "maps", "dir": "s3://b/maps"})
    with pytest.raises(ValueError, match=r"--config\.data\.cache_dir='ftp://h/c'"):
        data.build({"name": "cars", "dir": "data/cars", "cache_dir": "ftp://h/c"})
    with pytest.raises(ValueError, match=r"tfds_dir='gs://b/t': the TFDS copy .* local disk"):
        data.build({"name": "sketchy", "dir": "gs://b/sketchy", "tfds_dir": "gs://b/t"})


def train_py(workdir, *overrides):
    cmd = [sys.executable, "train.py", "--config=configs/iiae_sketchy.py", f"--workdir={workdir}"]
    cmd += [f"--config.{k}={v}" for k, v in overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_train_py_with_data_missing_from_the_bucket_says_where_to_get_it(gcs_dir, tmp_path):
    proc = train_py(tmp_path / "run", ("data.dir", os.fspath(gcs_dir / "sketchy")))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: Sketchy Extended split 1: cannot find" in proc.stderr
    assert f"under '{gcs_dir / 'sketchy'}'" in proc.stderr and "Zenodo" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.heavy
def test_train_py_reads_its_data_from_the_bucket(gcs_dir, tmp_path):
    """The pod command: train.py --workdir=gs://... --config.data.dir=gs://..., on the Sketchy
    fixture (the cheapest configuration that reads files: IIAE on 512-d features, here
    narrowed) for 2 steps, then evaluated (~25 s of CPU, mostly compiling: `make test-all`)."""
    upload(_sketchy(str(tmp_path / "data")), gcs_dir / "sketchy")
    workdir = gcs_dir / "run"
    tiny = {
        "data.dir": os.fspath(gcs_dir / "sketchy"),
        "train.num_steps": 2,
        "train.steps_per_call": 2,
        "train.batch_size": 8,
        "train.log_every": 2,
        "train.checkpoint_every": 2,
        "eval.batch_size": 10,
        "eval.retrieval_ks": "(10,)",
        "iiae.hidden": "(16,)",
        "iiae.joint_hidden": "(16,)",
        "iiae.decoder_hidden": 16,
        "iiae.shared_dim": 4,
        "iiae.exclusive_dim": 4,
    }
    proc = train_py(workdir, *tiny.items())
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["retrieval/mAP@all"] <= 1.0
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["dir"] == os.fspath(gcs_dir / "sketchy")
    assert os.listdir(paths.local_cache(gcs_dir / "sketchy")) == ["tfds"]
