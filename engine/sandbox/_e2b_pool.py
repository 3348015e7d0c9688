"""The E2B sandboxes an engine has made: created on first use, shared by key, renewed while used, always killed.

A task's sandbox objects (one per ``E2BSandbox``, and a retry may make another on the same working directory) share
one remote sandbox through a key: the task's local working directory (``AGENTDECK_E2B_SCOPE=task``) or its workflow
and agent (``agent``). The remote sandbox is killed when the last object using it closes, and every one left is
killed when the pool closes.

**No leaks after a crash.** When a sandbox is made, a record beside the task's local working directory
(``.TASK.agentdeck-e2b``) names its id; it goes when the sandbox is killed. The next pool to make a sandbox for that
working directory - the resumed task - first kills the recorded one. A sandbox whose engine never comes back dies on
E2B's side when its lifetime (``AGENTDECK_E2B_LIFETIME``) runs out: the pool renews it only while it is in use.

Creating a sandbox is retried with backoff on network trouble (timeouts, refused connections, rate limits, 5xx);
a rejected API key is not retried. What finally fails is a :class:`~engine.sandbox.base.SandboxUnavailable` that
says why, without the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from engine.sandbox.base import SandboxUnavailable
from engine.sandbox.e2b_settings import KEY_HINT, E2BSettings

if TYPE_CHECKING:
    from e2b import AsyncSandbox

log = logging.getLogger(__name__)

#: Attempts at creating a sandbox before giving up (network trouble only).
CREATE_ATTEMPTS = 4
_RECORD = ".agentdeck-e2b"


def record_path(workdir: Path) -> Path:
    """Where the id of the sandbox made for ``workdir`` is recorded (a sibling the task cannot write)."""
    return workdir.parent / f".{workdir.name}{_RECORD}"


def transient(exc: BaseException) -> bool:
    """Network trouble worth another try: timeouts, unreachable hosts, rate limits, server errors."""
    from e2b.exceptions import AuthenticationException, RateLimitException, TimeoutException

    if isinstance(exc, AuthenticationException):
        return False
    if isinstance(exc, (TimeoutException, RateLimitException, ConnectionError, OSError, TimeoutError)):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("connect", "unreachable", "timed out", "502", "503", "504"))


def network_retries(attempts: int, first_s: float, max_s: float) -> AsyncRetrying:
    """Up to ``attempts`` tries while the trouble looks like the network's (:func:`transient`), waiting about
    ``first_s``, then twice that each time (with jitter, at most ``max_s``); the last error is raised as it was."""
    return AsyncRetrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=first_s, max=max_s),
        reraise=True,
    )


def describe(exc: BaseException, api_key: str | None) -> str:
    """A one-line account of an SDK error, with the API key scrubbed should the SDK have quoted it."""
    from e2b.exceptions import AuthenticationException

    if isinstance(exc, AuthenticationException):
        text = f"E2B rejected the API key ({exc}); {KEY_HINT}"
    else:
        text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    text = " ".join(text.split())
    return text.replace(api_key, "***") if api_key else text


@dataclass
class _Remote:
    sandbox: AsyncSandbox | None = None
    users: int = 0
    record: Path | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    renewing: asyncio.Task[None] | None = None


class E2BPool:
    """Remote sandboxes by key (see the module docstring). ``connection`` goes to every SDK call (``api_key``,
    ``debug``, ``api_url``, ``sandbox_url``, ``domain``...); what it leaves out the SDK reads from ``E2B_*``."""

    def __init__(self, settings: E2BSettings, connection: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.connection = dict(connection or {})
        if "debug" not in self.connection and settings.debug:
            self.connection["debug"] = True
        if "api_key" not in self.connection and settings.api_key is not None:
            self.connection["api_key"] = settings.api_key.get_secret_value()
        self._remotes: dict[str, _Remote] = {}
        self._discarding: set[asyncio.Future[None]] = set()  # sandboxes being made for a caller that gave up
        self._closed = False

    @property
    def api_key(self) -> str | None:
        key = self.connection.get("api_key")
        return key if isinstance(key, str) else None

    def missing_key(self) -> str | None:
        """Why no sandbox can be made (no API key outside debug mode), else None."""
        if self.connection.get("debug") or self.api_key:
            return None
        return self.settings.missing_key()

    def remote_workdir(self, workdir: Path) -> str:
        """The working directory inside the sandbox for the task whose local directory is ``workdir``."""
        return f"{self.settings.workdir.rstrip('/')}/{workdir.parent.name}/{workdir.name}"

    async def acquire(self, key: str, workdir: Path, *, network: bool, metadata: dict[str, str]) -> AsyncSandbox:
        """The sandbox for ``key``, made on first use; each call must be matched by a :meth:`release`."""
        if self._closed:
            raise SandboxUnavailable("the engine is closing; no new E2B sandbox is made")
        while True:
            remote = self._remotes.setdefault(key, _Remote())
            async with remote.lock:
                if self._remotes.get(key) is not remote:  # released (and killed) while we waited: start afresh
                    continue
                return await self._acquire_locked(remote, workdir, network, metadata)

    async def _acquire_locked(
        self, remote: _Remote, workdir: Path, network: bool, metadata: dict[str, str]
    ) -> AsyncSandbox:
        if remote.sandbox is None:
            await self._kill_recorded(workdir)
            creating = asyncio.ensure_future(self._create(network, metadata))
            try:
                remote.sandbox = await asyncio.shield(creating)
            except asyncio.CancelledError:
                # E2B is making it anyway: kill it once it is made, or it runs (and costs) unseen.
                discarding = asyncio.ensure_future(self._discard(creating))
                self._discarding.add(discarding)
                discarding.add_done_callback(self._discarding.discard)
                raise
            remote.record = record_path(workdir)
            _write_record(remote.record, remote.sandbox.sandbox_id)
            if not self.connection.get("debug"):
                remote.renewing = asyncio.ensure_future(self._renew(remote.sandbox))
        remote.users += 1
        return remote.sandbox

    async def release(self, key: str) -> None:
        """One user of ``key`` is done; the last one's release kills the sandbox."""
        remote = self._remotes.get(key)
        if remote is None:
            return
        async with remote.lock:
            remote.users -= 1
            if remote.users > 0:
                return
            self._remotes.pop(key, None)
            await self._kill(remote)

    async def close(self) -> None:
        """Kill every sandbox still held (the engine is closing)."""
        self._closed = True
        remotes, self._remotes = list(self._remotes.values()), {}
        await asyncio.gather(*(self._kill(remote) for remote in remotes), *self._discarding, return_exceptions=True)

    async def _discard(self, creating: asyncio.Future[AsyncSandbox]) -> None:
        """Kill the sandbox ``creating`` makes, once it is made (its caller was cancelled meanwhile)."""
        try:
            sandbox = await creating
        except Exception:
            return  # it was never made
        await self._kill(_Remote(sandbox=sandbox))

    async def _create(self, network: bool, metadata: dict[str, str]) -> AsyncSandbox:
        from e2b import AsyncSandbox

        # The same key on every try: if E2B made the sandbox but its answer was lost, a retry gets that sandbox
        # back instead of making a second one nobody would know of.
        idempotency_key = str(uuid.uuid4())

        try:
            async for attempt in network_retries(CREATE_ATTEMPTS, first_s=0.5, max_s=8.0):
                with attempt:
                    return await AsyncSandbox.create(
                        template=self.settings.template,
                        timeout=self.settings.lifetime,
                        metadata=metadata,
                        allow_internet_access=network,
                        idempotency_key=idempotency_key,
                        **self.connection,
                    )
        except Exception as exc:
            raise SandboxUnavailable(f"could not create an E2B sandbox: {describe(exc, self.api_key)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _renew(self, sandbox: AsyncSandbox) -> None:
        """Push the sandbox's end out again every half lifetime while we hold it."""
        while True:
            await asyncio.sleep(self.settings.lifetime / 2)
            try:
                await sandbox.set_timeout(self.settings.lifetime)
            except Exception as exc:
                log.warning("could not renew E2B sandbox %s: %s", sandbox.sandbox_id, describe(exc, self.api_key))

    async def _kill(self, remote: _Remote) -> None:
        if remote.renewing is not None:
            remote.renewing.cancel()
        if remote.sandbox is None:
            return
        try:
            await _kill_by_id(remote.sandbox.sandbox_id, self.connection)
        except Exception as exc:
            log.warning("could not kill E2B sandbox %s: %s", remote.sandbox.sandbox_id, describe(exc, self.api_key))
            return  # keep the record: the next run on this directory tries again
        if remote.record is not None:
            _forget_record(remote.record, remote.sandbox.sandbox_id)

    async def sweep(self, directory: Path) -> int:
        """Kill the sandboxes recorded for task directories under ``directory`` (a workflow's, when the engine
        takes it over after a crash) that this pool does not hold; returns how many records there were."""
        records = await asyncio.to_thread(lambda: sorted(directory.glob(f".*{_RECORD}")))
        for record in records:
            await self._kill_recorded(record.with_name(record.name[1 : -len(_RECORD)]))
        return len(records)

    async def _kill_recorded(self, workdir: Path) -> None:
        """Kill the sandbox a crashed engine made for ``workdir`` (its record is still there)."""
        record = record_path(workdir)
        sandbox_id = _recorded_id(record)
        if sandbox_id is None:
            return
        live = {r.sandbox.sandbox_id for r in self._remotes.values() if r.sandbox is not None}
        if sandbox_id in live:
            return
        try:
            await _kill_by_id(sandbox_id, self.connection)
            log.info("killed E2B sandbox %s left by an engine that stopped without cleaning up", sandbox_id)
        except Exception as exc:
            log.warning("could not kill leftover E2B sandbox %s: %s", sandbox_id, describe(exc, self.api_key))
        _forget_record(record, sandbox_id)


async def _kill_by_id(sandbox_id: str, connection: dict[str, Any]) -> None:
    from e2b import AsyncSandbox

    await AsyncSandbox.kill(sandbox_id, **connection)


def _recorded_id(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text())["sandbox_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _forget_record(path: Path, sandbox_id: str) -> None:
    """Remove the record if it still names ``sandbox_id`` (a newer sandbox for the directory may have replaced it)."""
    if _recorded_id(path) == sandbox_id:
        with contextlib.suppress(OSError):
            path.unlink()


def _write_record(path: Path, sandbox_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"sandbox_id": sandbox_id, "engine_pid": os.getpid()}))
    partial.replace(path)
