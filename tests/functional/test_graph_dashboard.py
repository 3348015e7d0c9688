"""Graph tasks on the dashboard, driven with Pilot over a real engine (mem://) and real LangGraph graphs: node
leaves in the tree, the approval prompt (typed answer, yes, put off and brought back, closed by its deadline) and
time travel (replay from a step, fork with edited state)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, TextArea

from db.models import TaskStatus, WorkflowStatus
from engine.engine import Engine
from engine.spec import WorkflowSpec
from tests.functional.test_dashboard import status_of
from tests.integration.test_graph_agent import status_becomes
from tests.integration.workflows import graphs
from tests.support.polling import until
from tui.app import AgentDeckApp, make_app
from tui.screens.approval import ApprovalScreen, answer_value, other_fields
from tui.screens.confirm import ChoiceScreen, ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.state_editor import StateEditor, changed_values
from tui.screens.time_travel import TimeTravelScreen
from tui.widgets.workflow_tree import WorkflowTree

GRAPHS = "tests.integration.workflows.graphs"
SIZE = (140, 44)


def graph_spec(graph: str, **task: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "graph-ui",
            "agents": {"g": {"kind": "graph", "graph": f"{GRAPHS}:{graph}"}, "sh": {"kind": "shell"}},
            "tasks": [{"id": "build", "agent": "g", "input": {"topic": "parser"}, **task}],
        }
    )


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    graphs.reset()


def main_of(app: AgentDeckApp) -> MainScreen:
    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


def tree_of(app: AgentDeckApp) -> WorkflowTree:
    return main_of(app).query_one(WorkflowTree)


def tree_text(app: AgentDeckApp) -> str:
    """The tree's lines as shown, also while a modal screen is over the main screen."""
    tree = tree_of(app)
    lines = [tree.get_node_at_line(index) for index in range(tree.last_line + 1)]
    return "\n".join(str(node.label) for node in lines if node is not None)


def text_of(app: AgentDeckApp, selector: str) -> str:
    """A label's text on the top screen (or the main screen's top bar)."""
    found = app.screen.query(selector) or main_of(app).query(selector)
    return str(found.first(Label).render())


def prompt_open(app: AgentDeckApp) -> bool:
    """The approval prompt is on top and mounted (it has focused its Later button): keys reach it."""
    return isinstance(app.screen, ApprovalScreen) and app.focused is not None


def notified(app: AgentDeckApp, needle: str) -> bool:
    return any(needle in n.message for n in app._notifications)


async def output_of(engine: Engine, workflow: str) -> Any:
    task = await engine.stores.tasks.get(workflow, "build")
    assert task is not None
    return task.output


async def completes(pilot: Pilot[int], engine: Engine, workflow: str) -> None:
    async def done() -> bool:
        return await status_of(engine, workflow) is WorkflowStatus.COMPLETED

    await until(done, pilot=pilot)


async def select_build(pilot: Pilot[int], app: AgentDeckApp) -> None:
    """Cursor from the workflow to its task, as a person would."""
    await until(lambda: isinstance(app.screen, MainScreen) and app.screen.selected_workflow is not None, pilot=pilot)
    tree_of(app).focus()
    tree = tree_of(app)
    tree.move_cursor(tree.get_node_at_line(0))
    await pilot.press("down")
    await until(lambda: isinstance(app.screen, MainScreen) and app.screen.selected_task == "build", pilot=pilot)


# ---- approvals --------------------------------------------------------------------------------------------


async def test_a_typed_answer_resumes_the_graph_with_it(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("with_approval"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: prompt_open(app), pilot=pilot)
        assert text_of(app, "#approval-question") == "ship parser?"
        assert "build" in text_of(app, "#approval-where") and "approve" in text_of(app, "#approval-where")
        await until(lambda: "✋ build" in tree_text(app), pilot=pilot)  # the task waits for a person
        await pilot.press("a")
        await until(lambda: isinstance(app.focused, Input), pilot=pilot)  # focus moves on the next message
        await pilot.press(*"ship it", "enter")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await completes(pilot, engine, wf)
        assert (await output_of(engine, wf))["answer"] == "ship it"
        await until(lambda: "✋" not in text_of(app, "#waiting"), pilot=pilot)


async def test_y_approves_with_true(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("with_approval"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: prompt_open(app), pilot=pilot)
        await pilot.press("y")
        wf = app.started_workflow
        assert wf is not None
        await completes(pilot, engine, wf)
        assert (await output_of(engine, wf))["answer"] is True
        assert graphs.RUNS["check"] == 1  # nothing before the interrupt ran again
        await until(lambda: notified(app, "build: granted"), pilot=pilot)


async def test_escape_puts_the_prompt_off_and_shift_a_brings_it_back(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("with_approval"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: prompt_open(app), pilot=pilot)
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
        await until(lambda: "✋ 1 waiting" in text_of(app, "#waiting"), pilot=pilot)
        await pilot.pause(0.3)
        assert isinstance(app.screen, MainScreen), "a put-off prompt must not open again by itself"
        await pilot.press("A")
        await until(lambda: prompt_open(app), pilot=pilot)
        await pilot.press("n")
        wf = app.started_workflow
        assert wf is not None
        await completes(pilot, engine, wf)
        assert (await output_of(engine, wf))["answer"] is False


async def test_a_deadline_prompt_closes_itself_when_the_default_applies(engine: Engine) -> None:
    graphs.DEADLINE["deadline_s"] = 1.5
    app = make_app(engine, start=graph_spec("with_approval"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: prompt_open(app), pilot=pilot)
        countdown = text_of(app, "#approval-countdown")  # on a slow machine the prompt may open after the deadline
        assert 'auto-answers "auto" in' in countdown or 'the deadline passed: answering "auto"' in countdown
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)  # nobody pressed anything
        await until(lambda: notified(app, "the default, at the deadline"), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await completes(pilot, engine, wf)
        assert (await output_of(engine, wf))["answer"] == "auto"


async def test_approvals_pending_before_the_dashboard_started_are_offered(engine: Engine) -> None:
    wf = await engine.submit(graph_spec("with_approval"))
    await status_becomes(engine, wf, TaskStatus.WAITING)  # the graph stopped at its interrupt, nobody watching
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: prompt_open(app), pilot=pilot)
        await pilot.press("y")
        await completes(pilot, engine, wf)


def test_typed_answers_are_json_when_they_parse_else_text() -> None:
    assert answer_value('{"ship": true}') == {"ship": True}
    assert answer_value("3") == 3
    assert answer_value("ship it") == "ship it"
    assert other_fields({"question": "q?", "default": 1, "deadline_s": 2, "risk": "low"}) == {"risk": "low"}
    assert other_fields("just a question") is None


# ---- the tree ---------------------------------------------------------------------------------------------


async def test_the_tree_shows_each_node_execution_under_the_graph_task(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("linear"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app) and "report" in tree_text(app), pilot=pilot)
        lines = tree_text(app).splitlines()
        build = next(i for i, line in enumerate(lines) if "build" in line)
        leaves = [line for line in lines[build + 1 :] if "· step" in line]
        assert [leaf.split(" · ")[0] for leaf in leaves] == ["✔ plan", "✔ write", "✔ check", "✔ report"]
        assert [leaf.split(" · ")[1].split()[:2] for leaf in leaves] == [["step", str(n)] for n in (1, 2, 3, 4)]


async def test_the_workflow_count_follows_a_task_row_that_arrives_after_the_workflow_row(engine: Engine) -> None:
    """The workflow and task feeds are read independently: the last task's completion may arrive after the
    workflow's. The workflow line's done/total must still end at 1/1 (it once stayed at 0/1)."""
    app = make_app(engine, start=graph_spec("linear"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app) and "1/1" in tree_text(app), pilot=pilot)
        tree, wf = tree_of(app), app.started_workflow
        assert wf is not None
        done = tree.tasks[wf]["build"]
        tree._apply_task(done.model_copy(update={"status": TaskStatus.RUNNING}))  # as if it were late
        await pilot.pause()
        assert "0/1" in tree_text(app).splitlines()[0]
        tree._apply_task(done)
        await pilot.pause()
        assert "1/1" in tree_text(app).splitlines()[0]


async def test_after_a_retry_the_tree_shows_the_new_runs_nodes_only(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("linear"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app) and "report" in tree_text(app), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        old = set(tree_of(app).graph_nodes)
        await engine.retry(wf, "build")  # a finished graph task runs afresh on a new thread
        await completes(pilot, engine, wf)
        await until(
            lambda: set(tree_of(app).graph_nodes).isdisjoint(old) and len(tree_of(app).graph_nodes) == 4, pilot=pilot
        )
        leaves = [line for line in tree_text(app).splitlines() if "· step" in line]
        assert [leaf.split(" · ")[0].split()[-1] for leaf in leaves] == ["plan", "write", "check", "report"]


# ---- time travel ------------------------------------------------------------------------------------------


async def test_t_replays_from_step_2_and_only_later_steps_run(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("linear"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await select_build(pilot, app)
        await pilot.press("t")
        await until(lambda: isinstance(app.screen, TimeTravelScreen), pilot=pilot)
        screen = app.screen
        assert isinstance(screen, TimeTravelScreen)
        assert [h.step for h in screen.history] == [4, 3, 2, 1, 0, -1]  # newest first
        await pilot.press("down", "down")
        highlighted = screen.highlighted()
        assert highlighted is not None and highlighted.step == 2
        graphs.RUNS.clear()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
        await pilot.press("y")
        await until(lambda: notified(app, "forked at step 2; running steps after it"), pilot=pilot)
        await until(lambda: isinstance(app.screen, MainScreen), pilot=pilot)
        await until(lambda: graphs.RUNS["report"] == 1, pilot=pilot)
        await completes(pilot, engine, wf)
        assert dict(graphs.RUNS) == {"check": 1, "report": 1}


def with_after() -> WorkflowSpec:
    spec = graph_spec("linear")
    after = {"id": "after", "agent": "sh", "run": "echo used the build", "depends_on": ["build"]}
    return WorkflowSpec.model_validate({**spec.model_dump(mode="json"), "tasks": [*spec.model_dump()["tasks"], after]})


async def to_choice(pilot: Pilot[int], app: AgentDeckApp) -> ChoiceScreen:
    """Enter on the highlighted step, yes: the question about the completed task after it."""
    await pilot.press("enter")
    await until(lambda: isinstance(app.screen, ConfirmScreen), pilot=pilot)
    await pilot.press("y")
    await until(lambda: isinstance(app.screen, ChoiceScreen), pilot=pilot)
    choice = app.screen
    assert isinstance(choice, ChoiceScreen)
    assert choice.question == "Re-run 1 completed task after it?"
    assert "after used its old output" in choice.detail
    return choice


@pytest.mark.parametrize("answer, attempts", [("y", 2), ("n", 1)])
async def test_a_replay_asks_whether_the_completed_tasks_after_it_run_again(
    engine: Engine, answer: str, attempts: int
) -> None:
    """y: the task after it runs again on the new output; n: it keeps its output; Esc: no fork at all."""
    app = make_app(engine, start=with_after())
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        graphs.RUNS.clear()
        await select_build(pilot, app)
        await pilot.press("t")
        await until(lambda: isinstance(app.screen, TimeTravelScreen), pilot=pilot)
        await pilot.press("down", "down")
        await to_choice(pilot, app)
        await pilot.press("escape")  # called off: time travel stays open, nothing forked
        await until(lambda: isinstance(app.screen, TimeTravelScreen), pilot=pilot)
        assert [e for e in await engine.stores.events.list(wf) if e.type == "graph.forked"] == []

        await to_choice(pilot, app)
        await pilot.press(answer)
        then = ", then 1 task after it" if answer == "y" else ""
        await until(lambda: notified(app, f"forked at step 2; running steps after it{then}"), pilot=pilot)
        await until(lambda: graphs.RUNS["report"] == 1, pilot=pilot)
        await completes(pilot, engine, wf)
        after = await engine.stores.tasks.get(wf, "after")
        assert after is not None and after.attempts == attempts
        assert dict(graphs.RUNS) == {"check": 1, "report": 1}


async def test_e_forks_with_an_edited_state_and_bad_json_is_shown_not_sent(engine: Engine) -> None:
    app = make_app(engine, start=graph_spec("linear"))
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app), pilot=pilot)
        wf = app.started_workflow
        assert wf is not None
        await select_build(pilot, app)
        await pilot.press("t")
        await until(lambda: isinstance(app.screen, TimeTravelScreen), pilot=pilot)
        await pilot.press("down", "down", "e")
        await until(lambda: isinstance(app.screen, StateEditor), pilot=pilot)
        editor = app.screen.query_one(TextArea)
        values = json.loads(editor.text)
        assert values["topic"] == "parser" and values["log"] == ["plan", "write"]
        editor.load_text('{"topic": "lexer",')
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, StateEditor), "invalid JSON must not close the editor"
        assert "not valid JSON" in text_of(app, "#editor-error")
        editor.load_text(json.dumps({**values, "topic": "lexer"}))
        graphs.RUNS.clear()
        await pilot.press("ctrl+s")
        await until(lambda: notified(app, "forked at step 2 with topic edited"), pilot=pilot)
        await until(lambda: graphs.RUNS["report"] == 1, pilot=pilot)
        await completes(pilot, engine, wf)
        output = await output_of(engine, wf)
        assert output["topic"] == "lexer" and output["log"] == ["plan", "write", "check", "report"]
        assert dict(graphs.RUNS) == {"check": 1, "report": 1}


async def test_t_explains_when_there_is_no_graph_task_to_travel(engine: Engine) -> None:
    spec = graph_spec("linear")
    spec = WorkflowSpec.model_validate(
        {**spec.model_dump(mode="json"), "tasks": [{"id": "build", "agent": "sh", "run": "echo hi"}]}
    )
    app = make_app(engine, start=spec)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "✔ graph-ui" in tree_text(app), pilot=pilot)
        await pilot.press("t")
        await until(lambda: notified(app, "select a graph task in the tree first"), pilot=pilot)
        await select_build(pilot, app)
        await pilot.press("t")
        await until(lambda: notified(app, "build is not a graph task (its agent is kind shell)"), pilot=pilot)
        assert isinstance(app.screen, MainScreen)


def test_only_changed_keys_are_sent_and_mistakes_are_explained() -> None:
    before = {"topic": "parser", "count": 2}
    assert changed_values(before, '{"topic": "lexer", "count": 2}') == {"topic": "lexer"}
    for text, why in [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"topic": "lexer"}', "cannot remove state keys (count)"),
        ('{"topic": "parser", "count": 2}', "nothing changed"),
    ]:
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
            changed_values(before, text)
