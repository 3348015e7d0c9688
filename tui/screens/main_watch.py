"""The main screen's watchpoints: ``w`` opens the selected workflow's (``tui.screens.watchpoints``), and a
triggered one raises the banner (``tui.widgets.watch_banner``) with the task it concerns selected and shown.

The banner's keys act on the workflow it names, whatever is selected since: ``g`` resumes it, ``k`` cancels it
(asks first), ``d`` removes the watchpoint and resumes, ``Esc`` dismisses the banner (the workflow stays paused).
It goes away by itself when that workflow resumes, ends or is rolled back by any other path (``p``, another
terminal, another dashboard), told by the workflow's events. A workflow already paused by a watchpoint when the
dashboard opens gets its banner too (``restore_watch_banner``, from its stored events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.binding import Binding
from textual.signal import Signal

from db.models import Event, EventType
from engine.errors import ControlError
from tui.screens.confirm import ConfirmScreen
from tui.screens.main_controls import WorkflowControls
from tui.screens.watchpoints import WatchpointsScreen
from tui.widgets.agent_grid import AgentGrid
from tui.widgets.watch_banner import WatchBanner
from tui.widgets.workflow_tree import WorkflowTree

#: A workflow that went on or ended: its banner has nothing left to answer.
_GONE_ON = frozenset(
    {
        EventType.WORKFLOW_RESUMED,
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_STOPPED,
        EventType.WORKFLOW_ROLLED_BACK,
    }
)
#: How many of a paused workflow's last events are read for the trigger that paused it, when the dashboard opens.
RESTORE_TAIL = 500
#: The agent pane of the task a watchpoint stopped at wears this class while its banner is up (app.tcss).
HIT_CLASS = "-watch-hit"


class WatchpointControls(WorkflowControls):
    """Watchpoint keys and the banner of ``MainScreen`` (a base class of it, above ``WorkflowControls``)."""

    # Not in the footer: the banner names its own keys while it is up, and the keys do nothing otherwise.
    BINDINGS = [
        Binding("g", "banner_resume", "Resume (watchpoint)", show=False),
        Binding("k", "banner_cancel", "Cancel (watchpoint)", show=False),
        Binding("d", "banner_remove_resume", "Remove watchpoint, resume", show=False),
    ]

    if TYPE_CHECKING:
        events: Signal[list[Event]]

        def show_task(self, workflow: str, task: str | None = None) -> None: ...
        def action_tab(self, tab: str) -> None: ...

    # ---- the watchpoints screen ----------------------------------------------------------------------------

    def action_watchpoints(self, focus_list: bool = False) -> None:
        """``w``: the selected workflow's watchpoints, a new one scoped to the selected task if there is one."""
        workflow = self._need_workflow()
        if workflow is None:
            return
        found = self.query_one(WorkflowTree).workflows.get(workflow)
        screen = WatchpointsScreen(
            self.engine,
            workflow,
            workflow_name=found.name if found else None,
            task=self.selected_task,
            events=self.events,
            focus_list=focus_list,
        )
        self.app.push_screen(screen)

    def action_watchpoint_list(self) -> None:
        """The same screen with its list focused (the command palette's "Watchpoints of this workflow")."""
        self.action_watchpoints(focus_list=True)

    # ---- the banner ----------------------------------------------------------------------------------------

    def _follow_watchpoints(self, events: list[Event]) -> None:
        """Raise the banner on a trigger (and select what it concerns); drop it when its workflow goes on."""
        banner = self.query_one(WatchBanner)
        shown: Event | None = None
        for event in events:
            if event.type == EventType.WATCHPOINT_TRIGGERED:
                found = self.query_one(WorkflowTree).workflows.get(event.workflow)
                self._unmark(banner.clear(event.workflow))
                banner.add(event, found.name if found else None)
                shown = event
            elif event.type in _GONE_ON and event.workflow in banner.hits:
                gone = banner.clear(event.workflow)
                self._unmark(gone)
                if gone is shown:
                    shown = None
        if shown is not None:
            self._bring_into_view(shown)

    @work(group="watch-banner", exit_on_error=False)
    async def restore_watch_banner(self, paused: list[str]) -> None:
        """On opening: the banner for workflows a watchpoint paused before this dashboard was looking (a headless
        run, another dashboard), from the tail of their stored events."""
        newest: Event | None = None
        for workflow in paused:
            last = await self.engine.stores.events.last_seq(workflow)
            tail = await self.engine.stores.events.list(workflow, after_seq=max(0, last - RESTORE_TAIL))
            hit: Event | None = None
            for event in tail:
                if event.type == EventType.WATCHPOINT_TRIGGERED:
                    hit = event
                elif event.type in _GONE_ON:
                    hit = None
            banner = self.query_one(WatchBanner)
            if hit is None or workflow in banner.hits:  # a live trigger came meanwhile: it is newer
                continue
            found = self.query_one(WorkflowTree).workflows.get(workflow)
            banner.add(hit, found.name if found else None)
            newest = hit if newest is None or hit.ts > newest.ts else newest
        if newest is not None:
            self._bring_into_view(newest)

    def _bring_into_view(self, event: Event) -> None:
        """The workflow (and task) a watchpoint paused: selected in the tree, its pane on the agents tab."""
        self.show_task(event.workflow, event.task)
        if event.task is None:
            return
        self.action_tab("tab-agents")
        grid = self.query_one(AgentGrid)
        pane = grid.panes.get((event.workflow, event.task))
        if pane is not None:
            pane.add_class(HIT_CLASS)
            grid.scroll_to_widget(pane, animate=False)

    def _unmark(self, event: Event | None) -> None:
        if event is not None and event.task is not None:
            pane = self.query_one(AgentGrid).panes.get((event.workflow, event.task))
            if pane is not None:
                pane.remove_class(HIT_CLASS)

    def dismiss_watch_banner(self) -> bool:
        """Take the shown trigger off the banner (the next one, if any, shows); False when none was up."""
        banner = self.query_one(WatchBanner)
        hit = banner.hit
        if hit is None:
            return False
        self._unmark(banner.clear(hit.workflow))
        return True

    def _banner_hit(self) -> Event | None:
        hit = self.query_one(WatchBanner).hit
        if hit is None:
            self.notify("no watchpoint has paused a workflow", severity="information")
        return hit

    def action_banner_resume(self) -> None:
        hit = self._banner_hit()
        if hit is not None:
            self.dismiss_watch_banner()
            self._control("resume", lambda: self.engine.resume(hit.workflow))

    def action_banner_remove_resume(self) -> None:
        hit = self._banner_hit()
        if hit is None:
            return
        self.dismiss_watch_banner()
        workflow, watchpoint = hit.workflow, str(hit.data.get("watchpoint"))

        async def remove_then_resume() -> None:
            try:
                await self.engine.remove_watchpoint(workflow, watchpoint)
            except ControlError as exc:  # removed meanwhile (another terminal): resume all the same
                self.notify(str(exc), title="watchpoint", severity="warning")
            else:
                label = hit.data.get("name") or hit.data.get("when")
                self.notify(f"no longer watching {label}", title="watchpoint removed")
            await self.engine.resume(workflow)

        self._control("resume", remove_then_resume)

    def action_banner_cancel(self) -> None:
        hit = self._banner_hit()
        if hit is None:
            return
        workflow = hit.workflow

        def answered(yes: bool | None) -> None:
            if yes:
                self._control("cancel", lambda: self.engine.cancel(workflow))

        self.app.push_screen(
            ConfirmScreen(f"Cancel {workflow}?", "Running processes are killed; tasks not done are skipped."), answered
        )
