"""The background input pipeline yields exactly the sequential batches, in order."""

import threading
import time

import numpy as np
import pytest

from wyner_jax.prefetch import Prefetcher


def test_yields_every_step_in_order():
    with Prefetcher(lambda s: s * s, 3, 10, size=2) as p:
        assert list(p) == [s * s for s in range(3, 10)]


def test_runs_ahead_of_the_consumer_by_at_most_size():
    made = []
    with Prefetcher(lambda s: made.append(s) or s, 0, 100, size=3) as p:
        it = iter(p)
        assert next(it) == 0
        time.sleep(0.3)
        # one handed out, `size` queued, one blocked in put
        assert 2 <= len(made) <= 5


def test_a_producer_error_is_raised_at_its_step():
    def make(step):
        if step == 2:
            raise ValueError("bad batch 2")
        return step

    with Prefetcher(make, 0, 5) as p:
        it = iter(p)
        assert [next(it), next(it)] == [0, 1]
        with pytest.raises(ValueError, match="bad batch 2"):
            next(it)


def test_stopping_early_stops_the_producer():
    p = Prefetcher(lambda s: np.zeros(3), 0, 10**9, size=2)
    next(iter(p))
    p.close()
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
