"""Background input pipeline: the next global batches are assembled while the device works.

A batch is a pure function of (seed, step) (``PairedDataset.train_batch``), so the producer
needs no state beyond the step it is at; the loop's position is still just ``state.step``.
The producer thread gathers this process's rows and places them on the mesh
(``parallel.global_batch``), ``size`` batches ahead, so the compiled step never waits for
NumPy indexing or host-to-device copies.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

_DONE = object()


class Prefetcher:
    """Iterates ``make(step)`` for ``step`` in ``[start, stop)``, ``size`` items ahead.

    An exception in the producer is re-raised by the consumer at the step it belongs to.
    ``close()`` (also on leaving a ``with`` block) stops the producer; it is safe to stop
    consuming early (preemption, a non-finite stop).
    """

    def __init__(self, make: Callable[[int], object], start: int, stop: int, size: int = 2):
        if size < 1:
            raise ValueError(f"prefetch size must be >= 1, got {size}.")
        self._make, self._start, self._stop = make, start, stop
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        for step in range(self._start, self._stop):
            try:
                item = self._make(step)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self._put(e)
                return
            if not self._put(item):
                return
        self._put(_DONE)

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
