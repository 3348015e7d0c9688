"""When Python's cyclic garbage collector may pause the dashboard: while it is quiet, not during a flood.

A full collection walks every tracked object. The dashboard keeps many (event rows, pane lines, the engine's
state), and a full pass over them took 40-150 ms in the middle of a 2,000 events/s flood — a frame stood still
that long (``bench/dashboard_bench.py``, ``gc.callbacks`` timing). While events flow, what has survived so far is
frozen (``gc.freeze``: left out of collections, a cheap move), so the collector only ever walks what is young.
Once events have stopped for a while the frozen objects are handed back and collected in one full pass, so
garbage is never kept for long.
"""

from __future__ import annotations

import gc
import time


class CollectorPolicy:
    """Call ``busy()`` when events arrive and ``tick()`` a few times a second (the dashboard: every 0.25 s; the
    more often, the fewer young objects a collection in a flood walks: 25 ms passes at once a second, <= 10 at 4)."""

    QUIET_S = 2.0

    def __init__(self) -> None:
        self._last_busy = float("-inf")
        self._frozen = False

    def busy(self) -> None:
        self._last_busy = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._last_busy < self.QUIET_S:
            gc.freeze()
            self._frozen = True
        elif self._frozen:
            self.collect_now()

    def collect_now(self) -> None:
        """One full collection over everything (frozen objects included), then freeze what is left: it lives on."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._frozen = False

    @staticmethod
    def release() -> None:
        """Hand every frozen object back to the collector (the dashboard is going)."""
        gc.unfreeze()
