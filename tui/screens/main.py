"""The main screen: the workflow tree, the agent panes, the event log and the metrics, and every control.

Controls go through the engine's public API (``Engine.pause`` …); the screen never writes the database. Their
actions live in its base class, ``tui.screens.main_controls.WorkflowControls``; the keys are bound here.
Approvals a graph asks for open as a prompt when the main screen is on top (``A`` brings back put-off ones, the top
bar counts them); ``t`` opens the selected graph task's time travel; ``w`` the selected workflow's watchpoints, and
a triggered one raises a banner (``tui.screens.main_watch``).
"""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.signal import Signal
from textual.widgets import Footer, Label, Sparkline, Static, TabbedContent, TabPane

from db.models import Event, EventType, TaskStatus, WorkflowStatus
from engine.api import DashboardEngine
from engine.engine_controls import lease_expired
from tui.collector import CollectorPolicy
from tui.feed import EventFeed
from tui.pending_approvals import PendingApprovals
from tui.screens.approval import ApprovalScreen
from tui.screens.event_detail import EventDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main_watch import WatchpointControls
from tui.screens.memory_explorer import JumpTarget, MemoryExplorer
from tui.screens.task_detail import TaskDetailScreen
from tui.status import UsageLedger, icon, task_summary, usage_text
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.event_log import EventLog
from tui.widgets.event_rows import EventRows
from tui.widgets.metrics_view import MetricsView
from tui.widgets.watch_banner import WatchBanner
from tui.widgets.workflow_tree import NodeRef, WorkflowTree


class MainScreen(WatchpointControls):
    #: Below 120 columns the header's sparklines give their room to the selected workflow's state and counts.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        # Help and quit first: the footer shows bindings in this order and cuts the rest at narrow widths, and
        # these two must stay reachable at 80 columns (everything else is in help and the command palette).
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
        Binding("p", "pause_resume", "Pause"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "retry", "Retry"),
        Binding("b", "rollback", "Rollback"),
        Binding("R", "resume_stopped", "Resume", key_display="R"),
        Binding("t", "time_travel", "Time travel"),
        Binding("A", "approvals", "Approvals", key_display="A"),
        Binding("w", "watchpoints", "Watch"),
        Binding("m", "maximise", "Max"),
        Binding("x", "dismiss_failed", "Dismiss failed", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("M", "memory", "Memory", key_display="M", show=False),
        Binding("W", "workers", "Workers", key_display="W", show=False),
        Binding("1", "tab('tab-agents')", "Agents", show=False),
        Binding("2", "tab('tab-events')", "Events", show=False),
        Binding("3", "tab('tab-metrics')", "Metrics", show=False),
        Binding("left_square_bracket", "metric_tab(-1)", "Previous chart tab", key_display="[", show=False),
        Binding("right_square_bracket", "metric_tab(1)", "Next chart tab", key_display="]", show=False),
        Binding("escape", "focus_tree", "Back to the tree", show=False),
    ]

    def __init__(self, engine: DashboardEngine, feed: EventFeed) -> None:
        super().__init__()
        self.engine = engine
        self.feed = feed
        self.selected_workflow: str | None = None
        self.selected_task: str | None = None
        self._history_loaded: set[str] = set()
        self.approvals = PendingApprovals()
        self._approval_screen: ApprovalScreen | None = None
        self._waiting_shown = -1
        self._selection_text = ""
        self._collector = CollectorPolicy()
        self.usage = UsageLedger()  # LLM tokens and cost from llm.usage events: panes, the top bar and metrics read it
        self._controls = asyncio.Lock()

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Label("[b]agentdeck[/]", id="brand")
            yield Label("", id="selection")
            yield Label("", id="waiting")
            yield Label("done/s", classes="spark-label")
            yield Sparkline([0.0], id="spark-rate", summary_function=max)
            yield Label("running", classes="spark-label")
            yield Sparkline([0.0], id="spark-running", summary_function=max)
        yield WatchBanner(id="watch-banner")
        with Horizontal(id="body"):
            yield WorkflowTree(self.engine.db, id="tree")
            with TabbedContent(id="tabs", initial="tab-agents"):
                with TabPane("Agents [1]", id="tab-agents"):
                    yield Static(
                        "No agent of the selected workflow is running.\n\n"
                        "Panes appear here as its tasks start. Pick a workflow in the tree (↑ ↓), "
                        "look back with the Events tab (2), or press ? for every control.",
                        id="agents-empty",
                    )
                    yield AgentGrid(self.usage, id="agents")
                with TabPane("Events [2]", id="tab-events"):
                    yield EventLog(id="events")
                with TabPane("Metrics [3]", id="tab-metrics"):
                    yield MetricsView(self.engine.stores, self.usage, id="metrics")
        yield Footer()

    def on_mount(self) -> None:
        # One batch of events per frame, to every widget that follows them; a widget removed is dropped.
        self.events: Signal[list[Event]] = Signal(self, "events")
        self.events.subscribe(self, self.usage.consume, immediate=True)  # first: panes and metrics read the sums
        self.events.subscribe(self.query_one(AgentGrid), self.query_one(AgentGrid).consume, immediate=True)
        self.events.subscribe(self.query_one(EventLog), self.query_one(EventLog).consume, immediate=True)
        self.events.subscribe(self.query_one(MetricsView), self.query_one(MetricsView).consume, immediate=True)
        self.events.subscribe(self, self._follow_new_workflows, immediate=True)
        self.events.subscribe(self, self._follow_approvals, immediate=True)
        self.events.subscribe(self, self._follow_watchpoints, immediate=True)
        self.set_interval(0.05, self._frame)
        self._sparklines()
        self.set_interval(1.0, self._sparklines)
        self.query_one(WorkflowTree).focus()
        self.query_one(WorkflowTree).on_change = self._tree_changed  # the top bar changes with the tree
        self.call_after_refresh(self._freeze_startup_objects)

    def _freeze_startup_objects(self) -> None:
        """Collect once and keep what lives as long as the dashboard out of later collections (tui/collector.py):
        with the ~170k objects the dashboard has once up, a full pass was ~150 ms of CPU in a flood."""
        self._collector.collect_now()
        self.set_interval(0.25, self._collector.tick)

    def on_unmount(self) -> None:
        self._collector.release()  # tests run many apps in one process: an earlier one's objects are collected

    def _frame(self) -> None:
        """One frame: hand what arrived to the widgets, then let the panes show it (one write each at most)."""
        batch = self.feed.drain()
        if batch:
            self._collector.busy()
            self.events.publish(batch)
        grid = self.query_one(AgentGrid)
        grid.render_frame()
        empty = self.query_one("#agents-empty")
        no_panes = not grid.visible_panes()
        if empty.display != no_panes:
            empty.display = no_panes
        metrics = self.query_one(MetricsView)
        while self.feed.latencies:
            metrics.record_latency(self.feed.latencies.popleft())
        while self.feed.notices:
            self.notify(self.feed.notices.popleft(), title="event stream", severity="warning")
        self._show_waiting()
        if self.app.screen is self:  # never over another screen: a prompt waits until the main screen is back
            self._offer_approval()

    def _tree_changed(self) -> None:
        """A frame of the tree was applied: the top bar follows; and a workflow that appeared while nothing is
        selected becomes the selection (its ``workflow.created`` may have come before this screen listened, and
        the tree's first load before the workflow existed: it would otherwise never be selected)."""
        tree = self.query_one(WorkflowTree)
        if self.selected_workflow is None and tree.workflows:
            newest = max(tree.workflows.values(), key=lambda w: w.created_at)
            self._select(newest.id, None)
            self.call_after_refresh(self._cursor_to_workflow, newest.id)
            return
        self._show_selection()

    def _show_selection(self) -> None:
        workflow, task = self.selected_workflow, self.selected_task
        if workflow is None:
            return
        found = self.query_one(WorkflowTree).workflows.get(workflow)
        name = found.name if found else workflow
        state = icon(found.status.value) + " " + found.status.value if found else ""
        counts = task_summary(t.status.value for t in self.query_one(WorkflowTree).tasks.get(workflow, {}).values())
        detail = (f" [dim]·[/] {counts}" if counts else "") + (f" › {task}" if task else "")
        usage = self.usage.workflow(workflow)
        spend = f" [dim]·[/] {usage_text(usage)}" if usage else ""  # the workflow's LLM tokens and cost
        text = f"{name} {state}{detail}{spend} [dim]{workflow}[/]"  # the id last: cut first when narrow
        if text != self._selection_text:  # redrawn every second (elapsed, usage): only when it changed
            self._selection_text = text
            # Its size is fixed (a row, 1fr wide), so a new text needs no layout of the screen.
            self.query_one("#selection", Label).update(text, layout=False)

    def _sparklines(self) -> None:
        self._show_selection()
        rate, running = self.query_one(MetricsView).sparkline_data()
        self.query_one("#spark-rate", Sparkline).data = rate
        self.query_one("#spark-running", Sparkline).data = running

    def _follow_new_workflows(self, events: list[Event]) -> None:
        """A workflow started while nothing is selected becomes the selection."""
        for event in events:
            if event.type == EventType.WORKFLOW_CREATED and (
                self.selected_workflow is None or not self.engine.is_running(self.selected_workflow)
            ):
                self._select(event.workflow, None)
                self.call_after_refresh(self._cursor_to_workflow, event.workflow)

    def _cursor_to_workflow(self, workflow: str) -> None:
        """The tree's cursor on a workflow just followed, unless it is on one of its rows already: the tree can
        show the workflow (from the database) before its first event comes (from the bus), and a cursor someone
        put on one of its tasks meanwhile stays there. Nor if the selection moved on to another workflow since
        this was asked for (it came after a refresh): the cursor would go back to the one left."""
        if self.selected_workflow != workflow:
            return
        tree = self.query_one(WorkflowTree)
        at = tree.cursor_node.data if tree.cursor_node is not None else None
        if at is None or at.workflow != workflow:
            tree.select_workflow(workflow)

    def _select(self, workflow: str, task: str | None) -> None:
        self.selected_workflow, self.selected_task = workflow, task
        self.query_one(AgentGrid).show_workflow(workflow)
        self._show_selection()
        if workflow not in self._history_loaded:
            self._history_loaded.add(workflow)
            self._load_history(workflow)

    @work(group="history", exit_on_error=False)
    async def _load_history(self, workflow: str) -> None:
        """Past events of a workflow (output included) from the event table, for the event log."""
        last = await self.engine.stores.events.last_seq(workflow)
        events = await self.engine.stores.events.list(workflow, after_seq=max(0, last - 2_000))
        self.query_one(EventLog).load_history(events)
        # Tasks that started before this dashboard saw them (it attached to another engine) get their panes too.
        tasks = self.query_one(WorkflowTree).tasks.get(workflow, {})
        live = (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.WAITING)
        running = [t for t in tasks.values() if t.status in live]
        self.query_one(AgentGrid).restore(workflow, running, events)

    @on(WorkflowTree.Selected)
    def _tree_selected(self, message: WorkflowTree.Selected) -> None:
        self._select(message.workflow, message.task)

    @on(EventRows.Chosen)
    def _event_chosen(self, message: EventRows.Chosen) -> None:
        """Enter on an event in the log: the event in full."""
        self.app.push_screen(EventDetailScreen(message.event))

    @on(WorkflowTree.NodeSelected)
    def _tree_enter(self, message: WorkflowTree.NodeSelected[NodeRef]) -> None:
        """Enter on a task (or one of its graph nodes) opens its detail; on a workflow it folds or unfolds."""
        ref = message.node.data
        if ref is None:
            return
        if ref.task is None:
            message.node.toggle()
            return
        self.open_task_detail(ref.workflow, ref.task)

    def open_task_detail(self, workflow: str, task: str) -> None:
        self.app.push_screen(TaskDetailScreen(self.engine.stores, workflow, task, self.events))

    @on(WorkflowTree.Loaded)
    def _loaded(self) -> None:
        tree = self.query_one(WorkflowTree)
        embedded = self.engine.db.is_embedded
        stopped = [
            w
            for w in tree.workflows.values()
            if lease_expired(w, embedded) and w.owner != self.engine.owner and not self.engine.is_running(w.id)
        ]
        for workflow in stopped:
            how = "was stopped when its dashboard quit" if workflow.status is WorkflowStatus.STOPPED else (
                "stopped while running (its engine crashed or was killed)")  # fmt: skip
            self.notify(
                f"{workflow.name} ({workflow.id}) {how}. Select it and press shift+R to resume.",
                title="resumable workflow",
                timeout=15,
            )
        if self.selected_workflow is None and tree.workflows:
            newest = max(tree.workflows.values(), key=lambda w: w.created_at)
            self._select(newest.id, None)
            tree.select_workflow(newest.id)
        self._load_approvals(list(tree.workflows))
        self.restore_watch_banner([w.id for w in tree.workflows.values() if w.status is WorkflowStatus.PAUSED])

    # ---- approvals -----------------------------------------------------------------------------------------

    @work(group="approvals", exit_on_error=False)
    async def _load_approvals(self, workflows: list[str]) -> None:
        """Approvals already pending when the dashboard started (later ones arrive as events)."""
        for workflow in workflows:
            self.approvals.add(await self.engine.approvals.pending(workflow))

    def _follow_approvals(self, events: list[Event]) -> None:
        for approval_id, data in self.approvals.consume(events):
            screen = self._approval_screen
            if screen is not None and screen.approval.id == approval_id:
                screen.answered_elsewhere(data)

    def _show_waiting(self) -> None:
        count = len(self.approvals)
        if count != self._waiting_shown:
            self._waiting_shown = count
            text = f"[b orange1]✋ {count} waiting[/] [dim](A)[/]" if count else ""
            self.query_one("#waiting", Label).update(text)

    def _offer_approval(self) -> None:
        approval = self.approvals.next_to_show(self.selected_workflow)
        if approval is None or self._approval_screen is not None:
            return
        found = self.query_one(WorkflowTree).workflows.get(approval.workflow)
        screen = ApprovalScreen(self.engine, approval, workflow_name=found.name if found else None)

        def closed(answered: bool | None) -> None:
            self._approval_screen = None
            if answered:
                self.approvals.answered(approval.id)
            else:
                self.approvals.put_off(approval.id)

        self._approval_screen = screen
        self.app.push_screen(screen, closed)

    def action_approvals(self) -> None:
        if not len(self.approvals):
            self.notify("no approval is waiting", severity="information")
            return
        self.approvals.bring_back()
        self._offer_approval()

    def action_maximise(self) -> None:
        self.action_tab("tab-agents")
        self.query_one(AgentGrid).toggle_maximise()

    def action_dismiss_failed(self) -> None:
        if not self.query_one(AgentGrid).dismiss_failed():
            self.notify("no failed agent pane to dismiss", severity="information")

    def action_filter(self) -> None:
        self.action_tab("tab-events")
        self.query_one(EventLog).focus_filter()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_metric_tab(self, step: int) -> None:
        """[ and ]: the previous or next chart tab (on the Metrics tab; from elsewhere, the Metrics tab first)."""
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active != "tab-metrics":
            tabs.active = "tab-metrics"
            return
        self.query_one(MetricsView).cycle_tab(step)

    def action_memory(self) -> None:
        """The memory explorer; a memory's "go to task" comes back here and selects that task."""
        names = {w.id: w.name for w in self.query_one(WorkflowTree).workflows.values()}

        def closed(target: JumpTarget | None) -> None:
            if target is not None:
                self.show_task(*target)

        self.app.push_screen(MemoryExplorer(self.engine, self.selected_workflow, names), closed)

    def action_workers(self) -> None:
        """The workers taking commands from this dashboard's Redis (``agentdeck workers``, kept up to date)."""
        from tui.screens.workers import WorkersScreen

        self.app.push_screen(WorkersScreen(getattr(self.app, "redis_url", None)))

    def show_task(self, workflow: str, task: str | None = None) -> None:
        """Select a workflow (and one of its tasks) as if picked in the tree, with the tree's cursor on it."""
        self._select(workflow, task)
        tree = self.query_one(WorkflowTree)
        if task is None:
            tree.select_workflow(workflow)
        else:
            tree.select_task(workflow, task)
        tree.focus()

    def action_focus_tree(self) -> None:
        """Esc: back to the tree; a watchpoint's banner, if one is up, is dismissed too."""
        self.dismiss_watch_banner()
        self.query_one(WorkflowTree).focus()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())
