"""Protection against the two ways a long run is lost: a non-finite update and preemption.

* ``guard_nonfinite`` wraps a model's ``train_step`` so that an update whose metrics contain a
  NaN or Inf is discarded inside the compiled step (the previous parameters are kept; the step
  counter still advances, so the next batch is a new one). It also returns the per-step
  ``finite`` flag, which the loop reads only when it logs or checkpoints, so there is no extra
  host synchronisation per step.
* ``Preemption`` turns SIGTERM / SIGINT into a flag that the loop polls after every step; the
  loop then saves a checkpoint at the current step, waits for it to be committed and returns.
"""

from __future__ import annotations

import math
import signal

import jax
import jax.numpy as jnp


def guard_nonfinite(train_step):
    """``train_step(state, batch) -> (state, metrics)`` ⟶ ``(state, metrics, finite)``."""

    def guarded(state, batch):
        new_state, metrics = train_step(state, batch)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
        kept = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new_state, state)
        return kept.replace(step=new_state.step), metrics, finite

    return guarded


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
