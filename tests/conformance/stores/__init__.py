"""The store conformance suite: behaviour every implementation of ``db.stores.interfaces`` must show.

Like LangGraph's checkpointer conformance tests, the checks are written once, against the interfaces only, as
classes that pytest does not collect. An implementation joins by providing a ``stores`` fixture that yields a
fresh, empty ``Stores`` per test, and by subclassing each class in a ``test_*.py`` module (see
``tests/conformance/stores/test_surreal_stores.py``).
"""

from tests.conformance.stores.agent import (
    MemoryStoreConformance,
    MetricStoreConformance,
)
from tests.conformance.stores.control import ControlRequestStoreConformance
from tests.conformance.stores.core import (
    CheckpointStoreConformance,
    EventStoreConformance,
    TaskStoreConformance,
    WorkflowStoreConformance,
)
from tests.conformance.stores.graph import ApprovalStoreConformance, GraphNodeStoreConformance

__all__ = [
    "ApprovalStoreConformance",
    "CheckpointStoreConformance",
    "ControlRequestStoreConformance",
    "EventStoreConformance",
    "GraphNodeStoreConformance",
    "MemoryStoreConformance",
    "MetricStoreConformance",
    "TaskStoreConformance",
    "WorkflowStoreConformance",
]
