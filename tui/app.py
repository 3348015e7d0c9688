"""The app factory: one ``make_app`` used by ``agentdeck demo``, ``run`` and ``ui`` and by the tests.

The app is thin: it hosts an engine (same event loop), starts the event feed, shows the main screen, and optionally
submits a workflow on start. Either the caller opened the engine (tests) and closes it after the app exits, or the
app opens its own from a database URL (the command line): then its first frame comes at once — a startup screen
saying ``opening database …`` — and the engine's modules are imported and the database opened behind it, so a
person never looks at a blank terminal; the app closes what it opened when it exits, and a failure to open is kept
in ``failure`` for the command line to report (exit code 3 and a hint).

When another agentdeck holds the database file (``agentdeck run --headless`` in another terminal), ``ui`` attaches
to that engine through its control socket instead (``engine.attached``): the same dashboard over its state, live
events and controls. Quitting then detaches and leaves its workflows running; when that engine ends, the app opens
the database itself and goes on showing it.

Only Textual is imported at module level: the rest loads after the first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from tui.screens.startup import StartupScreen

if TYPE_CHECKING:
    from db.connection import Database
    from engine.api import DashboardEngine
    from engine.attached import AttachedEngine
    from engine.control import ControlChannels
    from engine.engine import Engine
    from engine.spec import WorkflowSpec
    from tui.feed import EventFeed


#: How long a dashboard whose attached engine ended waits for that process to release the database.
REOPEN_WAIT_S = 30.0


class AgentDeckApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "agentdeck"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        db_url: str | None = None,
        redis_url: str | None = None,
        serve_controls: bool = False,
        attach: bool = False,
        prepare: Callable[[Engine], Awaitable[None]] | None = None,
        start: WorkflowSpec | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._engine: DashboardEngine | None = engine
        self._local: Engine | None = engine
        self._attach_wanted = attach
        #: The engine of another process this dashboard is attached to (``attach``), if it is.
        self.attached: AttachedEngine | None = None
        self._detaching = False
        self._reopening = False
        #: The process whose engine this dashboard was attached to when it quit (the command line says so).
        self.detached_from: int | None = None
        self._db_url = db_url
        self._redis_url = redis_url
        self._serve_controls = serve_controls
        self._prepare = prepare
        self._owned: Database | None = None
        self._channels: ControlChannels | None = None
        #: Why the app could not open its database or engine (the command line reports it, exit code 3).
        self.failure: BaseException | None = None
        #: (id, name) of the workflows closing the app's own engine stopped while they ran.
        self.stopped: list[tuple[str, str]] = []
        self.feed: EventFeed | None = None
        self.start_spec = start
        self.variables = dict(variables or {})
        self.started_workflow: str | None = None

    @property
    def engine(self) -> DashboardEngine:
        assert self._engine is not None, "the engine is opened when the app mounts"
        return self._engine

    @property
    def redis_url(self) -> str | None:
        """The Redis this dashboard's events and workers go through: ``--redis``, else its own engine's (which
        also read ``AGENTDECK_REDIS``); None without one."""
        if self._redis_url:
            return self._redis_url
        remote = getattr(self._local, "remote", None)
        if remote is not None:
            return getattr(remote, "redis_url", None) or None
        from engine.settings import EngineSettings

        return EngineSettings().redis or None

    async def on_mount(self) -> None:
        if self._engine is not None:  # the caller's engine
            await self._show_main()
            return
        # The app opens its own (the command line, snapshot tests): a first frame now, the rest behind it.
        await self.push_screen(StartupScreen("loading…"))
        self._open()

    @work(exclusive=True, group="startup", exit_on_error=False)
    async def _open(self) -> None:
        startup = self.screen
        assert isinstance(startup, StartupScreen)
        url = self._db_url or "mem://"
        try:
            # Imports go off the event loop, so the spinner turns (the engine, SurrealDB and the main screen take
            # seconds to import on a busy machine); what opening the database needs first, so a database that
            # cannot be had is said at once, before the rest is loaded.
            await asyncio.to_thread(importlib.import_module, "db.connection")
            from db.connection import open_database
            from db.errors import DatabaseUnavailable

            loop = asyncio.get_running_loop()
            # After an attached engine ended, its process may still be closing the database for a moment.
            deadline = loop.time() + (REOPEN_WAIT_S if self._reopening else 0.0)
            while True:
                if self._attach_wanted and await self._attach_to_owner(url):
                    return
                startup.step(f"opening database {url}…")
                try:
                    self._owned = await open_database(url)
                    break
                except DatabaseUnavailable as exc:
                    if "in use" not in str(exc) or loop.time() >= deadline:
                        raise
                    startup.step(f"waiting for the engine that held {url} to let go of it…")
                    await asyncio.sleep(0.2)
            startup.step("starting the engine…")
            await asyncio.to_thread(importlib.import_module, "tui.screens.main")
            from engine.control import ControlChannels
            from engine.engine import Engine

            self._engine = self._local = Engine(self._owned, redis_url=self._redis_url)
            await self._local.start()
            if self._serve_controls:  # other terminals' `agentdeck workflows …` reach this engine
                self._channels = ControlChannels(self._local, url)
                await self._channels.start()
            await self._show_main()
            if self._reopening:
                self.notify(f"the engine this dashboard was attached to ended; it opened {url} itself",
                            title="detached", timeout=8)  # fmt: skip
        except Exception as exc:  # reported by the command line once the terminal is restored
            self.failure = exc
            self.exit(3, return_code=3)

    async def _attach_to_owner(self, url: str) -> bool:
        """Attach to the engine that holds ``url`` and serves its socket; False when none does."""
        from engine.private_paths import control_socket_path

        socket = control_socket_path(url)
        if socket is None or not socket.exists():
            return False
        await asyncio.to_thread(importlib.import_module, "engine.attached")
        from engine.attached import attach

        startup = self.screen
        assert isinstance(startup, StartupScreen)
        startup.step(f"attaching to the engine serving {url}…")
        attached = await attach(url, socket)
        if attached is None:
            return False  # a stale socket: its engine is gone, the database is free
        self._engine = self.attached = attached
        await asyncio.to_thread(importlib.import_module, "tui.screens.main")
        await self._show_main()
        self._follow_owner(attached)  # after the screen is up (a loss before it is seen all the same: an Event)
        self.notify(
            f"attached to the engine of process {attached.owner_pid}, which holds {url}: controls act on its "
            "workflows; q detaches and leaves them running",
            title="attached",
            timeout=8,
        )
        return True

    @work(group="owner", exit_on_error=False)
    async def _follow_owner(self, attached: AttachedEngine) -> None:
        """When the attached engine goes away (its run ended, it was stopped), open the database ourselves and go
        on showing it, as ``agentdeck ui`` would have had it been started now."""
        await attached.link.lost.wait()
        if self._detaching:
            return
        from tui.screens.main import MainScreen

        self.attached = None
        if self.feed is not None:
            await self.feed.close()
            self.feed = None
        with contextlib.suppress(Exception):
            await attached.close()
        self._engine = None
        while not isinstance(self.screen, MainScreen) and len(self.screen_stack) > 1:
            await self.pop_screen()  # a modal over the main screen: it was about the engine that is gone
        await self.switch_screen(StartupScreen(f"the engine of process {attached.owner_pid} stopped"))
        self._reopening = True
        self._open()

    async def _show_main(self) -> None:
        from tui.feed import EventFeed
        from tui.screens.main import MainScreen

        if self._prepare is not None and self._local is not None:
            await self._prepare(self._local)
        self.feed = EventFeed(self.engine.bus)
        await self.feed.start()
        if isinstance(self.screen, StartupScreen):
            await self.switch_screen(MainScreen(self.engine, self.feed))
        else:
            await self.push_screen(MainScreen(self.engine, self.feed))
        if self.start_spec is not None:
            self._submit(self.start_spec)

    async def on_unmount(self) -> None:
        self._detaching = True
        if self.feed is not None:
            await self.feed.close()
        if self._channels is not None:
            await self._channels.close()
        if self.attached is not None:
            self.detached_from = self.attached.owner_pid
            await self.attached.close()
        if self._owned is not None:
            if self._local is not None:
                await self._local.close()
                self.stopped = list(self._local.stopped)
            await self._owned.close()

    @work(exit_on_error=False, group="submit")
    async def _submit(self, spec: WorkflowSpec) -> None:
        from engine.errors import ControlError

        try:
            self.started_workflow = await self.engine.submit(spec, self.variables)
        except ControlError as exc:
            self.notify(str(exc), severity="error")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        from tui.screens.main import MainScreen

        for command in super().get_system_commands(screen):
            # Textual's own Maximize/Minimize would sit beside ours (m), doing something else: only ours.
            if not (isinstance(screen, MainScreen) and command.title in ("Maximize", "Minimize")):
                yield command

        if isinstance(screen, MainScreen):
            yield SystemCommand("Pause / resume workflow", "Freeze or continue the selected workflow (p)",
                                screen.action_pause_resume)  # fmt: skip
            yield SystemCommand("Cancel workflow", "Stop the selected workflow for real (c)", screen.action_cancel)
            yield SystemCommand("Retry task", "Run the selected task again (r)", screen.action_retry)
            yield SystemCommand("Roll back", "Open the checkpoint timeline (b)", screen.action_rollback)
            yield SystemCommand("Diverge from a checkpoint", "A new workflow from a moment of this one (b, then d)",
                                screen.action_rollback)  # fmt: skip
            yield SystemCommand("Resume stopped workflow", "Continue after a crash (shift+r)",
                                screen.action_resume_stopped)  # fmt: skip
            yield SystemCommand("Time travel", "A graph task's checkpoints: replay or fork from a step (t)",
                                screen.action_time_travel)  # fmt: skip
            yield SystemCommand("Approvals", "Answer the approvals graphs wait for (shift+a)", screen.action_approvals)
            yield SystemCommand("Add a watchpoint…", "Pause the selected workflow when a condition holds (w)",
                                screen.action_watchpoints)  # fmt: skip
            yield SystemCommand("Watchpoints of this workflow", "List, add and remove them (w, then Tab)",
                                screen.action_watchpoint_list)  # fmt: skip
            yield SystemCommand("Maximise agent pane", "One pane fills the grid (m)", screen.action_maximise)
            yield SystemCommand("Filter events", "Filter the event log (/)", screen.action_filter)
            yield SystemCommand("Memory explorer", "Search what agents remembered, by meaning (shift+m)",
                                screen.action_memory)  # fmt: skip
            yield SystemCommand("Workers", "The agentdeck worker processes taking commands from Redis (shift+w)",
                                screen.action_workers)  # fmt: skip
            yield SystemCommand("Help", "Every control explained (?)", screen.action_help)


def make_app(
    engine: Engine | None = None,
    *,
    db_url: str | None = None,
    redis_url: str | None = None,
    serve_controls: bool = False,
    attach: bool = False,
    prepare: Callable[[Engine], Awaitable[None]] | None = None,
    start: WorkflowSpec | None = None,
    variables: Mapping[str, str] | None = None,
) -> AgentDeckApp:
    """The dashboard over ``engine`` (or over an engine it opens on ``db_url`` and closes itself, serving the
    control channels other processes use when ``serve_controls``; with ``attach``, to the engine of another process
    that holds ``db_url`` and serves its control socket, if one does).

    ``prepare`` runs once the engine is up (tests seed state with it); ``start`` is submitted once the screen is up.
    """
    return AgentDeckApp(
        engine,
        db_url=db_url,
        redis_url=redis_url,
        serve_controls=serve_controls,
        attach=attach,
        prepare=prepare,
        start=start,
        variables=variables,
    )
