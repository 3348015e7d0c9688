"""The memory explorer (``M``): search what agents remembered by meaning, as you type, and jump to the task that
wrote a memory.

Typing searches after a pause of ``DEBOUNCE_S`` (each key restarts the wait); the search runs in an exclusive
worker, so a newer one replaces one still running and typing never waits for the embedder (its first use loads the
model, about half a second). An empty query lists the newest memories instead, expired short-term ones marked ``⌛``.
The filters (agent, type, the main screen's workflow, rolled-back too) apply to both; a memory a rollback took
back is listed, dimmed and marked ``↶``, only when asked for. Enter opens the highlighted memory
(``MemoryDetail``); there ``g`` closes the explorer and selects the task that wrote it on the main screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Checkbox, Footer, Input, Label, Select

from db.models import MEMORY_TYPES, Memory, utcnow
from engine.api import DashboardEngine
from engine.errors import EngineError
from tui.widgets.memory_detail import MemoryDetailView
from tui.widgets.memory_results import MemoryResults, MemoryRow, is_expired

DEBOUNCE_S = 0.25
LIMIT = 50  # results of a search, and recent memories listed for an empty query
_RECENT_FETCH = 4 * LIMIT  # recent() filters by agent and workflow only: the rest is filtered here
ANY = ""  # the filters' "any" value (agent names and types are never empty)

#: Where ``g`` goes: (workflow, task); task is None for a memory written outside a task.
JumpTarget = tuple[str, str | None]


@dataclass(frozen=True)
class SearchRequest:
    """What the results answer: the query and the filters."""

    query: str
    agent: str | None
    memory_type: str | None
    workflow: str | None
    include_hidden: bool


class MemoryDetail(ModalScreen[bool]):
    """A memory in full. Dismisses with True for ``g`` (go to the task that wrote it), False when closed."""

    BINDINGS = [
        Binding("escape", "dismiss(False)", "Back"),
        Binding("g", "go_to_task", "Go to task"),
    ]

    def __init__(self, memory: Memory, workflow_name: str | None = None) -> None:
        super().__init__()
        self.memory = memory
        self.workflow_name = workflow_name

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="memory-detail-box") as box:
            box.border_title = "memory"
            box.border_subtitle = "g go to task · Esc back"
            yield MemoryDetailView(self.memory, self.workflow_name, id="memory-detail")

    def action_go_to_task(self) -> None:
        if self.memory.workflow is None:
            self.notify("no task wrote this memory: it has no workflow to go to", severity="warning")
            return
        self.dismiss(True)


class MemoryExplorer(Screen[JumpTarget | None]):
    """Dismisses with the (workflow, task) to select on the main screen, or None when closed."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("slash", "focus_query", "Search", key_display="/"),
        Binding("down", "focus_results", "Results", show=False),
    ]

    def __init__(
        self, engine: DashboardEngine, workflow: str | None = None, names: dict[str, str] | None = None
    ) -> None:
        """``workflow`` is the main screen's selected workflow ("this workflow only"); ``names`` maps the
        workflow ids it knows to their names (others are looked up when a result needs them)."""
        super().__init__()
        self.engine = engine
        self.workflow = workflow
        self.names: dict[str, str] = dict(names or {})
        self.shown: SearchRequest | None = None  # what the results on screen answer
        self._asked: SearchRequest | None = None  # what the newest search answers (shown once it is done)
        self._debounce: Timer | None = None
        self._open_when_shown = False
        self.agents: list[str] = []  # the agent filter's choices (besides "any")

    def compose(self) -> ComposeResult:
        yield Label("[b]memories[/] [dim]· what agents remembered · Enter opens one · Esc closes[/]", id="memory-top")
        yield Input(placeholder="search memories by meaning…", id="memory-query")
        with Horizontal(id="memory-filters"):
            yield Select([("any agent", ANY)], value=ANY, allow_blank=False, compact=True, id="memory-agent")
            types = [("any type", ANY), *((t, t) for t in MEMORY_TYPES)]
            yield Select(types, value=ANY, allow_blank=False, compact=True, id="memory-type")
            mine = Checkbox("this workflow", compact=True, id="memory-this-workflow", disabled=self.workflow is None)
            mine.tooltip = f"only memories of {self.workflow}" if self.workflow else "no workflow is selected"
            yield mine
            yield Checkbox("rolled-back too", compact=True, id="memory-hidden")
        yield Label("", id="memory-status")
        yield MemoryResults(id="memory-results")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._load_agents()
        self._start(self.request())

    @work(group="memory-agents", exit_on_error=False)
    async def _load_agents(self) -> None:
        """The agent filter offers the agents of recent memories."""
        recent = await self.engine.memory.recent(limit=500)
        agents = sorted({m.agent for m in recent})
        self.agents = agents
        select: Select[str] = self.query_one("#memory-agent", Select)
        chosen = select.value
        select.set_options([("any agent", ANY), *((a, a) for a in agents)])
        select.value = chosen if chosen == ANY or chosen in agents else ANY

    def request(self) -> SearchRequest:
        """The search the query box and the filters ask for now."""
        agent = self.query_one("#memory-agent", Select).value
        memory_type = self.query_one("#memory-type", Select).value
        mine = self.query_one("#memory-this-workflow", Checkbox).value
        return SearchRequest(
            query=self.query_one(Input).value.strip(),
            agent=agent if isinstance(agent, str) and agent != ANY else None,
            memory_type=memory_type if isinstance(memory_type, str) and memory_type != ANY else None,
            workflow=self.workflow if mine else None,
            include_hidden=self.query_one("#memory-hidden", Checkbox).value,
        )

    # ---- searching -----------------------------------------------------------------------------------------

    @on(Input.Changed, "#memory-query")
    def _typed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE_S, self._search_now)

    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _search_now(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        request = self.request()
        if request != self._asked:
            self._start(request)
        elif request == self.shown and self._open_when_shown:
            self._open_when_shown = False
            self.action_open()

    def _start(self, request: SearchRequest) -> None:
        self._asked = request
        self._search(request)

    @work(exclusive=True, group="memory-search", exit_on_error=False, description="Searching memories.")
    async def _search(self, request: SearchRequest) -> None:
        status = self.query_one("#memory-status", Label)
        status.update("[dim]searching…[/]")
        started = perf_counter()
        try:
            rows = await self._find(request)
        except EngineError as exc:  # the embedder cannot load, a bad filter: the user can act on the message
            self._failed(Text.assemble(("cannot search: ", "red"), str(exc)))
            return
        except Exception as exc:  # ours: said here, and the traceback goes to the log (exit_on_error=False)
            self._failed(Text.assemble(("search failed: ", "red"), f"{type(exc).__name__}: {exc}"))
            raise
        took_ms = (perf_counter() - started) * 1000
        await self._learn_names(rows)
        self.query_one(MemoryResults).show(rows, self.names)
        self.shown = request
        status.update(self._summary(request, rows, took_ms))
        if self._open_when_shown:
            self._open_when_shown = False
            self.action_open()

    def _failed(self, message: Text) -> None:
        self._asked = None  # asking the same again tries again
        self._open_when_shown = False
        self.query_one("#memory-status", Label).update(message)

    async def _find(self, request: SearchRequest) -> list[MemoryRow]:
        memory = self.engine.memory
        if request.query:
            hits = await memory.search(
                request.query,
                k=LIMIT,
                agent=request.agent,
                memory_type=request.memory_type,
                workflow=request.workflow,
                include_hidden=request.include_hidden,
            )
            return [MemoryRow(hit.memory, hit.score) for hit in hits]
        recent = await memory.recent(limit=_RECENT_FETCH, agent=request.agent, workflow=request.workflow)
        kept = [
            m
            for m in recent
            if (request.memory_type is None or m.memory_type == request.memory_type)
            and (request.include_hidden or m.hidden_by is None)
        ]
        return [MemoryRow(m) for m in kept[:LIMIT]]

    async def _learn_names(self, rows: list[MemoryRow]) -> None:
        for workflow in {r.memory.workflow for r in rows} - set(self.names) - {None}:
            assert workflow is not None
            found = await self.engine.stores.workflows.get(workflow)
            self.names[workflow] = found.name if found is not None else workflow

    @staticmethod
    def _summary(request: SearchRequest, rows: list[MemoryRow], took_ms: float) -> str:
        count = f"{len(rows)} memor{'y' if len(rows) == 1 else 'ies'}"
        what = f"{count} nearest in meaning" if request.query else f"{count}, newest first"
        now = utcnow()
        marks = []
        hidden = sum(1 for r in rows if r.memory.hidden_by is not None)
        expired = sum(1 for r in rows if is_expired(r.memory, now))
        if hidden:
            marks.append(f"↶ {hidden} rolled back")
        if expired:
            marks.append(f"⌛ {expired} expired")
        extra = f" [dim]·[/] {' · '.join(marks)}" if marks else ""
        return f"{what} [dim]· {took_ms:.0f} ms[/]{extra}"

    # ---- opening -------------------------------------------------------------------------------------------

    @on(Input.Submitted, "#memory-query")
    def _submitted(self) -> None:
        """Enter in the query box opens the best result — of this query, once its search is done."""
        self._open_when_shown = True
        self._search_now()

    @on(MemoryResults.RowSelected)
    def _row_selected(self) -> None:
        """Enter on a row, or a click on the highlighted one (the table takes Enter itself)."""
        self.action_open()

    def action_open(self) -> None:
        memory = self.query_one(MemoryResults).memory_at_cursor()
        if memory is None:
            return
        name = self.names.get(memory.workflow) if memory.workflow is not None else None

        def closed(go: bool | None) -> None:
            if go and memory.workflow is not None:
                self.dismiss((memory.workflow, memory.task))

        self.app.push_screen(MemoryDetail(memory, name), closed)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_focus_query(self) -> None:
        self.query_one(Input).focus()

    def action_focus_results(self) -> None:
        self.query_one(MemoryResults).focus()
