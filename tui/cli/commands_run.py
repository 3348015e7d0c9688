"""Commands that run work: demo, run, resume, ui, worker, validate, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tui.cli._common import not_yet

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (mem://, surrealkv://PATH, ws://HOST:PORT). Env: AGENTDECK_DB."),
]
RedisOption = Annotated[
    str | None, typer.Option("--redis", help="Redis URL for events and workers. Env: AGENTDECK_REDIS.")
]
HeadlessOption = Annotated[bool, typer.Option("--headless", help="Run without the dashboard.")]
JsonOption = Annotated[bool, typer.Option("--json", help="With --headless: one JSON event per line on stdout.")]


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(db: DbOption = None) -> None:
        """Open the dashboard running the bundled demo workflow (the main job)."""
        not_yet("demo")

    @app.command()
    def run(
        file: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
        db: DbOption = None,
        redis: RedisOption = None,
        headless: HeadlessOption = False,
        json: JsonOption = False,
        var: Annotated[
            list[str] | None, typer.Option("--var", help="KEY=VALUE handed to the workflow; repeatable.")
        ] = None,
    ) -> None:
        """Run a workflow file, in the dashboard or headless."""
        not_yet("run")

    @app.command()
    def resume(
        workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID")],
        headless: HeadlessOption = False,
        json: JsonOption = False,
    ) -> None:
        """Resume a paused, cancelled or crashed workflow from its last checkpoint."""
        not_yet("resume")

    @app.command()
    def ui(db: DbOption = None, redis: RedisOption = None) -> None:
        """Open the dashboard over stored state, or attached to a running engine."""
        not_yet("ui")

    @app.command()
    def worker(
        redis: Annotated[str, typer.Option("--redis", help="Redis URL to take tasks from.")],
        db: DbOption = None,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Tasks run at once.")] = 4,
    ) -> None:
        """Take tasks from Redis Streams and run them (scale-out)."""
        not_yet("worker")

    @app.command()
    def validate(file: Annotated[Path, typer.Argument(help="Workflow YAML file.")]) -> None:
        """Check a workflow file; errors are printed as file:line: message (exit code 2)."""
        not_yet("validate")

    @app.command()
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="A short run (seconds, not minutes).")] = False,
        json: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    ) -> None:
        """Run the benchmark suite and print the figures."""
        not_yet("bench")
