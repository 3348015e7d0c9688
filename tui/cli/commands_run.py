"""Commands that run work: demo, run, resume, ui, worker, validate, bench."""

from __future__ import annotations

import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from bench.sections import section_names
from tui.cli._common import EXIT_BAD_INPUT, DbOption, interrupted, parse_vars, run_async

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.spec import WorkflowSpec

RedisOption = Annotated[
    str | None, typer.Option("--redis", help="Redis URL for events and workers. Env: AGENTDECK_REDIS.")
]
HeadlessOption = Annotated[bool, typer.Option("--headless", help="Run without the dashboard.")]
JsonOption = Annotated[bool, typer.Option("--json", help="With --headless: one JSON event per line on stdout.")]
WatchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--watch",
        metavar="EXPR",
        help="A watchpoint armed from the start: pause when EXPR holds (e.g. 'node check runs >= 2'); repeatable.",
    ),
]

T = TypeVar("T")

# Files above this size take a second or more to check: say so, so a wait is not mistaken for a hang.
_ANNOUNCED_SIZE = 1024 * 1024


def exit_bad_input(exc: Exception) -> NoReturn:
    """Print a spec or usage error (already ``file:line: message``) and exit 2, without a traceback."""
    print(str(exc), file=sys.stderr)
    raise typer.Exit(EXIT_BAD_INPUT)


def load_checked(file: Path, var: list[str] | None) -> WorkflowSpec:
    """Load, validate and check that every agent can be built; any problem exits 2 with file:line: message.

    Ctrl-C while a big file is being checked exits 130 with one line, like Ctrl-C anywhere else.
    """
    try:
        from engine.agents import AgentUnavailable, check_agents
        from engine.spec import SpecError, load_workflow

        _announce_if_big(file)
        variables = parse_vars(var)

        def check() -> WorkflowSpec:
            spec = load_workflow(file, variables)  # runs validate_graph's checks too
            check_agents(spec)
            return spec

        spec = _interruptible(check)
    except KeyboardInterrupt:
        interrupted()
    except AgentUnavailable as exc:
        exit_bad_input(Exception(f"{file}: {exc}"))
    except (SpecError, ValueError) as exc:
        exit_bad_input(exc)
    return spec


def _interruptible(work: Callable[[], T]) -> T:
    """Run ``work`` in a daemon thread while this one waits, so Ctrl-C lands during the YAML parse (native code
    that sees no signal until it returns: seconds on a file of several MB, far longer on a busy machine).
    Interrupted, the process exits and the thread with it; its errors are raised here."""
    box: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # handed to the waiting thread, which reports it
            failure.append(exc)

    thread = threading.Thread(target=target, name="agentdeck-check", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)
    if failure:
        raise failure[0]
    return box[0]


def _announce_if_big(file: Path) -> None:
    from engine.spec import MAX_FILE_BYTES  # a bigger file is refused at once

    try:
        info = file.stat()
    except OSError:
        return  # the loader says what is wrong with it
    if stat.S_ISREG(info.st_mode) and _ANNOUNCED_SIZE < info.st_size <= MAX_FILE_BYTES:
        print(f"agentdeck: checking {file} ({info.st_size / 1e6:.1f} MB)…", file=sys.stderr, flush=True)


def check_settings() -> None:
    """Read the ``AGENTDECK_*`` settings now, so a bad one is reported before a database is opened."""
    from db.settings import DbSettings
    from engine.sandbox.e2b_settings import e2b_settings
    from engine.settings import EngineSettings
    from engine.workers.protocol import WorkerSettings

    DbSettings()
    EngineSettings()
    e2b_settings()
    WorkerSettings()


def with_watches(spec: WorkflowSpec, watch: list[str] | None) -> WorkflowSpec:
    """``spec`` with the ``--watch`` expressions added to its workflow-level ``watch:`` (a bad one exits 2 with
    its column), so they are armed before the first task starts and kept with the workflow like declared ones."""
    if not watch:
        return spec
    from engine.spec import WatchSpec
    from tui.cli.commands_watch import check_expression

    for expr in watch:
        check_expression(expr, "--watch")
    return spec.model_copy(update={"watch": [*spec.watch, *(WatchSpec(when=expr) for expr in watch)]})


def check_sandboxes(spec: WorkflowSpec, redis: str | None = None) -> None:
    """Exit before anything starts when the workflow's sandboxes cannot be used here: 3 for E2B without a key, 2
    for ``sandbox: worker`` with no Redis given."""
    from tui.cli.sandbox_check import check_sandboxes as check

    check(spec, redis)


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(db: DbOption = None, watch: WatchOption = None) -> None:
        """Open the dashboard running the bundled demo workflow (the main job)."""
        from tui.cli.dashboard import DEMO, need_a_terminal, run_dashboard

        need_a_terminal()
        check_settings()
        spec = with_watches(load_checked(DEMO, None), watch)
        check_sandboxes(spec)
        raise typer.Exit(run_async(lambda: run_dashboard(db, None, spec)))

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
        watch: WatchOption = None,
    ) -> None:
        """Run a workflow file, in the dashboard or headless."""
        from tui.cli.headless import run_in_foreground

        check_settings()
        spec = with_watches(load_checked(file, var), watch)
        check_sandboxes(spec, redis)
        variables = parse_vars(var)
        if not headless:
            from tui.cli.dashboard import need_a_terminal, run_dashboard

            need_a_terminal()
            raise typer.Exit(run_async(lambda: run_dashboard(db, redis, spec, variables)))

        async def start(engine: Engine) -> str:
            return await engine.submit(spec, variables)

        raise typer.Exit(run_async(lambda: run_in_foreground(db, redis, json, start)))

    @app.command()
    def resume(
        workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID")],
        headless: HeadlessOption = False,
        json: JsonOption = False,
        db: DbOption = None,
    ) -> None:
        """Resume a paused, cancelled or crashed workflow from its last checkpoint."""
        from tui.cli.control import resume_command

        raise typer.Exit(resume_command(workflow_id, db, json))

    @app.command()
    def ui(db: DbOption = None, redis: RedisOption = None) -> None:
        """Open the dashboard over stored state (history, checkpoints, past output)."""
        from tui.cli.dashboard import need_a_terminal, run_dashboard

        need_a_terminal()
        raise typer.Exit(run_async(lambda: run_dashboard(db, redis)))

    @app.command()
    def worker(
        redis: Annotated[str, typer.Option("--redis", help="Redis URL to take tasks from.")],
        db: DbOption = None,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Tasks run at once.")] = 4,
    ) -> None:
        """Take task commands from Redis Streams and run them (scale-out): see README, Running on more than one
        machine."""
        from tui.cli.worker import run_worker

        raise typer.Exit(run_worker(redis, concurrency))

    @app.command()
    def validate(
        file: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
        var: Annotated[
            list[str] | None, typer.Option("--var", help="KEY=VALUE for ${{ vars.KEY }}; repeatable.")
        ] = None,
    ) -> None:
        """Check a workflow file; errors are printed as file:line: message (exit code 2)."""
        spec = load_checked(file, var)
        print(f"{file}: ok — workflow {spec.name!r}, {len(spec.tasks)} tasks, {len(spec.agents)} agents")

    @app.command()
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="A short run (seconds, not minutes).")] = False,
        json: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
        only: Annotated[
            list[str] | None,
            typer.Option(
                "--only",
                help=f"Run only this section ({', '.join(section_names())}); repeatable.",
            ),
        ] = None,
    ) -> None:
        """Run the benchmark suite and print the figures."""
        from bench.runner import main as bench_main

        raise typer.Exit(bench_main(quick=quick, json_path=json, only=only))
