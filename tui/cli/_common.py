"""What every command shares: running async work, closing the DB, and turning errors into exit codes.

Exit codes (the contract in design.md): 0 success, 1 workflow failed or cancelled, 2 bad input,
3 infrastructure unreachable, 130 interrupted. A user's mistake never prints a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import typer

from db.errors import DatabaseUnavailable, SchemaMismatch

T = TypeVar("T")

EXIT_OK = 0
EXIT_WORKFLOW_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130


class BadInput(Exception):
    """Something the user gave us is wrong; the message says what and where (``file:line: message``)."""


def fail(message: str, code: int = EXIT_BAD_INPUT, hint: str = "") -> NoReturn:
    """Print ``agentdeck: message`` (and a hint) on stderr and exit with ``code``."""
    print(f"agentdeck: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    raise typer.Exit(code)


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh event loop, mapping our errors to exit codes.

    Every coroutine that opens a database does so with ``db.connect`` (an async context manager), so the
    engine is closed before ``asyncio.run`` returns and before interpreter teardown.
    """

    async def main() -> T:
        return await work()

    try:
        return asyncio.run(main())
    except DatabaseUnavailable as exc:
        fail(str(exc), EXIT_INFRA, exc.hint)
    except SchemaMismatch as exc:
        fail(str(exc), EXIT_INFRA)
    except BadInput as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as exc:
        from engine.bus import BusUnavailable

        if isinstance(exc, BusUnavailable):
            fail(str(exc), EXIT_INFRA, exc.hint)
        raise
    except KeyboardInterrupt:
        print("agentdeck: interrupted", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def not_yet(command: str) -> NoReturn:
    """For contract commands whose feature has not landed: a clear message and exit code 2."""
    fail(f"'{command}' is not yet available in this build of agentdeck", EXIT_BAD_INPUT)


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False))
