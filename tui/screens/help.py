"""The help screen (``?``): every control, what it does, and how the dashboard is laid out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown

HELP = """\
# agentdeck — keys

`Esc` or `?` closes this help · `↑` `↓` `PgUp` `PgDn` scroll it

| key | what it does |
| --- | --- |
| `↑` `↓` | move in the workflow tree: the selected workflow's agents fill the panes |
| `Enter` | on a task: its **detail** — every attempt's output and how it ended, the error, input and output \
(`d`), a graph task's nodes (`n`); on a workflow: fold or unfold it |
| `p` | **pause** the selected workflow (running processes are frozen), again to **resume** |
| `c` | **cancel** the selected workflow: running work is killed, the rest skipped (asks first) |
| `r` | **retry** the selected task, with its upstream outputs as they are |
| `b` | **rollback**: the checkpoint timeline — pick a checkpoint, see what would run again, confirm; or `d` there \
to **diverge** from it: a new workflow with the same spec starts from that checkpoint (what had completed is \
carried over, the rest runs; it records where it diverged from) and this one stays as it is |
| `R` | **resume** a workflow whose engine stopped (crash, kill, cancel) from its last checkpoint |
| `t` | **time travel** the selected graph task: its checkpoints newest first; replay from a step or fork it with \
edited state — only the steps after it run again |
| `A` | **approvals** graphs wait for: `y` yes · `n` no · `a` type an answer · `Esc` later |
| `w` | **watchpoints** of the selected workflow: type a condition (`output ~ "Traceback"`, `cost_usd > 0.50`, \
`running > 5m`, `failures >= 3 within 10m` …; checked as you type, a mistake shows its column) and `Enter` adds it \
— scoped to the selected task's events if a task is selected (`ctrl+t` toggles); `Tab` to the list, `d` removes one |
| `g` `k` `d` | when a watchpoint paused a workflow, its **banner** (the task selected): `g` resume · `k` cancel \
(asks) · `d` remove the watchpoint and resume · `Esc` dismiss the banner (the workflow stays paused) |
| `m` | maximise the focused agent pane (again to restore); its border counts the panes it hides |
| `x` | dismiss failed agent panes (the focused one, else all of the selected workflow): they stay until then |
| `1` `2` `3` | tabs: agents · events · metrics |
| `[` `]` | metrics: the previous / next chart tab (agents · health · system · latency · LLM) |
| `/` | filter the event log (`!` first: failures only; progress rows show when the filter says `progress`); in its \
rows `Enter` `↑` `↓` pick an event and `Enter` shows it in full |
| `M` | **memory explorer**: search what agents remembered by meaning, as you type; filter by agent, type, the \
selected workflow; `Enter` opens a memory with where it came from, `g` goes to the task that wrote it |
| `W` | **workers**: the `agentdeck worker` processes taking commands from this dashboard's Redis — up or lost, \
running of slots, when last heard, the tasks each runs (as `agentdeck workers` prints it, read every 2 s) |
| `ctrl+p` | command palette: every action by name |
| `?` | this help |
| `q` | quit (running workflows are stopped and stay resumable; attached to another engine's, it detaches) |

# What you see

- **Workflow tree** (left): workflows and their tasks — status icon, elapsed time, `↻N` retries. It shows what
  the database committed, also for workflows other processes run on the same database.
- **Agents**: one pane per running task of the selected workflow — agent, task, state, elapsed, progress bar
  and live output. Scroll up in a pane to stop following; scroll to the end to follow again.
- **Events**: every event; `/` filters by type, task, agent or text.
- **Metrics** (`[` `]` go through its tabs): agent performance (task duration p50/p95 per agent, running
  agents), workflow health (completions, failures and retries per second), system resources (CPU, RSS of sandbox
  processes), latency (event emitted → on screen) and LLM calls, tokens and cost per agent and workflow. Each
  chart's title says its unit and current value. The header shows completions per second and running agents.

- **Graph tasks** show their node executions under them (`✔ plan · step 1 0s`). When a graph asks a person
  (`interrupt()`), the task shows `✋`, the top bar counts what waits, and the prompt opens — with its deadline
  counting down to the default answer when it has one.

Icons: `▶` running · `⏸` paused · `✋` waiting for you · `↻` retrying · `✔` completed · `✘` failed · `■` cancelled ·
`·` skipped · `○` pending · `⏹` stopped (the dashboard quit while it ran: `R` resumes it).

Press `Esc` or `?` to close.
"""


class HelpScreen(ModalScreen[None]):
    """``HELP``, or another screen's help (``text``: the replay's)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, text: str = HELP) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(self.text)
        yield Footer()  # the keys of this screen, as on the main screen

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
