"""A dashboard attached to an engine in another process, through that engine's control socket.

An embedded database is locked by the process that opened it: while ``agentdeck run --headless`` holds the file,
``agentdeck ui`` cannot open it. It attaches instead, over one ``OwnerLink``:

* **state**: ``AttachedDatabase`` sends each query, encoded as the embedded engine's own CBOR frame, for the owner
  to run on its connection, and decodes the reply here, so the stores work unchanged and every SurrealDB type
  arrives as it would in-process. Reads only: the owner refuses a query that writes.
* **changes**: the tree's change streams are watched by the owner, which sees every commit (``AttachedWatcher``).
* **live events**: the owner's event stream is republished on a local in-process bus; a subscriber that falls
  behind refills from the event table (through the owner), as with any bus.
* **controls**: pause, resume, cancel, retry, rollback, approve and fork are carried out by the owner.

``AttachedEngine`` offers what the dashboard uses of an ``Engine`` (``engine.api.DashboardEngine``). It cannot
start workflows; quitting detaches and leaves the owner's workflows running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

from db.connection import Database, Kind, decode_frame
from db.errors import DatabaseUnavailable, QueryFailed
from db.models import Approval, Checkpoint, Event, Watchpoint
from db.settings import DbSettings
from db.stores import Stores
from db.watch import WATCHED_TABLES, Change, ChangeWatcher
from engine.bus import InProcessBus
from engine.control_service import ControlRefused
from engine.errors import ControlError
from engine.graph.threads import HistoryEntry
from engine.memory import MemoryService
from engine.owner_link import OwnerLink
from engine.private_paths import control_token_path
from engine.settings import EngineSettings
from engine.spec import WorkflowSpec

__all__ = ["AttachedDatabase", "AttachedEngine", "attach"]

log = logging.getLogger(__name__)


class AttachedDatabase(Database):
    """The owner's database, queried through the owner (``ControlService.op_query``)."""

    def __init__(self, link: OwnerLink, url: str, kind: Kind) -> None:
        super().__init__(None, url, kind)
        self.link = link
        self.native_codec = True  # frames are encoded here, run there
        self.sees_every_commit = False  # the owner writes, not us
        self.watcher_factory = AttachedWatcher

    async def _query_embedded(self, frame: bytes, sql: str) -> dict[str, Any]:
        try:
            reply = await self.link.call("query", {"frame": base64.b64encode(frame).decode()})
        except ControlError as exc:
            raise QueryFailed(str(exc)) from exc
        response = decode_frame(base64.b64decode(reply))
        return response if isinstance(response, dict) else {}

    async def close(self) -> None:
        self._closed = True  # the owner's connection is the owner's to close


class AttachedWatcher(ChangeWatcher):
    """Change streams watched by the owner, where every commit is seen, and sent here as they come."""

    def __init__(self, db: Database, batch: int = 1000) -> None:
        super().__init__(db, batch)
        assert isinstance(db, AttachedDatabase)
        self._link = db.link

    async def watch(self, table: str, since: int | None = None) -> AsyncGenerator[Change, None]:
        async with contextlib.aclosing(self.watch_many([table], since)) as changes:
            async for change in changes:
                yield change

    async def watch_many(self, tables: Sequence[str], since: int | None = None) -> AsyncGenerator[Change, None]:
        unknown = [table for table in tables if table not in WATCHED_TABLES]
        if unknown:
            raise ValueError(f"table {unknown[0]!r} has no change feed; watchable: {', '.join(WATCHED_TABLES)}")
        start = await self.position() if since is None else since
        try:
            async with contextlib.aclosing(
                self._link.stream("watch", {"tables": list(tables), "since": start})
            ) as items:
                async for item in items:
                    model, _ = WATCHED_TABLES[item["table"]]
                    record = model.model_validate(item["record"]) if item["record"] is not None else None
                    yield Change(item["table"], item["action"], item["id"], record, int(item["position"]))
        except ConnectionError as exc:
            raise DatabaseUnavailable(str(exc), hint="the engine this dashboard was attached to is gone") from exc


class _PendingApprovals:
    def __init__(self, stores: Stores) -> None:
        self._stores = stores

    async def pending(self, workflow: str) -> list[Approval]:
        return await self._stores.approvals.list(workflow, pending_only=True)


class AttachedEngine:
    """What the dashboard uses of an ``Engine``, for an engine running in another process."""

    def __init__(self, link: OwnerLink, hello: Mapping[str, Any], url: str) -> None:
        self.link = link
        self.owner = str(hello["owner"])
        self.owner_pid = int(hello["pid"])
        self.url = url
        self.db: Database = AttachedDatabase(link, url, hello["kind"])
        self.stores = Stores.over(self.db)
        self.bus = InProcessBus(self.stores.events)
        self.approvals = _PendingApprovals(self.stores)
        self.memory = MemoryService(self.stores, EngineSettings().embedder, DbSettings().embedding_dimension)
        self.stopped: list[tuple[str, str]] = []  # we stop nothing: quitting detaches
        self._runs: dict[str, bool] = {}  # the owner's runs and whether each is paused
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refresh_runs()
        self._pump = asyncio.create_task(self._follow_events(), name="agentdeck-attached-events")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.wait([self._pump])  # however it ended; the rest is closed all the same
        await self.memory.close()
        await self.bus.close()
        await self.link.close()
        await self.db.close()

    async def _follow_events(self) -> None:
        try:
            async with contextlib.aclosing(self.link.stream("events")) as items:
                async for item in items:
                    event = Event.model_validate(item)
                    if not self.bus.publish_nowait(event):
                        await self.bus.publish(event)
                    if event.type.startswith("workflow."):
                        with contextlib.suppress(ControlError, TimeoutError):
                            await self._refresh_runs()
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            # Live events stopped while the link is up: say so and let go of the owner, so the dashboard does
            # what it does when an owner goes away (opens the database, or attaches again) instead of freezing.
            log.exception("the attached engine's event stream failed")
            await self.link.close()

    async def _refresh_runs(self) -> None:
        runs = await self.link.call("runs")
        self._runs = {str(workflow): bool(paused) for workflow, paused in runs.items()}

    async def _control(self, op: str, **args: Any) -> Any:
        try:
            return await self.link.call(op, args)
        finally:
            with contextlib.suppress(ControlError, ConnectionError, TimeoutError):
                await self._refresh_runs()  # what the next p decides from

    # ---- the Engine API the dashboard uses -------------------------------------------------------------------

    def is_running(self, workflow_id: str) -> bool:
        return workflow_id in self._runs

    def is_paused(self, workflow_id: str) -> bool | None:
        return self._runs.get(workflow_id)

    async def submit(self, spec: WorkflowSpec, vars: Mapping[str, str] | None = None) -> str:
        raise ControlError(
            f"this dashboard is attached to the engine of process {self.owner_pid}: start workflows with "
            "`agentdeck run FILE` once it ends"
        )

    async def pause(self, workflow_id: str) -> None:
        await self._control("pause", workflow=workflow_id)

    async def resume(self, workflow_id: str) -> None:
        await self._control("resume", workflow=workflow_id)

    async def resume_workflow(self, workflow_id: str) -> str:
        await self._control("resume", workflow=workflow_id)
        return workflow_id

    async def cancel(self, workflow_id: str) -> None:
        await self._control("cancel", workflow=workflow_id)

    async def retry(self, workflow_id: str, task: str, *, fresh: bool = True) -> None:
        await self._control("retry_task", workflow=workflow_id, task=task, fresh=fresh)

    async def rollback(self, workflow_id: str, checkpoint_id: str) -> Checkpoint:
        row = await self._control("rollback_row", workflow=workflow_id, checkpoint=checkpoint_id)
        return Checkpoint.model_validate(row)

    async def approve(
        self, workflow_id: str, task: str, value: Any = True, *, deny: bool = False, by: str = "user"
    ) -> Approval:
        row = await self._control("approve_row", workflow=workflow_id, task=task, value=value, deny=deny, by=by)
        return Approval.model_validate(row)

    async def graph_history(self, workflow_id: str, task: str) -> list[HistoryEntry]:
        entries = await self.link.call("history", {"workflow": workflow_id, "task": task})
        return [HistoryEntry(**entry) for entry in entries]

    async def fork_graph(
        self,
        workflow_id: str,
        task: str,
        checkpoint_id: str,
        values: dict[str, Any] | None = None,
        *,
        downstream: bool = True,
    ) -> str:
        args = {"task": task, "checkpoint": checkpoint_id, "values": values, "downstream": downstream}
        return str(await self._control("fork_head", workflow=workflow_id, **args))

    async def diverge(self, workflow_id: str, at_seq: int, values: dict[str, Any] | None = None) -> str:
        return str(await self._control("diverge_id", workflow=workflow_id, at_seq=at_seq, values=values))

    async def add_watchpoint(
        self, workflow_id: str, expr: str, task: str | None = None, *, name: str | None = None
    ) -> Watchpoint:
        row = await self._control("watch_add_row", workflow=workflow_id, when=expr, task=task, name=name)
        return Watchpoint.model_validate(row)

    async def remove_watchpoint(self, workflow_id: str, watchpoint_id: str) -> None:
        await self._control("watch_remove", workflow=workflow_id, watchpoint=watchpoint_id)

    async def watchpoints(self, workflow_id: str) -> list[Watchpoint]:
        rows = await self.link.call("watch_list", {"workflow": workflow_id})
        return [Watchpoint.model_validate(row) for row in rows]


async def attach(url: str, socket: Path) -> AttachedEngine | None:
    """The engine serving ``url`` on ``socket``, attached and started; None when nobody listens there (a stale
    socket: its owner is gone and the database is free).

    Raises:
        DatabaseUnavailable: the owner will not serve this process (another user, a sandboxed task), or did not
            answer in time.
    """
    try:
        link = await OwnerLink.open(socket)
    except ConnectionError:
        return None
    try:
        hello = await link.call("hello", timeout_s=10)
        engine = AttachedEngine(link, hello, url)
        await engine.start()
    except ConnectionError:
        await link.close()
        return None
    except ControlRefused as exc:
        await link.close()
        raise DatabaseUnavailable(
            f"the engine running on {url} refused to let this dashboard attach: {exc}",
            hint=f"run it as the user who started that engine, outside any task; its token is in "
            f"{control_token_path(socket)}",
        ) from exc
    except ControlError as exc:  # not refused, but no such operation: an agentdeck from before attaching
        await link.close()
        raise DatabaseUnavailable(
            f"the engine running on {url} cannot serve a dashboard: {exc}",
            hint="it is an older agentdeck: `agentdeck workflows …` control its workflows; open the dashboard once "
            "it ends",
        ) from exc
    except TimeoutError as exc:
        await link.close()
        raise DatabaseUnavailable(
            f"the engine running on {url} did not answer on {socket}", hint="is its process stuck? try again"
        ) from exc
    except BaseException:
        await link.close()
        raise
    return engine
