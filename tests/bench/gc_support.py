"""The garbage collector as a benchmark's variable: Python's default thresholds, or the
worker's tuning (``common.lifecycle.tune_gc(GC_GEN0)``, what ``run_service`` applies).

``collector(gen0)`` runs a block under one of them and restores the process's collector after
(thresholds, frozen objects), so benchmarks that follow in the same ``python -m tests.bench``
start from Python's defaults again; ``GcClock`` adds up the time spent inside collections
(``gc.callbacks``), the part of a run's CPU the tuning is about.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from common.lifecycle import tune_gc
from common.settings import DEFAULT_GC_GEN0

#: The thresholds this process started with (no benchmark leaves the collector tuned).
PYTHON_DEFAULT = gc.get_threshold()
#: The two settings a same-run comparison measures: (label, gen0 or None for Python's).
SETTINGS: tuple[tuple[str, int | None], ...] = (
    (f"Python's default GC {PYTHON_DEFAULT}", None),
    (f"worker's tune_gc(GC_GEN0={DEFAULT_GC_GEN0})", DEFAULT_GC_GEN0),
)


def rounds_of(rounds: int) -> Iterator[tuple[str, int | None]]:
    """``SETTINGS`` ``rounds`` times, in turn first and last, so drift favours neither."""
    for k in range(rounds):
        yield from SETTINGS if k % 2 == 0 else SETTINGS[::-1]


@contextmanager
def collector(gen0: int | None) -> Iterator[None]:
    """The block under ``tune_gc(gen0)``, or under Python's default thresholds for ``None``;
    garbage from before is collected first, so each run starts from the same heap."""
    saved = gc.get_threshold()
    gc.collect()
    if gen0 is None:
        gc.set_threshold(*PYTHON_DEFAULT)
    else:
        tune_gc(gen0)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


class GcClock:
    """Seconds spent inside the collector, and collections run, while it is entered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)
