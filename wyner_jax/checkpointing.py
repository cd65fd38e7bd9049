"""Orbax checkpoints of the whole training state (parameters, optimiser, EMA, RNG, step).

The input pipeline needs no state of its own: a batch is a pure function of (seed, step),
so restoring the step restores the data position, and training resumes exactly.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from absl import logging

from wyner_jax import paths


class Checkpointer:
    """An async ``ocp.CheckpointManager`` keeping the last ``keep`` checkpoints of a run."""

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int = 3,
        async_save: bool = True,
        fingerprint: dict | None = None,
    ):
        # Local paths made absolute; gs:// kept as is (Orbax writes it through tensorstore).
        self.directory = paths.absolute(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )
        self.fingerprint = fingerprint or {}
        self.restored_meta: dict = {}  # the meta of the checkpoint ``restore`` returned

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, force: bool = False, extra: dict | None = None) -> bool:
        """Starts an async save of ``state`` at ``step`` (returns at once). ``extra``: small
        JSON-able loop counters kept beside the fingerprint (e.g. the skipped-update count)."""
        return self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(dict(extra or {}, **self.fingerprint, step=int(step))),
            ),
            force=force,
        )

    def latest_meta(self) -> dict:
        """The JSON meta (fingerprint, step, ``extra``) of the newest readable checkpoint; {}
        when there is none. Reads no arrays."""
        for s in reversed(self.all_steps()):
            try:
                meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            except Exception:  # noqa: BLE001 - a damaged one: try the previous
                continue
            return dict(meta["meta"])
        return {}

    def wait(self) -> None:
        """Blocks until every pending save is committed to disk."""
        self.manager.wait_until_finished()

    def restore(self, target_state, step: int | None = None):
        """Restores into the structure, dtypes and shardings of ``target_state``.

        Without ``step``, tries the checkpoints from the newest down: one that cannot be read
        (truncated or missing files) is reported and skipped, so a crash during a save costs at
        most the steps since the previous checkpoint. Returns (state, step) or (None, None)
        when there is no checkpoint.
        """
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target_state)
        steps = [step] if step is not None else list(reversed(self.all_steps()))
        for s in steps:
            try:
                meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
                meta = meta["meta"]
            except Exception as e:  # noqa: BLE001 - any read failure means "damaged"
                meta = None
                error = e
            if meta is not None:
                # Checked before the arrays: a checkpoint of another config must stop the run,
                # not be mistaken for a damaged one (which would restart training over it).
                self._check_fingerprint(meta, s)
                try:
                    restored = self.manager.restore(
                        s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
                    )
                    self.restored_meta = dict(meta)
                    return restored["state"], s
                except Exception as e:  # noqa: BLE001
                    error = e
            if step is not None:
                raise error
            logging.warning(
                "Checkpoint %s/%d cannot be read (%s: %s); falling back to the " "previous one.",
                self.directory,
                s,
                type(error).__name__,
                error,
            )
        return None, None

    def _check_fingerprint(self, meta, step) -> None:
        for key, value in self.fingerprint.items():
            if key in meta and meta[key] != value:
                raise ValueError(
                    f"The checkpoint {self.directory}/{step} was written with {key}={meta[key]!r} "
                    f"but this run has {key}={value!r}; use a fresh --workdir for a different "
                    "configuration, or restore with the config it was trained with."
                )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
