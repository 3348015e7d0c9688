"""The replay screen: a flight recording played back with no engine (``agentdeck replay FILE``).

The tree, the agent panes (the live dashboard's, ``tui.widgets.replay_panes``), per-agent metrics and the event log
unfold as they did, at 1x to 100x (``engine.replay`` holds the state at every moment, ``ReplayClock`` says which
moment is due). It opens playing when asked (the command line does), else paused at the start. Keys: space
play/pause, ``.``/``n`` one event on, ``,`` one back, ←/→ ten events, shift+←/→ a tenth of the recording,
Home/End, ``+``/``-`` speed, enter on a task or ``m`` maximise its pane, ``x`` dismiss failed panes, ``d`` diverge
here (after a yes: the app exits asking the command line to start a new live workflow from this moment), ``?`` the
keys, ``q`` quit. A click on the scrub bar jumps there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePath

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree

from db.models import EventType
from engine.replay import Replay, ReplayClock
from tui.collector import CollectorPolicy
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.widgets.event_log import event_line
from tui.widgets.replay_metrics import ReplayMetrics
from tui.widgets.replay_panes import ReplayGrid
from tui.widgets.replay_tree import ReplayTree
from tui.widgets.scrub_bar import ScrubBar

FRAME_S = 1 / 30
LOG_LINES = 200

REPLAY_HELP = """\
# agentdeck replay — keys

A flight recording (`agentdeck export`) played back: no engine runs, nothing is changed. `Esc` or `?` closes this.

| key | what it does |
| --- | --- |
| `space` | **play** / **pause** (at the end, play starts over) |
| `n` `.` | one event on (**step**) · `,` one event back |
| `→` `←` | ten events on / back · `shift+→` `shift+←` a tenth of the recording |
| `Home` `End` | the start / the end of the recording |
| `+` `-` | faster / slower: 1×, 2×, 4× … 64×, 100× the recorded pace (idle gaps over 2 s are cut to 2 s) |
| click | on the scrub bar (bottom): jump to that moment |
| `↑` `↓` | pick a task in the tree: its pane is marked; a task done or failed by then gets a pane with its last \
lines |
| `enter` `m` | maximise the picked task's pane (the first if none); again to see them all |
| `x` | dismiss the failed panes (they stay until then, as in the dashboard) |
| `d` | **diverge here**: after a yes, the recording is imported into the database (`--db`) and the dashboard \
opens there with a new live workflow — same spec, started from the newest checkpoint at or before this moment; the \
tasks completed by then are carried over (not run again) and it records where it diverged from |
| `ctrl+p` | command palette: every action by name |
| `q` | quit |

# What you see

- The **status line**: the file, playing or paused, the speed, the event shown (`event n/N`, its `seq`) and when
  it was recorded.
- The **tree**: the workflow and its tasks as they were at that event (icons as in the dashboard: `▶` running ·
  `✔` completed · `✘` failed · `↻N` retries · `○` pending · `·` skipped).
- **Agent panes**, as in the dashboard: one per task running at that moment (state, agent, elapsed, progress,
  LLM tokens and cost; its output so far, the last 500 lines after a jump). Playing, they open and close as the
  tasks did; the task picked in the tree has its pane marked, or one of its own if it is not running.
- **Metrics**, per agent: tasks running `▶`, done `✔`, failed `✘`; mean task duration and queue wait; CPU of its
  processes over the last seconds (sparkline) and now, and RSS; LLM tokens and cost when it made calls.
- **Events**: the newest events up to that moment.
"""


@dataclass(frozen=True)
class DivergeRequest:
    """What the replay asks of the command line when it exits on ``d``: a new workflow from event ``seq``."""

    workflow: str
    seq: int


class ReplayScreen(Screen[None]):
    # Priority: the tree's own keys (space toggles a node, Home/End scroll, shift+arrows) give way to playback.
    BINDINGS = [
        Binding("space", "toggle_play", "Play", priority=True),
        Binding("n,full_stop", "step(1)", "Step", priority=True),
        Binding("comma", "step(-1)", "Back", show=False, priority=True),
        Binding("right", "step(10)", "+10", show=False, priority=True),
        Binding("left", "step(-10)", "-10", show=False, priority=True),
        Binding("shift+right", "jump(1)", "+10%", show=False, priority=True),
        Binding("shift+left", "jump(-1)", "-10%", show=False, priority=True),
        Binding("home", "seek(0)", "Start", show=False, priority=True),
        Binding("end", "seek(-1)", "End", show=False, priority=True),
        Binding("plus,equals_sign", "speed(1)", "Faster", priority=True),
        Binding("minus", "speed(-1)", "Slower", priority=True),
        Binding("m", "maximise", "Maximise", show=False),
        Binding("x", "dismiss_failed", "Dismiss failed", show=False),
        Binding("d", "diverge", "Diverge", priority=True),
        Binding("question_mark", "help", "Help", show=False),
        Binding("q", "quit_replay", "Quit", priority=True),
    ]

    DEFAULT_CSS = """
    #replay-status { height: 1; background: $boost; }
    #replay-body { height: 1fr; }
    ReplayTree { width: 38%; max-width: 56; min-width: 28; border: round $primary; scrollbar-size-horizontal: 0; }
    #replay-right { width: 1fr; }
    #replay-agents-empty { height: auto; padding: 1 2; color: $text-muted; }
    ReplayGrid { grid-size: 1 1; grid-gutter: 0 1; height: 3fr; }
    #replay-events { height: 1fr; min-height: 3; border: round $secondary; }
    """

    def __init__(self, replay: Replay, file: str, speed: float = 1.0, playing: bool = False) -> None:
        super().__init__()
        self.replay = replay
        self.file = file
        self.clock = ReplayClock([e.ts for e in replay.events], speed=speed)
        self.open_playing = playing
        self._jumped = False  # moved by a jump since the last draw (the panes are built anew, not played on)
        self._drawn: tuple[int, str | None] | None = None
        # The recording and its snapshots live as long as the screen: frozen out of collections, which otherwise
        # walked them all in a jump now and then (0.6-0.8 s measured on 100k events) — see tui/collector.py.
        self._collector = CollectorPolicy()

    def compose(self) -> ComposeResult:
        workflow = self.replay.recording.workflow
        yield Static(id="replay-status")
        with Horizontal(id="replay-body"):
            yield ReplayTree(workflow.id, workflow.name, id="replay-tree")
            with Vertical(id="replay-right"):
                yield Static(
                    "No task is running at this moment. Pick a task in the tree (↑ ↓) to read what it printed.",
                    id="replay-agents-empty",
                )
                yield ReplayGrid(self.replay, id="replay-agents")
                yield ReplayMetrics(id="replay-metrics")
                yield Static(id="replay-events")
        yield ScrubBar(len(self.replay), id="replay-scrub")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#replay-events", Static).border_title = "events"
        if self.open_playing and len(self.replay):
            self.clock.play(time.monotonic(), self.replay.position)
        self.draw()
        self.query_one(ReplayTree).focus()
        self.set_interval(FRAME_S, self._tick)
        self._collector.collect_now()
        self.set_interval(0.25, self._collector.tick)

    def on_unmount(self) -> None:
        self._collector.release()

    # ---- playing --------------------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.clock.playing:
            due = self.clock.due(time.monotonic())
            if due != self.replay.position:
                self._collector.busy()
                self.replay.seek(due)
                self.draw()
            if self.replay.at_end:
                self.clock.pause(time.monotonic())
                self.draw(force=True)
        self._panes_frame()

    def _panes_frame(self) -> None:
        """The panes show what reached them (one write each at most), and lingering ones leave, as live."""
        grid = self.query_one(ReplayGrid)
        grid.render_frame()
        empty = self.query_one("#replay-agents-empty")
        no_panes = not grid.visible_panes()
        if empty.display != no_panes:
            empty.display = no_panes

    def go(self, position: int) -> None:
        """Show ``position`` (a jump, unless it is the next event); playing goes on from there."""
        self._jumped = self._jumped or position != self.replay.position + 1
        self._collector.busy()
        self.replay.seek(position)
        self.clock.moved(time.monotonic(), self.replay.position)
        self.draw()

    def action_toggle_play(self) -> None:
        now = time.monotonic()
        if self.clock.playing:
            self.replay.seek(self.clock.pause(now))
        else:
            if self.replay.at_end:
                self.replay.seek(0)
                self._jumped = True
            self.clock.play(now, self.replay.position)
        self.draw(force=True)

    def action_step(self, count: int) -> None:
        self.go(self.replay.position + count)

    def action_jump(self, tenths: int) -> None:
        self.go(self.replay.position + tenths * max(1, len(self.replay) // 10))

    def action_seek(self, position: int) -> None:
        self.go(len(self.replay) if position < 0 else position)

    def action_speed(self, direction: int) -> None:
        now = time.monotonic()
        self.clock.faster(now) if direction > 0 else self.clock.slower(now)
        self.draw(force=True)

    def on_scrub_bar_seek(self, message: ScrubBar.Seek) -> None:
        self.go(message.position)

    def on_tree_node_highlighted(self, _: Tree.NodeHighlighted[str]) -> None:
        self.draw()

    def on_tree_node_selected(self, _: Tree.NodeSelected[str]) -> None:
        self.action_maximise()

    def action_maximise(self) -> None:
        self.query_one(ReplayGrid).toggle_chosen()

    def action_dismiss_failed(self) -> None:
        self.query_one(ReplayGrid).dismiss_failed()

    def on_resize(self) -> None:
        self.call_after_refresh(self.draw, True)  # the log is cut to its new size

    # ---- diverge and quit ----------------------------------------------------------------------------------

    def action_diverge(self) -> None:
        if self.clock.playing:
            self.replay.seek(self.clock.pause(time.monotonic()))
            self.draw(force=True)
        seq = max(1, self.replay.seq)
        workflow = self.replay.recording.workflow

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.exit(DivergeRequest(workflow.id, seq))

        self.app.push_screen(
            ConfirmScreen(
                f"Diverge here: start a new live workflow from event {seq}?",
                "The recording is imported into the database; tasks completed by then are not run again.",
            ),
            answered,
        )

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(REPLAY_HELP))

    def action_quit_replay(self) -> None:
        self.app.exit(None)

    # ---- drawing ----------------------------------------------------------------------------------------------

    def status_text(self, width: int | None = None) -> str:
        """The status line; narrower than ``width``, the short form (the file's name, the time without the date)."""
        replay = self.replay
        when = replay.time_at(replay.position)
        at = f"{when:%Y-%m-%d %H:%M:%S}" if when else "before the first event"
        state = "▶ playing" if self.clock.playing else ("at the end" if replay.at_end else "paused")
        text = (
            f"REPLAY  {self.file}  {state}  {self.clock.speed:g}×  event {replay.position}/{len(replay)}"
            f" (seq {replay.seq})  {at}"
        )
        if width is None or len(text) <= width:
            return text
        at = f"{when:%H:%M:%S}" if when else "start"
        return (
            f"REPLAY {PurePath(self.file).name} {state} {self.clock.speed:g}× {replay.position}/{len(replay)}"
            f" seq {replay.seq} {at}"
        )

    def draw(self, force: bool = False) -> None:
        tree = self.query_one(ReplayTree)
        task = tree.selected_task()
        key = (self.replay.position, task)
        if not force and key == self._drawn:
            return
        self._drawn = key
        replay = self.replay
        tree.show(replay.state, replay.time_at(replay.position))
        status = self.query_one("#replay-status", Static)
        status.update(Text(self.status_text(status.size.width or None)), layout=False)  # one row, always
        self.query_one(ScrubBar).move(replay.position)
        self.query_one(ReplayMetrics).show(
            replay.state,
            replay.metrics(),
            replay.events_of_type_so_far(EventType.LLM_USAGE),
            replay.time_at(replay.position),
        )
        grid = self.query_one(ReplayGrid)
        grid.sync(self._jumped)  # the events passed (playing, stepping on), or the panes of this moment built anew
        self._jumped = False
        grid.choose(task)
        self._panes_frame()
        events = self.query_one("#replay-events", Static)
        rows = max(1, events.content_region.height or LOG_LINES)  # the newest events that fit, one line each
        log = Text(no_wrap=True, overflow="ellipsis")
        for index, event in enumerate(replay.events_so_far(rows)):
            if index:
                log.append("\n")
            row = event_line(event)
            row.truncate(max(10, events.content_region.width), overflow="ellipsis")
            log.append_text(row)
        events.update(log, layout=False)  # its size is the layout's, not its content's
