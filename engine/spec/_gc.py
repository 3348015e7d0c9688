"""Pausing Python's cyclic garbage collector while a large workflow is built or checked."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (reference counting still frees everything as usual).

    What the loader and the graph checks build stays reachable until they finish, so the collector finds nothing
    to free; left on, it rescans the ever larger heap again and again, which made loading 50,000 tasks twice as
    slow (5.1 s of CPU, 2.4 s paused) and no longer linear in the number of tasks.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
