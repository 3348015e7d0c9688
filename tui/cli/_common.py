"""What every command shares: running async work, closing the DB, and turning errors into exit codes.

Exit codes (the contract in design.md): 0 success, 1 workflow failed or cancelled, 2 bad input,
3 infrastructure unreachable, 130 interrupted. A user's mistake never prints a traceback.

Nothing heavy is imported at module level: ``agentdeck --help`` and ``validate`` should start in a fraction of a
second, and a Ctrl-C during a slow import would print a traceback before any handler is in place.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer

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


def interrupted() -> NoReturn:
    print("agentdeck: interrupted", file=sys.stderr)
    raise typer.Exit(EXIT_INTERRUPTED)


def exit_for(exc: BaseException) -> NoReturn:
    """Exit with the code and message for an error we know (bad input, bad settings, infrastructure); else re-raise.

    Used by `run_async` and by the console entry point, so an error raised outside the event loop (a bad
    ``AGENTDECK_*`` variable read while a command starts) is reported the same way. Imports nothing: an error
    class whose module was never imported cannot be what was raised.
    """
    if isinstance(exc, KeyboardInterrupt):
        interrupted()
    if isinstance(exc, BadInput):
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if _is(exc, "db.settings", "SettingsError"):
        fail(str(exc), EXIT_BAD_INPUT)
    if _is(exc, "db.errors", "BadDatabaseUrl") or _is(exc, "engine.bus", "BadRedisUrl"):
        fail(str(exc), EXIT_BAD_INPUT, getattr(exc, "hint", ""))
    if _is(exc, "db.errors", "DatabaseUnavailable") or _is(exc, "engine.bus", "BusUnavailable"):
        fail(str(exc), EXIT_INFRA, getattr(exc, "hint", ""))
    if _is(exc, "db.errors", "SchemaMismatch"):
        fail(str(exc), EXIT_INFRA)
    raise exc


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh event loop, mapping our errors to exit codes.

    Every coroutine that opens a database does so with ``db.connect`` (an async context manager), so the
    engine is closed before ``asyncio.run`` returns and before interpreter teardown.
    """

    async def main() -> T:
        return await work()

    try:
        return asyncio.run(main())
    except (Exception, KeyboardInterrupt) as exc:
        exit_for(exc)


def check_db_option(value: str | None) -> str | None:
    """``--db`` as given, refused at once when it cannot be a database URL (``--db ""``, ``surrealkv://``)."""
    if value is None:
        return None
    from db.connection import url_kind
    from db.errors import BadDatabaseUrl

    try:
        url_kind(value)
    except BadDatabaseUrl as exc:
        raise BadInput(f"agentdeck: --db: {exc} ({exc.hint})") from None
    return value


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        callback=check_db_option,
        help="Database URL (mem://, surrealkv://PATH, ws://HOST:PORT). Env: AGENTDECK_DB.",
    ),
]


def db_url_or_default(flag: str | None) -> str:
    """The database URL: the ``--db`` flag when given (even if empty: that is an error, not the default), else
    ``AGENTDECK_DB``, else the embedded default."""
    if flag is not None:
        return flag
    from db.connection import url_kind
    from db.errors import BadDatabaseUrl
    from db.settings import DbSettings

    url = DbSettings().db
    try:
        url_kind(url)
    except BadDatabaseUrl as exc:
        raise BadInput(f"agentdeck: AGENTDECK_DB: {exc} ({exc.hint})") from None
    return url


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    """``--var KEY=VALUE`` pairs; raises ``ValueError`` naming a malformed one."""
    return parse_pairs(pairs, "--var")


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs given to ``option``; raises ``ValueError`` naming a malformed one."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False))
