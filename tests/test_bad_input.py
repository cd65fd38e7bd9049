"""Bad input (issue 5, item 6): every one fails before any training step, with a one-paragraph
message that names the problem and the fix, and leaves no checkpoint or metrics behind.

Cases cover the config (unknown names, impossible loop settings, unknown λ), the data (the real
Sketchy Extended .npy layout, damaged in the ways downloads and copies get damaged), the
workdir, checkpoints of another config, and the command line (train.py / eval.py run as a
user runs them). In-process cases call `trainer.train` itself, so they also check that the
trainer validates everything before it creates the workdir.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import gaussian, sketchy
from tests.test_wyner_model import small_config
from wyner_jax import trainer
from wyner_jax.checkpointing import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from make_sketchy_fixture import make_fixture  # noqa: E402

RUN_OUTPUTS = ("checkpoints", "metrics.json", "train_metrics.jsonl", "tensorboard", "figures")


def check_message(msg: str, patterns) -> None:
    """One paragraph (no blank line, no traceback) matching every pattern."""
    assert "Traceback" not in msg and 'File "' not in msg, msg
    assert "\n\n" not in msg.strip() and len(msg) > 40, msg
    for p in patterns:
        assert re.search(p, msg), f"{p!r} not in: {msg}"


def expect_refused(config, workdir, exc, patterns) -> None:
    """`trainer.train` raises `exc` naming the problem, and the workdir was never created."""
    with pytest.raises(exc) as err:
        trainer.train(config, workdir)
    check_message(str(err.value), patterns)
    assert not os.path.exists(workdir), os.listdir(workdir)


def with_overrides(config, overrides: dict):
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def no_lambdas(config):
    return with_overrides(config, {f"loss.lambdas.{k}": 0.0 for k in config.loss.lambdas})


def small_gaussian():
    config = gaussian.get_config()
    config.data.n_train, config.data.n_test = 512, 64
    config.train.batch_size = 16
    return config


# ----------------------------------------------------------------------------- config

CONFIG_CASES = [
    ("unknown_dataset", {"data.name": "mnist"}, [r"Unknown dataset 'mnist'", r"known datasets"]),
    ("unknown_model", {"model.name": "vae"}, [r"model.name 'vae'", r"use 'wyner' or 'iiae'"]),
    (
        "unknown_family",
        {"model.family": "rnn"},
        [r"family must be 'mlp', 'conv' or 'sentence', got 'rnn'"],
    ),
    ("unknown_prior", {"model.prior": "cauchy"}, [r"prior must be 'gaussian' or 'uniform'"]),
    ("zero_steps", {"train.num_steps": 0}, [r"num_steps must be a positive integer, got 0"]),
    ("negative_steps", {"train.num_steps": -5}, [r"got -5; set --config.train.num_steps"]),
    ("zero_checkpoint_every", {"train.checkpoint_every": 0}, [r"checkpoint_every must be"]),
    ("zero_batch", {"train.batch_size": 0}, [r"batch_size must be a positive integer"]),
    (
        "batch_not_dividing_devices",
        {"train.batch_size": 6},
        [r"batch_size = 6 does not divide over the 4 devices", r"multiple of 4, e.g."],
    ),
    (
        "batch_larger_than_data",
        {"train.batch_size": 4096},
        [r"batch_size 4096 exceeds the \d+ training pairs", r"use a smaller batch_size"],
    ),
    ("bad_on_nonfinite", {"train.on_nonfinite": "bogus"}, [r"'stop' or 'skip', got 'bogus'"]),
    (
        "unknown_disc_objective",
        {"loss.discriminator": "wasserstein"},
        [r"discriminator 'wasserstein' is not one of \['dv', 'js'", r"set --config.loss"],
    ),
    ("unknown_gen_objective", {"loss.generator": "kl"}, [r"generator 'kl' is not one of"]),
    ("unknown_recon_loss", {"loss.recon_x": "l3"}, [r"recon_x 'l3' is not one of"]),
    ("unknown_optimizer", {"optim.name": "sgd"}, [r"optim.name must be 'adam' or 'rmsprop'"]),
    (
        "unknown_lambda",
        {"loss.lambdas.var_cii": 0.1},
        [r"lambdas has unknown keys \['var_cii'\]", r"configs/default.py"],
    ),
    ("no_matching_term", no_lambdas, [r"No distribution-matching term", r"lambdas.\{j, cx2y"]),
    ("digits_empty_test", {"data.test_fraction": 0.0}, [r"test_fraction strictly between"]),
]


@pytest.mark.parametrize("edit, patterns", [pytest.param(e, p, id=i) for i, e, p in CONFIG_CASES])
def test_bad_config_is_refused_before_the_workdir_exists(tmp_path, edit, patterns):
    config = small_config()
    config = edit(config) if callable(edit) else with_overrides(config, edit)
    expect_refused(config, str(tmp_path / "run"), ValueError, patterns)


@pytest.mark.parametrize("rho", [1.5, 1.0, -1.0])
def test_gaussian_rho_must_be_a_correlation_strictly_inside_minus_one_one(tmp_path, rho):
    config = with_overrides(small_gaussian(), {"data.rho": rho})
    expect_refused(
        config, str(tmp_path / "run"), ValueError, [r"strictly between -1 and 1", r"rho=0.7"]
    )


# ----------------------------------------------------------------------------- Sketchy files


@pytest.fixture(scope="module")
def sketchy_release(tmp_path_factory):
    """A pristine synthetic release (real layout and formats); cases damage copies of it."""
    out = str(tmp_path_factory.mktemp("sketchy_release"))
    make_fixture(out, split=1, per_class=2)  # 8 train classes, 16 train sketches
    return out


def npy(folder, name):
    return os.path.join(folder, "SketchyVGG", "split1", name)


def truncate(path, keep):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: int(len(raw) * keep)])


def set_path(folder, name, row, value):
    paths = np.load(npy(folder, name))
    paths = paths.astype(f"<U{max(paths.dtype.itemsize // 4, len(value))}")
    paths[row] = value
    np.save(npy(folder, name), paths)


def poison(folder):
    feats = np.load(npy(folder, "train_image_features.npy"))
    feats[2, 7], feats[5, 0], feats[9, 511] = np.nan, np.nan, np.inf
    np.save(npy(folder, "train_image_features.npy"), feats)


def resave(name, fn):
    def edit(folder):
        np.save(npy(folder, name), fn(np.load(npy(folder, name))))

    return edit


SKETCHY_CASES = [
    (
        "missing_data_dir",
        lambda d: shutil.rmtree(d),
        FileNotFoundError,
        [r"cannot find train_sketch_features.npy", r"10.5281/zenodo.3890097", r"--config.data.dir"],
    ),
    (
        "missing_one_file",
        lambda d: os.remove(npy(d, "test_image_features.npy")),
        FileNotFoundError,
        [r"cannot find test_image_features.npy under", r"download and unpack"],
    ),
    (
        "empty_file",
        lambda d: open(npy(d, "train_sketch_features.npy"), "w").close(),
        ValueError,
        [r"train_sketch_features.npy \(0 bytes\) cannot be read as a NumPy .npy", r"Re-download"],
    ),
    (
        "truncated_file",
        lambda d: truncate(npy(d, "train_image_features.npy"), 0.5),
        ValueError,
        [r"train_image_features.npy \(\d+ bytes\) cannot be read", r"truncated"],
    ),
    (
        "truncated_header",
        lambda d: truncate(npy(d, "test_sketch_paths.npy"), 0.01),
        ValueError,
        [r"test_sketch_paths.npy \(\d+ bytes\) cannot be read", r"Re-download"],
    ),
    (
        "text_file_instead_of_npy",
        lambda d: open(npy(d, "train_sketch_paths.npy"), "w").write("bear/1.png\n"),
        ValueError,
        [r"train_sketch_paths.npy .* not an .npy file"],
    ),
    (
        "wrong_feature_width",
        resave("train_sketch_features.npy", lambda f: f[:, :500]),
        ValueError,
        [r"must be \[N, 512\]", r"got shape \(16, 500\)", r"re-download"],
    ),
    (
        "nan_and_inf_in_features",
        poison,
        ValueError,
        [r"train_image_features.npy: 3 rows contain NaN or Inf \(first at row 2\)"],
    ),
    (
        "features_and_paths_of_different_lengths",
        resave("test_image_paths.npy", lambda p: p[:-1]),
        ValueError,
        [r"has 50 rows but \S+test_image_paths.npy has 49 paths", r"same order"],
    ),
    (
        "zero_rows",
        lambda d: [
            resave("train_sketch_features.npy", lambda f: f[:0])(d),
            resave("train_sketch_paths.npy", lambda p: p[:0])(d),
        ],
        ValueError,
        [r"train_sketch_features.npy is empty; re-download"],
    ),
    (
        "path_without_class_folder",
        lambda d: set_path(d, "train_sketch_paths.npy", 3, "no_folder.png"),
        ValueError,
        [r"'no_folder.png' has no class folder", r"'class/filename'"],
    ),
    (
        "unknown_class_in_test_split",
        lambda d: set_path(d, "test_sketch_paths.npy", 0, "unicorn/u.png"),
        ValueError,
        [r"unexpected \['unicorn'\]", r"--config.data.split"],
    ),
    (
        "test_class_in_train_split",
        lambda d: set_path(d, "train_sketch_paths.npy", 0, "bear/b.png"),
        ValueError,
        [r"test classes \[.bear.\] also appear in the training", r"files of split 1 as released"],
    ),
    (
        "train_class_without_photos",
        lambda d: set_path(d, "train_sketch_paths.npy", 0, "trainclass_99/s.png"),
        ValueError,
        [r"\['trainclass_99'\] have training sketches or photos but not both"],
    ),
]


@pytest.mark.parametrize(
    "edit, exc, patterns", [pytest.param(e, x, p, id=i) for i, e, x, p in SKETCHY_CASES]
)
def test_bad_sketchy_files_are_refused_before_the_workdir_exists(
    tmp_path, sketchy_release, edit, exc, patterns
):
    data_dir = str(tmp_path / "data")
    shutil.copytree(sketchy_release, data_dir)
    edit(data_dir)
    config = sketchy.get_config()
    config.data.dir = data_dir
    config.train.batch_size = 8
    expect_refused(config, str(tmp_path / "run"), exc, patterns)
    # No TFDS copy of refused files is left for the next run to trust.
    written = [f for _, _, files in os.walk(data_dir) for f in files if not f.endswith(".npy")]
    assert not written, written


def test_sketchy_split_must_be_one_or_two(tmp_path, sketchy_release):
    config = sketchy.get_config()
    config.data.dir, config.data.split = sketchy_release, 3
    expect_refused(config, str(tmp_path / "run"), ValueError, [r"split must be 1 or 2, got 3"])


# ----------------------------------------------------------------------------- workdir


def test_workdir_that_is_a_file(tmp_path):
    workdir = tmp_path / "run"
    workdir.write_text("my notes")
    with pytest.raises(PermissionError) as err:
        trainer.train(small_config(), str(workdir))
    check_message(str(err.value), [r"Cannot write to --workdir=.*run", r"not an existing file"])
    assert workdir.read_text() == "my notes"


@pytest.mark.parametrize("url", ["s3://bucket/run", "ftp://host/run"])
def test_unsupported_url_workdir_is_refused_not_written_locally(tmp_path, monkeypatch, url):
    """Only local paths and gs:// are run directories; any other URL is refused before
    anything is built, rather than failing midway (s3:// needs clients not set up here) or
    becoming a local folder named 'ftp:' (epath's view of an unknown scheme, a different
    one on every host)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as err:
        trainer.train(small_config(), url)
    check_message(str(err.value), [r"are not supported", r"gs://bucket", r"mounted at the same"])
    with pytest.raises(ValueError, match="are not supported"):
        trainer.restore_for_eval(small_config(), url)
    assert list(tmp_path.iterdir()) == []


def test_workdir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError) as err:
        trainer.train(small_config(), str(tmp_path / "file" / "run"))
    check_message(str(err.value), [r"Cannot write to --workdir", r"pass a directory you can"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_workdir_in_a_read_only_directory(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"Cannot write to --workdir.*Permission"):
            trainer.train(small_config(), str(parent / "run"))
    finally:
        parent.chmod(0o700)
    assert not os.listdir(parent)


# ----------------------------------------------------------------------------- checkpoints


def tiny_lambdas(config):
    """Only λ_j: the smallest Wyner graph, so the one real training compile is quick."""
    config = no_lambdas(config)
    config.loss.lambdas.j = 1.0
    for k in ("var_ci", "j_ci", "cx2y_ci", "cy2x_ci"):
        config.loss.lambdas[k] = -1.0  # no CI estimator
    return config


def trained_config():
    config = tiny_lambdas(small_config())
    config.train.num_steps = 1
    config.train.log_every = config.train.checkpoint_every = 1
    config.train.image_every = 0
    config.train.evaluate_at_end = False
    return config


def snapshot(directory):
    """Every file under `directory` with its size and modification time."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out[os.path.relpath(os.path.join(root, f), directory)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One real training run (1 step) whose workdir the checkpoint cases try to reuse."""
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    trainer.train(trained_config(), workdir)
    return workdir


@pytest.mark.parametrize(
    "edit, patterns",
    [
        pytest.param(
            lambda c: with_overrides(c, {"model.mlp.encoder_features": 48}),
            [r"written with state_structure=", r"use a fresh --workdir"],
            id="other_width",
        ),
        pytest.param(
            lambda c: with_overrides(c, {"data.image_size": 9, "data.flatten": True}),
            [r"written with x_shape=\[64\] but this run has x_shape=\[81\]"],
            id="other_data_shape",
        ),
    ],
)
def test_checkpoint_of_another_config_is_refused_and_left_untouched(trained_run, edit, patterns):
    before = snapshot(trained_run)
    assert {"config.json", "train_metrics.jsonl"} <= set(before)
    with pytest.raises(ValueError) as err:
        trainer.train(edit(trained_config()), trained_run)
    check_message(str(err.value), patterns)
    assert snapshot(trained_run) == before  # not even config.json is rewritten
    ck = Checkpointer(os.path.join(trained_run, "checkpoints"))
    assert ck.all_steps() == [1]
    ck.close()
    # Control: the refusal is specific, the config that wrote the checkpoint still restores it.
    _, state, _, _ = trainer.restore_for_eval(trained_config(), trained_run)
    assert int(state.step) == 1


@pytest.mark.parametrize("make_dir", [False, True], ids=["no_workdir", "empty_checkpoints"])
def test_evaluating_a_workdir_without_checkpoints(tmp_path, make_dir):
    workdir = tmp_path / "run"
    if make_dir:
        (workdir / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        trainer.evaluate_checkpoint(small_config(), str(workdir))
    check_message(str(err.value), [r"No checkpoint in \S+checkpoints", r"Train first with"])
    assert not (workdir / "metrics.json").exists() and not (workdir / "figures").exists()


# ----------------------------------------------------------------------------- command line


def cli(script, workdir, *args, config="configs/gaussian.py"):
    cmd = [sys.executable, script, f"--config={config}", f"--workdir={workdir}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "script, args, config, patterns",
    [
        pytest.param(
            "train.py",
            [],
            "configs/no_such.py",
            [r"Config file 'configs/no_such.py' does not exist", r"configs/gaussian.py"],
            id="missing_config_file",
        ),
        pytest.param(
            "train.py",
            ["--config.train.batch_sise=32"],
            "configs/gaussian.py",
            [r"config.train has no field 'batch_sise'", r"did you mean config.train.batch_size"],
            id="unknown_config_key",
        ),
        pytest.param(
            "train.py",
            ["--config.train.batch_size=abc"],
            "configs/gaussian.py",
            [r"--config.train.batch_size=abc: invalid literal for int", r"field's type"],
            id="wrongly_typed_override",
        ),
        pytest.param(
            "train.py",
            [],
            "configs/sketchy.py:split3",
            [r"configs/sketchy.py takes 'split1' or 'split2', got 'split3'"],
            id="bad_config_argument",
        ),
        pytest.param(
            "train.py",
            ["--config.train.batch_size=30"],
            "configs/gaussian.py",
            [r"batch_size = 30 does not divide over the 4 devices", r"e.g. batch_size=32 or 28"],
            id="batch_not_dividing_devices",
        ),
        pytest.param(
            "eval.py",
            [],
            "configs/gaussian.py",
            [r"No checkpoint in", r"Train first with `python train.py"],
            id="eval_without_checkpoints",
        ),
    ],
)
def test_command_line_errors_are_one_paragraph_without_traceback(
    tmp_path, script, args, config, patterns
):
    workdir = tmp_path / "run"
    proc = cli(script, workdir, *args, config=config)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    check_message(errors[0], patterns)
    assert not workdir.exists()
