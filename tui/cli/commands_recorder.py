"""The flight recorder's commands: ``agentdeck export ID -o FILE`` writes one workflow's whole history to a file,
``agentdeck import FILE`` loads one into a database (the format: docs/recording-format.md).

A damaged, cut-short, foreign or too-new file is bad input (exit 2, one line saying what and where); an unreachable
database is exit 3, as everywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tui.cli._common import BadInput, DbOption, db_url_or_default, run_async

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The workflow to export.")]
OutputOption = Annotated[
    Path, typer.Option("-o", "--output", metavar="FILE", help="Where to write the recording (replaced if it exists).")
]
FileArg = Annotated[Path, typer.Argument(metavar="FILE", help="A recording written by `agentdeck export`.")]


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import")(import_command)


def _plural(count: int, what: str, many: str | None = None) -> str:
    return f"{count} {what if count == 1 else many or what + 's'}"


def export_command(workflow_id: IdArg, output: OutputOption, db: DbOption = None) -> None:
    """Write a workflow's flight recording: its spec, every event, tasks, checkpoints, graph checkpoints and memories
    (compressed; secrets stay redacted)."""
    url = db_url_or_default(db)

    async def work() -> None:
        from db import connect
        from engine.recorder.collect import UnknownWorkflow, collect, is_live
        from engine.recorder.fileformat import write_recording

        async with connect(url) as database:
            try:
                rec = await collect(database, workflow_id)
            except UnknownWorkflow as exc:
                raise BadInput(f"agentdeck: {exc}") from None
        if is_live(rec):
            last = rec.events[-1].seq if rec.events else 0
            print(
                f"agentdeck: workflow {workflow_id} is {rec.workflow.status} (not finished): the recording holds what "
                f"was stored up to now (events up to seq {last})",
                file=sys.stderr,
            )
        try:
            counts = write_recording(rec, output)
        except OSError as exc:
            raise BadInput(f"agentdeck: cannot write {output}: {exc.strerror or exc}") from None
        print(
            f"wrote {output}: workflow {workflow_id} ({rec.workflow.status}), "
            + ", ".join(
                [
                    _plural(counts["event"], "event"),
                    _plural(counts["task"], "task"),
                    _plural(counts["checkpoint"], "checkpoint"),
                    _plural(counts["graph_checkpoint"], "graph checkpoint row"),
                    _plural(counts["memory"], "memory", "memories"),
                ]
            )
        )

    run_async(work)


def import_command(file: FileArg, db: DbOption = None) -> None:
    """Load a flight recording into the database; prints the workflow's id."""
    url = db_url_or_default(db)

    async def work() -> None:
        from db import connect
        from engine.recorder.fileformat import RecordingError, read_recording
        from engine.recorder.load import AlreadyImported, imported_workflow, load

        try:
            rec = read_recording(file)
        except RecordingError as exc:
            raise BadInput(f"agentdeck: {exc}") from None
        except OSError as exc:
            raise BadInput(f"agentdeck: cannot read {file}: {exc.strerror or exc}") from None
        async with connect(url) as database:
            try:
                workflow_id = await load(database, rec)
            except AlreadyImported as exc:
                raise BadInput(f"agentdeck: {exc}") from None
        status = imported_workflow(rec.workflow).status
        was = rec.workflow.status
        note = "" if status == was else f" (was {was}: continue it with `agentdeck resume {workflow_id}`)"
        print(f"agentdeck: imported {_plural(len(rec.events), 'event')}; workflow {status}{note}", file=sys.stderr)
        print(workflow_id)

    run_async(work)
