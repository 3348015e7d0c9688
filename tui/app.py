"""The app factory: one ``make_app`` used by ``agentdeck demo``, ``run`` and ``ui`` and by the tests.

The app is thin: it hosts the engine the caller opened (same event loop), starts the event feed, shows the main
screen, and optionally submits a workflow on start. The caller owns the database and the engine and closes them
after the app exits, so they are closed deliberately whatever way the app ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from db.connection import Database, open_database
from engine.engine import Engine
from engine.errors import ControlError
from engine.spec import WorkflowSpec
from tui.feed import EventFeed
from tui.screens.main import MainScreen


class AgentDeckApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "agentdeck"
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        db_url: str | None = None,
        prepare: Callable[[Engine], Awaitable[None]] | None = None,
        start: WorkflowSpec | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._db_url = db_url
        self._prepare = prepare
        self._owned: Database | None = None
        self.feed: EventFeed | None = None
        self.start_spec = start
        self.variables = dict(variables or {})
        self.started_workflow: str | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the engine is opened when the app mounts"
        return self._engine

    async def on_mount(self) -> None:
        if self._engine is None:  # the app owns its database and engine (snapshot tests run it this way)
            self._owned = await open_database(self._db_url or "mem://")
            self._engine = Engine(self._owned)
            await self._engine.start()
        if self._prepare is not None:
            await self._prepare(self.engine)
        self.feed = EventFeed(self.engine.bus)
        await self.feed.start()
        await self.push_screen(MainScreen(self.engine, self.feed))
        if self.start_spec is not None:
            self._submit(self.start_spec)

    async def on_unmount(self) -> None:
        if self.feed is not None:
            await self.feed.close()
        if self._owned is not None:
            await self.engine.close()
            await self._owned.close()

    @work(exit_on_error=False, group="submit")
    async def _submit(self, spec: WorkflowSpec) -> None:
        try:
            self.started_workflow = await self.engine.submit(spec, self.variables)
        except ControlError as exc:
            self.notify(str(exc), severity="error")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, MainScreen):
            yield SystemCommand("Pause / resume workflow", "Freeze or continue the selected workflow (p)",
                                screen.action_pause_resume)  # fmt: skip
            yield SystemCommand("Cancel workflow", "Stop the selected workflow for real (c)", screen.action_cancel)
            yield SystemCommand("Retry task", "Run the selected task again (r)", screen.action_retry)
            yield SystemCommand("Roll back", "Open the checkpoint timeline (b)", screen.action_rollback)
            yield SystemCommand("Resume stopped workflow", "Continue after a crash (shift+r)",
                                screen.action_resume_stopped)  # fmt: skip
            yield SystemCommand("Time travel", "A graph task's checkpoints: replay or fork from a step (t)",
                                screen.action_time_travel)  # fmt: skip
            yield SystemCommand("Approvals", "Answer the approvals graphs wait for (shift+a)", screen.action_approvals)
            yield SystemCommand("Maximise agent pane", "One pane fills the grid (m)", screen.action_maximise)
            yield SystemCommand("Filter events", "Filter the event log (/)", screen.action_filter)
            yield SystemCommand("Memory explorer", "Search what agents remembered, by meaning (shift+m)",
                                screen.action_memory)  # fmt: skip
            yield SystemCommand("Help", "Every control explained (?)", screen.action_help)


def make_app(
    engine: Engine | None = None,
    *,
    db_url: str | None = None,
    prepare: Callable[[Engine], Awaitable[None]] | None = None,
    start: WorkflowSpec | None = None,
    variables: Mapping[str, str] | None = None,
) -> AgentDeckApp:
    """The dashboard over ``engine`` (or over an engine it opens on ``db_url`` and closes itself).

    ``prepare`` runs once the engine is up (tests seed state with it); ``start`` is submitted once the screen is up.
    """
    return AgentDeckApp(engine, db_url=db_url, prepare=prepare, start=start, variables=variables)
