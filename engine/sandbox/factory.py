"""Choosing a sandbox backend by name (``AGENTDECK_SANDBOX``, a workflow's ``sandbox:`` default)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.sandbox.base import Sandbox
from engine.sandbox.local import LocalSandbox

#: The backend names a workflow or ``AGENTDECK_SANDBOX`` may use.
SANDBOX_KINDS = ("local", "e2b", "worker")


def make_sandbox(kind: str, workdir: Path, *, hidden: Sequence[Path] = (), **opts: Any) -> Sandbox:
    """A sandbox of the named kind working in ``workdir``; ``opts`` go to the backend's constructor.

    ``hidden``: what the command must not see - the engine's database, control socket and the root of all task
    directories (``Engine.sandbox_hidden``); ``workdir`` stays visible. A remote backend has nothing to hide.

    Raises:
        SandboxUnavailable: The backend cannot be used (E2B without an API key; bubblewrap requested but
            missing).
        ValueError: ``kind`` names no backend.
    """
    if kind == "local":
        return LocalSandbox(workdir, hidden=hidden, **opts)
    if kind == "e2b":
        # Here, not at the top: the e2b SDK is loaded only by workflows that use it.
        from engine.sandbox.e2b import E2BSandbox

        return E2BSandbox(workdir, **opts)
    if kind == "worker":
        raise ValueError("a worker sandbox is made by its run (engine.workers.sandbox), with the engine's dispatcher")
    raise ValueError(f"unknown sandbox kind {kind!r}; expected one of: {', '.join(SANDBOX_KINDS)}")
