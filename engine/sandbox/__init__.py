"""Sandboxes: where shell tasks run. One interface (:class:`Sandbox`), a local backend, a factory.

The local backend uses bubblewrap when it is installed (read-only system, private ``/tmp``, no network) and
falls back to a process group with resource limits. Every backend passes the conformance suite in
``tests/integration/sandbox_conformance.py``.
"""

from engine.sandbox._cgroup import cgroup_support
from engine.sandbox._isolation import Limits, bwrap_unavailable_reason
from engine.sandbox._leftovers import sandboxed
from engine.sandbox.base import (
    REDACTED,
    LinesCallback,
    OutputBacklog,
    OutputCallback,
    RunResult,
    Sandbox,
    SandboxBusy,
    SandboxClosed,
    SandboxError,
    SandboxUnavailable,
)
from engine.sandbox.factory import SANDBOX_KINDS, make_sandbox
from engine.sandbox.local import LocalSandbox

__all__ = [
    "REDACTED",
    "SANDBOX_KINDS",
    "Limits",
    "LinesCallback",
    "LocalSandbox",
    "OutputBacklog",
    "OutputCallback",
    "RunResult",
    "Sandbox",
    "SandboxBusy",
    "SandboxClosed",
    "SandboxError",
    "SandboxUnavailable",
    "bwrap_unavailable_reason",
    "cgroup_support",
    "make_sandbox",
    "sandboxed",
]
