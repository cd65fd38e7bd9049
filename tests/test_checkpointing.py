"""Orbax checkpoints: round trip, keep-N, falling back past a damaged checkpoint, and
refusing a checkpoint written by another configuration."""

import jax.numpy as jnp
import numpy as np
import pytest

from wyner_jax.checkpointing import Checkpointer


def state(v):
    return {
        "step": jnp.asarray(v, jnp.int32),
        "w": jnp.full((3, 2), float(v)),
        "nested": {"b": jnp.arange(4.0) * v},
    }


def test_round_trip_and_keep_last_n(tmp_path):
    ck = Checkpointer(str(tmp_path), keep=2, fingerprint={"model": "wyner"})
    for s in (1, 2, 3):
        ck.save(s, state(s))
    ck.wait()
    assert ck.all_steps() == [2, 3]
    restored, step = ck.restore(state(0))
    assert step == 3
    np.testing.assert_array_equal(restored["w"], np.full((3, 2), 3.0))
    np.testing.assert_array_equal(restored["nested"]["b"], np.arange(4.0) * 3)
    ck.close()


def test_no_checkpoint_restores_nothing(tmp_path):
    ck = Checkpointer(str(tmp_path))
    assert ck.restore(state(0)) == (None, None)
    ck.close()


def files_under(folder):
    """Every file under ``folder`` (an epath.Path: local, or gs://, where epath has no rglob)."""
    for child in folder.iterdir():
        yield from files_under(child) if child.is_dir() else [child]


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(local_or_gcs_dir):
    """Locally and in a gs:// bucket (the files are objects, written by tensorstore)."""
    ck = Checkpointer(local_or_gcs_dir, keep=3)
    ck.save(1, state(1))
    ck.save(2, state(2))
    ck.close()
    # Empty every data file of the newest checkpoint.
    damaged = list(files_under(local_or_gcs_dir / "2" / "state"))
    for path in damaged:
        path.write_bytes(b"")
    assert damaged
    ck = Checkpointer(local_or_gcs_dir, keep=3)
    restored, step = ck.restore(state(0))
    assert step == 1
    np.testing.assert_array_equal(restored["w"], np.full((3, 2), 1.0))
    ck.close()


def test_checkpoint_of_another_config_is_refused(tmp_path):
    ck = Checkpointer(str(tmp_path), fingerprint={"model": "wyner", "data": "digits_add1"})
    ck.save(1, state(1))
    ck.close()
    ck = Checkpointer(str(tmp_path), fingerprint={"model": "iiae", "data": "digits_add1"})
    with pytest.raises(ValueError, match="model='wyner'.*fresh --workdir"):
        ck.restore(state(0))
    ck.close()
