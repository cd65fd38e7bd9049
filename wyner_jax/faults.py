"""Protection against the two ways a long run is lost: a non-finite update and preemption.

* ``train_step_for(model, on_nonfinite)`` is the step the loop runs; it also returns the
  per-step ``finite`` flag (every loss term finite), which the loop reads only when it logs or
  checkpoints, so there is no extra host synchronisation per step. With ``'skip'`` an update
  whose loss terms contain a NaN or Inf is discarded inside the compiled step
  (``guard_nonfinite``: the previous state is kept; the step counter still advances, so the
  next batch is a new one). With ``'stop'`` (the default) the update is applied and the loop
  stops at its next check, before anything is saved, so keeping the old state would be wasted
  work: for the Sketchy Wyner step that selection is a second pass over the discriminator's
  parameters and optimiser state, kept alive through the G step (~8 % of the step).
* ``state_is_finite`` is checked before every save, so a non-finite gradient behind finite
  loss terms cannot put NaN into a checkpoint either.
* ``Preemption`` turns SIGTERM / SIGINT into a flag that the loop polls after every compiled
  call (one step, or ``train.steps_per_call``); the
  loop then saves a checkpoint at the current step, waits for it to be committed and returns.
  With several processes the flag is agreed first (``agreed_stop``): a notice to any one
  worker stops every worker after the same step, so they save one checkpoint together
  instead of one worker leaving while the others wait in a collective.
"""

from __future__ import annotations

import math
import signal

import jax
import jax.numpy as jnp
import numpy as np


def all_finite(tree) -> jax.Array:
    """True when no floating leaf of ``tree`` holds a NaN or Inf."""
    leaves = [
        jnp.all(jnp.isfinite(a))
        for a in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard_nonfinite(train_step):
    """``train_step(state, batch) -> (state, metrics)`` ⟶ ``(state, metrics, finite)``."""

    def guarded(state, batch):
        new_state, metrics = train_step(state, batch)
        finite = all_finite(metrics)
        kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new_state, state)
        return kept.replace(step=new_state.step), metrics, finite

    return guarded


def flag_nonfinite(train_step):
    """``train_step(state, batch) -> (state, metrics)`` ⟶ ``(state, metrics, finite)``, the
    update applied either way."""

    def flagged(state, batch):
        new_state, metrics = train_step(state, batch)
        return new_state, metrics, all_finite(metrics)

    return flagged


def train_step_for(model, on_nonfinite: str):
    """The step the training loop runs for ``config.train.on_nonfinite``."""
    if on_nonfinite == "skip":
        return guard_nonfinite(model.train_step)
    if on_nonfinite == "stop":
        return flag_nonfinite(model.train_step)
    raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}.")


@jax.jit
def state_is_finite(state) -> jax.Array:
    return all_finite(state)


def nonfinite_terms(metrics: dict) -> list[str]:
    return [k for k, v in metrics.items() if not math.isfinite(float(v))]


class Preemption:
    """Context manager: while active, SIGTERM and SIGINT set ``requested`` instead of killing
    the process (a second signal of the same kind is not caught again: it kills)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the signal's name once one arrived
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self):
        for s in self.SIGNALS:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


def agreed_stop(local: str | None, process_count: int) -> str | None:
    """The signal name every process acts on: the local one with one process; with several,
    the first of ``Preemption.SIGNALS`` that any process received (one all-gather of a small
    integer per call, so every process returns the same value after the same call)."""
    if process_count == 1:
        return local
    from jax.experimental import multihost_utils

    names = [s.name for s in Preemption.SIGNALS]
    code = names.index(local) + 1 if local is not None else 0
    codes = np.asarray(multihost_utils.process_allgather(np.int32(code))).reshape(-1)
    received = sorted(int(c) for c in codes if c > 0)
    return names[received[0] - 1] if received else None
