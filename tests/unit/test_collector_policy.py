"""The dashboard's collector policy: nothing is collected in full while events flow; garbage goes once quiet."""

from __future__ import annotations

import gc
import weakref

from tui.collector import CollectorPolicy


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_garbage_made_during_a_flood_is_collected_once_it_is_quiet() -> None:
    policy = CollectorPolicy()
    try:
        node = Node()
        gone = weakref.ref(node)
        policy.busy()
        policy.tick()  # events flowing: what lives now is frozen, out of the collector's way
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None, "a frozen cycle was collected during the flood"
        policy.QUIET_S = 0.0  # no events since: quiet
        policy.tick()
        assert gone() is None, "the cycle outlived the quiet spell"
    finally:
        policy.release()
    assert gc.get_freeze_count() == 0
