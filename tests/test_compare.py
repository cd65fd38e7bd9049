"""The Wyner-vs-IIAE comparison: config loading, the table, and one tiny end-to-end run."""

import json
import os

import pytest

from wyner_jax import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE = {
    "digits_add1": {
        "probe/z_x": 0.91,
        "probe/z_xy": 0.95,
        "retrieval/mAP@all": 0.80,
        "coherence/x2y": 0.70,
        "coherence/joint": 0.60,
        "classifier/x_acc": 0.97,
        "train/step": 3000.0,
    },
    "iiae_digits_add1": {
        "probe/z_x": 0.98,
        "probe/z_xy": 0.95,
        "retrieval/mAP@all": 0.96,
        "coherence/x2y": 0.81,
        "train/step": 3000.0,
    },
}


def test_table_has_one_column_per_run_sections_and_the_best_in_bold():
    table = compare.format_markdown(
        FAKE, {"model": {"digits_add1": "wyner", "iiae_digits_add1": "iiae"}}
    )
    lines = table.splitlines()
    assert lines[0] == "| metric | digits_add1 | iiae_digits_add1 |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2] == "| model | wyner | iiae |"
    assert "| probe/z_x | 0.910 | **0.980** |" in lines
    assert "| probe/z_xy | 0.950 | 0.950 |" in lines  # a tie has no winner
    assert "| coherence/joint | 0.600 | – |" in lines  # missing in one run
    assert "| retrieval/mAP@all | 0.800 | **0.960** |" in lines
    titles = [i for i, l in enumerate(lines) if l.startswith("| **")]
    assert [lines[i].split("**")[1] for i in titles] == [t for _, t in compare.SECTIONS[:3]]
    # Only probes, retrieval, coherence and distances are compared, in that order.
    assert "classifier/x_acc" not in table and "train/step" not in table
    assert table.index("probe/z_x") < table.index("retrieval/") < table.index("coherence/")
    assert all(l.count("|") == 4 for l in lines)


def test_lower_is_better_rows_and_chance_rows():
    """Distances and leakage checks are won by the lowest value; chance levels by nobody."""
    table = compare.format_markdown(
        {
            "a": {
                "fd/x": 20.6,
                "retrieval/R@1_excl_x2y": 0.06,
                "retrieval/R@1_x2y": 0.9,
                "retrieval/R@1_chance": 0.03,
                "probe/azimuth_from_shared": 0.3,
            },
            "b": {
                "fd/x": 14.2,
                "retrieval/R@1_excl_x2y": 0.04,
                "retrieval/R@1_x2y": 0.8,
                "retrieval/R@1_chance": 0.02,
                "probe/azimuth_from_shared": 0.5,
            },
        }
    )
    assert "| fd/x | 20.600 | **14.200** |" in table
    assert "| retrieval/R@1_excl_x2y | 0.060 | **0.040** |" in table
    assert "| retrieval/R@1_x2y | **0.900** | 0.800 |" in table
    assert "| retrieval/R@1_chance | 0.030 | 0.020 |" in table
    assert "| probe/azimuth_from_shared | **0.300** | 0.500 |" in table
    assert table.index("retrieval/") < table.index("fd/x")  # distances come last


def test_table_with_a_single_run_marks_nothing():
    table = compare.format_markdown({"a": FAKE["digits_add1"]})
    assert "**0." not in table and "| probe/z_x | 0.910 |" in table


def test_config_specs_load_with_their_argument():
    path = os.path.join(ROOT, "configs/iiae_digits_add1.py")
    assert compare.split_spec(path + ":conv") == (path, "conv")
    assert compare.run_name(path + ":conv") == "iiae_digits_add1_conv"
    assert compare.run_name(path) == "iiae_digits_add1"
    assert compare.load_config(path + ":conv").model.family == "conv"
    assert compare.load_config(path).model.name == "iiae"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare.load_config("configs/no_such.py")
    with pytest.raises(ValueError, match="names a run twice"):
        compare.run_comparison([path, path], "/nonexistent")


def test_run_comparison_trains_each_config_in_its_own_directory_and_writes_the_table(
    tmp_path, monkeypatch
):
    """The plumbing, with training replaced by a stub: a real tiny run of both models takes
    ~165 s on the shared 2-core CI machine (compiling the two steps and the evaluators), over
    the 60 s budget for tests here; the full run is the documented command."""
    from wyner_jax import trainer

    seen = []

    def fake_train_and_evaluate(config, workdir):
        seen.append((config.model.name, config.train.num_steps, workdir))
        # --config.* overrides reach every config, with the field's type.
        assert config.optim.lr_generator == 3e-4 and config.train.log_every == 7
        return dict(FAKE["digits_add1" if config.model.name == "wyner" else "iiae_digits_add1"])

    monkeypatch.setattr(trainer, "train_and_evaluate", fake_train_and_evaluate)
    specs = [
        os.path.join(ROOT, "configs/digits_add1.py"),
        os.path.join(ROOT, "configs/iiae_digits_add1.py:conv"),
    ]
    # A typo in an override stops everything before the first run, naming the config.
    with pytest.raises(
        ValueError,
        match=r"digits_add1.py: --config.train.batch_sise: .*"
        r"did you mean config.train.batch_size",
    ):
        compare.run_comparison(specs, str(tmp_path), overrides={"train.batch_sise": "32"})
    assert seen == [] and not os.listdir(tmp_path)
    overrides = {"optim.lr_generator": "3e-4", "train.log_every": "7"}
    out = compare.run_comparison(specs, str(tmp_path), steps=7, overrides=overrides)
    assert seen == [
        ("wyner", 7, str(tmp_path / "digits_add1")),
        ("iiae", 7, str(tmp_path / "iiae_digits_add1_conv")),
    ]
    saved = json.load(open(tmp_path / "comparison.json"))
    assert saved["order"] == ["digits_add1", "iiae_digits_add1_conv"]
    run = saved["runs"]["iiae_digits_add1_conv"]
    assert run["model"] == "iiae" and run["steps"] == 7
    assert run["metrics"] == FAKE["iiae_digits_add1"]  # JSON writes a float's exact repr
    assert (tmp_path / "comparison.md").read_text().strip() == out["table"]
    assert "| model | wyner | iiae |" in out["table"]
    assert "| training steps | 7 | 7 |" in out["table"]
