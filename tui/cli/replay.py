"""``agentdeck replay FILE [--speed N] [--db URL]``: a flight recording on the dashboard, with no engine.

A damaged or foreign file is bad input (exit 2, the recorder's one line). When the person diverges (``d``), the
recording is imported into the database (``--db``, or the default one; skipped if it is there already), the
normal dashboard opens on it, and the new workflow starts from the chosen moment (``Engine.diverge``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tui.cli._common import EXIT_OK, BadInput, DbOption, db_url_or_default, run_async

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.recorder.model import Recording

FileArg = Annotated[Path, typer.Argument(metavar="FILE", help="A recording written by `agentdeck export`.")]
SpeedOption = Annotated[
    float, typer.Option("--speed", min=1, max=100, help="Playback speed, 1 to 100 times as fast as recorded.")
]


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)


def replay_command(file: FileArg, speed: SpeedOption = 1.0, db: DbOption = None) -> None:
    """Play a flight recording back on the dashboard (no engine): pause, step, scrub, and diverge here (d)."""
    from engine.recorder.fileformat import RecordingError, read_recording

    try:
        recording = read_recording(file)
    except RecordingError as exc:
        raise BadInput(f"agentdeck: {exc}") from None
    except OSError as exc:
        raise BadInput(f"agentdeck: cannot read {file}: {exc.strerror or exc}") from None
    from tui.cli.dashboard import need_a_terminal

    need_a_terminal()
    url = db_url_or_default(db) if db is not None else None

    async def work() -> int:
        from tui.replay_app import make_replay_app

        request = await make_replay_app(recording, str(file), speed, playing=True).run_async()  # it plays at once
        if request is None:
            return EXIT_OK
        return await diverge_in_dashboard(recording, request.seq, url)

    code = run_async(work)
    if code:
        raise typer.Exit(code)


async def diverge_in_dashboard(recording: Recording, seq: int, db_url: str | None) -> int:
    """Open the normal dashboard on ``db_url`` (or the default database), import the recording there (skipped if it
    is there already) and diverge from its event ``seq``; returns the dashboard's exit code."""
    from tui.cli.dashboard import report_after

    url = db_url or db_url_or_default(None)
    dashboard = DivergingDashboard(recording, seq, url)
    result = await dashboard.app.run_async()
    return report_after(dashboard.app, url, result)


class DivergingDashboard:
    """The dashboard ``d`` in a replay hands over to: once its engine is up (the app's ``prepare`` step, before the
    main screen shows), the recording is imported into its database and the new workflow started there. Loading
    through the app's own engine means one opening of the database, so ``mem://`` works too."""

    def __init__(self, recording: Recording, seq: int, db_url: str) -> None:
        from tui.app import make_app

        self.recording = recording
        self.seq = seq
        #: The workflow the divergence started, once it has.
        self.workflow: str | None = None
        self.app = make_app(db_url=db_url, serve_controls=True, prepare=self._diverge)

    async def _diverge(self, engine: Engine) -> None:
        from engine.errors import ControlError
        from engine.recorder.load import load

        source = await load(engine.db, self.recording, if_exists="skip")
        try:
            self.workflow = await engine.diverge(source, self.seq)
        except ControlError as exc:  # the dashboard still opens, on the imported workflow
            self.app.notify(f"could not diverge from event {self.seq}: {exc}", severity="error", timeout=15)
