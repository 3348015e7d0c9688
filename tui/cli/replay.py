"""``agentdeck replay FILE [--speed N] [--db URL]``: a flight recording on the dashboard, with no engine.

A damaged or foreign file is bad input (exit 2, the recorder's one line). When the person diverges (``d``), the
recording is imported into the database (``--db``, or the default one; skipped if it is there already), the
normal dashboard opens on it, and the new workflow starts from the chosen moment (``Engine.diverge``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tui.cli._common import EXIT_OK, BadInput, DbOption, db_url_or_default, run_async

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

        request = await make_replay_app(recording, str(file), speed).run_async()
        if request is None:
            return EXIT_OK
        return await diverge_in_dashboard(recording, request.seq, url)

    code = run_async(work)
    if code:
        raise typer.Exit(code)


async def diverge_in_dashboard(recording: object, seq: int, db_url: str | None) -> int:
    """Import the recording (if it is not there yet), open the dashboard on it and diverge from event ``seq``."""
    from db import connect
    from engine.engine import Engine
    from engine.recorder.load import load
    from engine.recorder.model import Recording
    from tui.app import make_app

    assert isinstance(recording, Recording)
    url = db_url or db_url_or_default(None)
    async with connect(url) as database:
        workflow_id = await load(database, recording, if_exists="skip")

    async def diverge(engine: Engine) -> None:
        await engine.diverge(workflow_id, seq)

    app = make_app(db_url=url, serve_controls=True, prepare=diverge)
    result = await app.run_async()
    if app.failure is not None:
        raise app.failure
    return result if isinstance(result, int) else EXIT_OK
