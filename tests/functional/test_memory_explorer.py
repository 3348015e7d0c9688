"""The memory explorer (``M``) driven with Pilot over a real engine and the real offline embedder: what tasks
remembered is found by a paraphrase as you type, filtered, opened with its provenance, and ``g`` selects the task
that wrote it on the main screen. Two snapshots hold the layout at 80x24 and 160x48."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any, cast

import pytest
from rich.console import Console, RenderableType
from rich.text import Text
from textual.widgets import Checkbox, Input, Select

from db.models import Memory, WorkflowStatus, utcnow
from engine.engine import Engine
from tests.functional.test_dashboard import spec, tree_of, tree_text
from tests.functional.test_snapshots import loaded
from tests.functional.test_snapshots import seed as seed_finished_workflow
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens import memory_explorer
from tui.screens.main import MainScreen
from tui.screens.memory_explorer import MemoryDetail, MemoryExplorer
from tui.widgets.memory_detail import MemoryDetailView
from tui.widgets.memory_results import HIDDEN_MARK, MemoryResults, provenance
from tui.widgets.workflow_tree import NodeRef

RELEASE = "The release train leaves on Thursdays at noon."
FACTS = {
    "a": "The staging database password is rotated every Monday morning.",
    "b": RELEASE,
    "c": "Customers in Norway want their invoices in Norwegian kroner.",
}
PARAPHRASE = "when does the release ship"


def chain() -> Any:
    """a → b → c, each a shell task remembering its fact (the shell agent stores ``::remember::`` lines)."""
    keys = list(FACTS)
    return spec(
        [
            {"id": k, "agent": "sh", "run": f"echo '::remember::{FACTS[k]}'", "depends_on": keys[:i][-1:]}
            for i, k in enumerate(keys)
        ]
    )


async def open_explorer(pilot: Any, app: AgentDeckApp) -> MemoryExplorer:
    await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
    await pilot.press("M")
    await until(lambda: isinstance(app.screen, MemoryExplorer), pilot=pilot)
    explorer = app.screen
    assert isinstance(explorer, MemoryExplorer)
    await until(lambda: explorer.shown is not None, pilot=pilot)  # the recent memories are listed
    return explorer


def results(explorer: MemoryExplorer) -> MemoryResults:
    return explorer.query_one(MemoryResults)


def shown_ids(explorer: MemoryExplorer) -> list[str]:
    return [row.memory.id for row in results(explorer).rows_shown]


def cell(explorer: MemoryExplorer, memory_id: str, column: str) -> Text:
    return results(explorer).get_cell(memory_id, column)


def detail_text(app: AgentDeckApp) -> str:
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(cast(RenderableType, app.screen.query_one(MemoryDetailView).content))
    return console.export_text()


async def test_a_paraphrase_finds_the_memory_and_g_selects_the_task_that_wrote_it(engine: Engine) -> None:
    app = make_app(engine, start=chain())
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: "✔ ui-test" in tree_text(app) and "✔ c" in tree_text(app), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        screen = app.screen
        assert isinstance(screen, MainScreen)
        main: MainScreen = screen  # a name the waits' lambdas see as a MainScreen
        await until(lambda: main.selected_workflow == wf, pilot=pilot)
        assert main.selected_task is None
        written = {m.task: m for m in await engine.stores.memories.of_workflow(wf)}

        explorer = await open_explorer(pilot, app)
        await pilot.press(*PARAPHRASE)
        await until(lambda: explorer.shown is not None and explorer.shown.query == PARAPHRASE, pilot=pilot)
        assert shown_ids(explorer)[0] == written["b"].id
        assert str(cell(explorer, written["b"].id, "provenance")) == "ui-test/b #1"
        assert "ms" in str(explorer.query_one("#memory-status").render())

        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, MemoryDetail), pilot=pilot)
        text = detail_text(app)
        assert RELEASE in text
        for field, value in [("workflow", f"ui-test {wf}"), ("task", "b"), ("attempt", "1"), ("embedder", "minilm")]:
            assert f"{field}  " in text and value in text.split(field, 1)[1].splitlines()[0], field
        assert written["b"].checkpoint is not None and written["b"].checkpoint in text

        await pilot.press("g")
        await until(lambda: app.screen is main and main.selected_task == "b", pilot=pilot)
        assert not any(isinstance(s, MemoryExplorer | MemoryDetail) for s in app.screen_stack)
        assert main.selected_workflow == wf
        tree = tree_of(app)
        await until(lambda: tree.cursor_node is not None and tree.cursor_node.data == NodeRef(wf, "b"), pilot=pilot)
        assert tree.has_focus


async def test_enter_right_after_typing_opens_the_best_memory_for_what_was_typed(engine: Engine) -> None:
    await engine.memory.remember("notes", FACTS["a"])
    release = await engine.memory.remember("notes", RELEASE)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await open_explorer(pilot, app)
        await pilot.press(*PARAPHRASE, "enter")  # before the pause that starts a search has passed
        await until(lambda: isinstance(app.screen, MemoryDetail), pilot=pilot)
        screen = app.screen
        assert isinstance(screen, MemoryDetail) and screen.memory.id == release.id
        await pilot.press("escape")
        await until(lambda: app.screen is explorer, pilot=pilot)
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)


async def test_the_type_and_agent_filters_narrow_the_results(engine: Engine) -> None:
    await engine.memory.remember("researcher", RELEASE)
    await engine.memory.remember("researcher", "Release notes are written by the tech writers.", "short_term")
    await engine.memory.remember("planner", "The next release is planned for the second quarter.", "short_term")
    await engine.memory.remember("planner", FACTS["c"], "checkpoint")
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await open_explorer(pilot, app)
        assert len(shown_ids(explorer)) == 4
        table = results(explorer)
        assert all(str(cell(explorer, memory_id, "score")) == "" for memory_id in shown_ids(explorer))

        # type: through the select itself (open it, one down from "any type" is short_term, choose it)
        await pilot.click("#memory-type")
        await pilot.press("down", "enter")
        await until(lambda: explorer.shown is not None and explorer.shown.memory_type == "short_term", pilot=pilot)
        assert sorted(r.memory.agent for r in table.rows_shown) == ["planner", "researcher"]

        explorer.query_one(Input).focus()
        await pilot.press(*"release date")
        await until(lambda: explorer.shown is not None and explorer.shown.query == "release date", pilot=pilot)
        assert {r.memory.memory_type for r in table.rows_shown} == {"short_term"}
        assert all(r.score is not None for r in table.rows_shown)
        assert all(str(cell(explorer, r.memory.id, "score")) == f"{r.score:.2f}" for r in table.rows_shown)

        agent: Select[str] = explorer.query_one("#memory-agent", Select)
        await until(
            lambda: explorer.agents == ["planner", "researcher"], pilot=pilot
        )  # offered once recent ones are read
        agent.value = "planner"
        await until(lambda: explorer.shown is not None and explorer.shown.agent == "planner", pilot=pilot)
        assert [(r.memory.agent, r.memory.memory_type) for r in table.rows_shown] == [("planner", "short_term")]


async def test_include_rolled_back_shows_what_a_rollback_took_back_dimmed_and_marked(engine: Engine) -> None:
    wf = await engine.submit(chain())
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    first = {m.task: m.id for m in await engine.stores.memories.of_workflow(wf)}
    checkpoints = {c.task: c for c in await engine.stores.checkpoints.list(wf)}
    await engine.rollback(wf, checkpoints["a"].id)  # b and c run again: their first memories are taken back
    assert await engine.wait(wf) is WorkflowStatus.COMPLETED
    rerun = {m.task: m.id for m in await engine.stores.memories.of_workflow(wf) if m.id not in first.values()}

    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        explorer = await open_explorer(pilot, app)
        assert first["b"] not in shown_ids(explorer) and rerun["b"] in shown_ids(explorer)  # newest, not hidden
        await pilot.press(*PARAPHRASE)
        await until(lambda: explorer.shown is not None and explorer.shown.query == PARAPHRASE, pilot=pilot)
        assert shown_ids(explorer)[0] == rerun["b"] and first["b"] not in shown_ids(explorer)

        await pilot.click("#memory-hidden")
        await until(lambda: explorer.shown is not None and explorer.shown.include_hidden, pilot=pilot)
        assert explorer.query_one("#memory-hidden", Checkbox).value
        assert first["b"] in shown_ids(explorer)[:2]
        content = cell(explorer, first["b"], "content")
        assert content.plain.startswith(HIDDEN_MARK) and content.style == "dim"
        assert not cell(explorer, rerun["b"], "content").plain.startswith(HIDDEN_MARK)
        assert "2 rolled back" in str(explorer.query_one("#memory-status").render())

        results(explorer).move_cursor(row=shown_ids(explorer).index(first["b"]))
        results(explorer).focus()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, MemoryDetail), pilot=pilot)
        assert "taken back by a rollback" in detail_text(app)


async def test_at_80x24_the_query_box_and_the_results_are_on_screen(engine: Engine) -> None:
    for fact in FACTS.values():
        await engine.memory.remember("researcher-with-a-long-name", fact + "\nand a second line")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        explorer = await open_explorer(pilot, app)
        screen = explorer.region
        query, table = explorer.query_one(Input), results(explorer)
        assert query.region.height >= 1 and screen.contains_region(query.region)
        assert screen.contains_region(table.region)
        assert table.region.height >= 1 + len(FACTS)  # the header and every row
        widths = {str(c.key.value): c.width for c in table.columns.values()}
        assert sum(widths.values()) + 2 * table.cell_padding * len(widths) <= table.region.width
        assert widths["content"] >= 16 and widths["provenance"] >= 10
        row = table.rows_shown[0]
        assert cell(explorer, row.memory.id, "content").plain.startswith(row.memory.content.split("\n")[0][:10])

        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, MemoryDetail), pilot=pilot)
        box = app.screen.query_one("#memory-detail-box")
        assert app.screen.region.contains_region(box.region)
        assert "hidden by" in detail_text(app)


# ---- snapshots ---------------------------------------------------------------------------------------------


async def seed_memories(engine: Engine) -> None:
    """The snapshot workflow, and memories with fixed ids written minutes before the screen is drawn (ages are
    relative to now), one of them taken back by a rollback."""
    await seed_finished_workflow(engine)
    now = utcnow()
    rows = [
        ("mem-snap01", "builder", "long_term", RELEASE, "build", 1, None),
        ("mem-snap02", "tester", "short_term", "Flaky test: test_upload times out on the first run.", "test", 3, None),
        ("mem-snap03", "builder", "checkpoint", "Step 2 of 4: wheels built for 3 platforms.", "build", 1, None),
        ("mem-snap04", "git", "long_term", "The release branch is cut from main every Tuesday.", "checkout", 1,
         "cp-snapshot01"),
        ("mem-snap05", "planner", "long_term", FACTS["c"], None, None, None),
    ]  # fmt: skip
    memories = []
    for minutes, (memory_id, agent, kind, content, task, attempt, hidden_by) in enumerate(rows, 2):
        memories.append(
            Memory(
                id=memory_id,
                agent=agent,
                content=content,
                embedding=(await engine.memory.embedder.embed_one(content)).astype(float).tolist(),
                memory_type=kind,
                workflow="wf-snapshot01" if task else None,
                task=task,
                attempt=attempt,
                hidden_by=hidden_by,
                expires_at=now + timedelta(hours=20) if kind == "short_term" else None,
                embedder=engine.memory.embedder.name,
                created_at=now - timedelta(minutes=minutes * 7),
            )
        )
    await engine.stores.memories.add_many(memories)


@pytest.fixture
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status line's search time reads "0 ms", so it stays put between runs."""
    monkeypatch.setattr(memory_explorer, "perf_counter", lambda: 0.0)


def snapshot_app() -> AgentDeckApp:
    return make_app(db_url="mem://", prepare=seed_memories)


async def tree_selected(pilot: Any) -> None:
    """The tree shows the stored workflow and has selected it (the explorer filters on the selection)."""
    await until(lambda: loaded(pilot.app) and tree_of(pilot.app).cursor_node is not None, pilot=pilot)


def still_cursor(app: AgentDeckApp) -> None:
    for box in app.screen.query(Input):
        box.cursor_blink = False  # a blinking cursor is drawn or not depending on when the shot is taken


@pytest.mark.usefixtures("still_clock")
def test_explorer_snapshot_80x24(snap_compare: Any) -> None:
    async def open_it(pilot: Any) -> None:
        await tree_selected(pilot)
        await open_explorer(pilot, pilot.app)
        still_cursor(pilot.app)

    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=open_it)


@pytest.mark.usefixtures("still_clock")
def test_explorer_search_snapshot_160x48(snap_compare: Any) -> None:
    async def search(pilot: Any) -> None:
        await tree_selected(pilot)
        explorer = await open_explorer(pilot, pilot.app)
        await pilot.click("#memory-hidden")
        await pilot.click("#memory-query")
        await pilot.press(*PARAPHRASE)
        await until(lambda: explorer.shown is not None and explorer.shown.query == PARAPHRASE, pilot=pilot)
        still_cursor(pilot.app)

    assert snap_compare(snapshot_app(), terminal_size=(160, 48), run_before=search)


def test_a_narrow_provenance_cuts_the_workflow_name_and_keeps_the_task() -> None:
    memory = Memory(agent="builder", content="x", embedding=[], workflow="wf-1", task="build", attempt=2)
    names = {"wf-1": "nightly-build"}
    assert provenance(memory, names) == "nightly-build/build #2"
    assert provenance(memory, names, width=16) == "nightl…/build #2"
    assert provenance(memory, names, width=10) == "nightly-b…"  # too narrow for the tail: cut from the end
    assert provenance(memory.model_copy(update={"workflow": None}), names) == "—"
