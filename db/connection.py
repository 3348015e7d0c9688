"""Opening, using and closing the one SurrealDB connection a process holds.

``connect(url)`` understands ``mem://`` (tests), ``surrealkv://PATH`` (the embedded default, a directory created
if missing) and ``ws://`` / ``wss://`` servers. It applies the schema migrations before handing the connection
out, and it closes the engine deliberately on the way out: an embedded SurrealDB left open at interpreter
teardown can print a Rust panic or abort the process, so nothing may rely on garbage collection to close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import surrealdb
from surrealdb import AsyncSurreal
from surrealdb.connections.async_embedded import AsyncEmbeddedSurrealConnection
from surrealdb.connections.utils_mixin import mapped_engine_errors

from db import _cbor
from db._aio import keep_cancellation
from db._commits import CommitSignal
from db._memtable_flush import install as flush_by_reopening
from db._open_errors import not_permitted, unavailable
from db._open_errors import redact_text as redact_text
from db._open_errors import redact_url as redact_url
from db.errors import BadDatabaseUrl, DatabaseUnavailable, QueryFailed
from db.settings import DbSettings

Kind = Literal["memory", "file", "server"]

_EMBEDDED_FILE_SCHEMES = ("surrealkv://", "surrealkv+versioned://", "file://", "rocksdb://")
_CONNECT_TIMEOUT_S = 10.0
#: How often ``write_one`` runs a statement whose transaction conflicted with another writer's.
_CONFLICT_TRIES = 6
# The schemes the embedded engine opens with surrealkv (file:// is its alias).
_SURREALKV_SCHEMES = ("surrealkv://", "surrealkv+versioned://", "file://")


def url_kind(url: str) -> Kind:
    """Classify a database URL.

    Raises:
        BadDatabaseUrl: An empty URL, an unknown scheme, a file scheme without a path or a server without a host.
    """
    if url in ("mem://", "memory", "memory://") or url.startswith("mem://"):
        return "memory"
    if url.startswith(_EMBEDDED_FILE_SCHEMES):
        scheme, _, path = url.partition("://")
        if not path.strip():
            raise BadDatabaseUrl(
                f"the database URL {url!r} has no path", hint=f"write it as {scheme}:///path/to/state.db"
            )
        return "file"
    if url.startswith(("ws://", "wss://")):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not host:
            raise BadDatabaseUrl(f"the database URL {redact_url(url)!r} has no host", hint="write it as ws://HOST:PORT")
        return "server"
    raise BadDatabaseUrl(
        f"unsupported database URL {redact_url(url)!r}" if url else "the database URL is empty",
        hint="use mem://, surrealkv://PATH, ws://HOST:PORT or wss://HOST:PORT",
    )


def embedded_path(url: str) -> Path | None:
    """The directory an embedded file URL points at, or None for memory and servers."""
    for scheme in _EMBEDDED_FILE_SCHEMES:
        if url.startswith(scheme):
            return Path(url[len(scheme) :])
    return None


@dataclass(frozen=True)
class Prepared:
    """A query with its parameters, encoded ahead of running it (``Database.prepare``)."""

    sql: str
    params: dict[str, Any]
    #: The embedded engine's CBOR request frame; None where the SDK encodes (servers).
    frame: bytes | None


class Database:
    """One open connection: runs SurrealQL and reports each statement's result or error."""

    def __init__(self, conn: Any, url: str, kind: Kind) -> None:
        self._conn = conn
        self.url = url
        self.kind: Kind = kind
        self._closed = False
        # Embedded engines get their frames from our compiled codec (db/_cbor.py) rather than the SDK's Python one;
        # servers keep the SDK, which has no supported place to plug a codec into its websocket. False sends
        # every query through the SDK, which is what `agentdeck bench` compares against.
        self.native_codec = isinstance(conn, AsyncEmbeddedSurrealConnection)
        # Each query that may write is announced when it finishes: embedded change watchers (db/watch.py) wake on
        # it instead of polling, since nothing but this connection writes an embedded store.
        self.commits = CommitSignal()
        # Servers: signs in and selects the namespace and database again. The SDK reconnects a dropped websocket
        # by itself, into a new session that has neither, and every query then fails with "Specify a namespace" (or,
        # on a server that requires credentials, "Anonymous access not allowed").
        self._start_session: Callable[[], Awaitable[None]] | None = None
        #: Whether every write to the store goes through this connection (so ``commits`` sees them all): true of
        #: an embedded store we hold; not of a server, nor of a dashboard attached to another process's engine.
        self.sees_every_commit = self.is_embedded
        #: Makes this database's change watcher, where ``db.watch.watcher_for`` cannot (an attached dashboard's
        #: changes are watched by the engine it is attached to).
        self.watcher_factory: Callable[[Database], Any] | None = None

    @property
    def sdk(self) -> Any:
        """The underlying SDK connection (for live queries on servers)."""
        return self._conn

    @property
    def is_embedded(self) -> bool:
        return self.kind != "server"

    @property
    def supports_live_queries(self) -> bool:
        """Embedded SurrealDB in Python has no live queries; servers do."""
        return self.kind == "server"

    @property
    def closed(self) -> bool:
        return self._closed

    async def query(self, sql: str, vars: Mapping[str, Any] | None = None) -> list[Any]:
        """Run one or more statements and return each statement's result, in order.

        Raises:
            QueryFailed: if any statement failed; the message names the first failure.
            DatabaseUnavailable: if the connection broke.
        """
        return await self.run(self.prepare(sql, vars))

    def prepare(self, sql: str, vars: Mapping[str, Any] | None = None) -> Prepared:
        """``sql`` with its parameters, encoded now for running later (``run``): a writer encodes its next batch
        while the engine executes the one before. Raises what encoding raises (``TypeError``, ``ValueError``)."""
        params = dict(vars or {})
        frame = _cbor.encode_query(str(uuid.uuid4()), sql, params) if self.native_codec else None
        return Prepared(sql, params, frame)

    async def run(self, prepared: Prepared) -> list[Any]:
        """Run a prepared query; as ``query``."""
        try:
            return await self._query(prepared)
        except QueryFailed as exc:
            if self._start_session is None or not _session_lost(exc):
                raise
        # The server connection came back as a new session (the statement did not run): restore it, run it again.
        try:
            await self._start_session()
        except (surrealdb.SurrealError, OSError) as exc:
            lost = f"lost the database session: {self._said(exc)}"
            raise DatabaseUnavailable(lost, hint="is the server still up?") from exc
        return await self._query(prepared)

    def _said(self, exc: BaseException) -> str:
        """An SDK error for a message or a log line: the SDK names the URL it lost, password and all."""
        return redact_text(str(exc), self.url)

    async def _query(self, prepared: Prepared) -> list[Any]:
        if self._closed:
            raise DatabaseUnavailable("the database connection is closed")
        sql = prepared.sql
        write = self.commits.begin(sql)
        try:
            if prepared.frame is not None:
                response = await self._query_embedded(prepared.frame, sql)
            else:
                # The ws SDK waits for its reply with asyncio.wait_for, which on 3.11 swallows a cancellation that
                # lands as the reply arrives: a cancelled change watcher then ran on for good.
                response = await keep_cancellation(self._conn.query_raw(sql, prepared.params))
        except surrealdb.ConnectionUnavailableError as exc:
            raise DatabaseUnavailable(f"lost the database: {self._said(exc)}", hint="is the server still up?") from exc
        except (surrealdb.TransportError, OSError) as exc:
            raise DatabaseUnavailable(f"lost the database: {self._said(exc)}", hint="is the server still up?") from exc
        except surrealdb.SurrealError as exc:
            raise QueryFailed(f"{exc}\n  in: {_first_line(sql)}") from exc
        finally:
            self.commits.end(write)
        if "error" in response:
            raise QueryFailed(f"{response['error'].get('message')}\n  in: {_first_line(sql)}")
        results: list[Any] = []
        for index, statement in enumerate(response.get("result") or []):
            if statement.get("status") != "OK":
                raise QueryFailed(f"statement {index + 1} failed: {statement.get('result')}\n  in: {sql.strip()}")
            results.append(statement.get("result"))
        return results

    async def _query_embedded(self, frame: bytes, sql: str) -> dict[str, Any]:
        """What the SDK's ``query_raw`` does on an embedded engine, with db/_cbor.py as the codec.

        The same frame (``prep_query``: id, ``query``, ``[sql, params]``) to the same native ``execute``, the
        engine's failures mapped as the SDK's ``_send`` maps them (``RuntimeError`` becomes
        ``ConnectionUnavailableError``), and the reply decoded to the values the SDK returns; encode and decode
        errors are raised outside the mapping there too.
        """
        with mapped_engine_errors("query"):
            reply = await self._conn._db.execute(frame)
        response = _cbor.decode(reply)
        return response if isinstance(response, dict) else {}

    async def execute_frame(self, sql: str, frame: bytes) -> bytes:
        """Run a query frame another process encoded (``_cbor.encode_query``) and return the engine's reply
        undecoded: how an engine serves the dashboards attached to it (``engine.control_service``).

        Raises:
            QueryFailed: this is not an embedded engine (servers are reached directly).
            DatabaseUnavailable: the connection is closed or broke.
        """
        if not self.native_codec:
            raise QueryFailed("only an embedded database runs encoded query frames")
        if self._closed:
            raise DatabaseUnavailable("the database connection is closed")
        write = self.commits.begin(sql)
        try:
            with mapped_engine_errors("query"):
                reply: bytes = await self._conn._db.execute(frame)
        except surrealdb.ConnectionUnavailableError as exc:
            raise DatabaseUnavailable(f"lost the database: {self._said(exc)}") from exc
        finally:
            self.commits.end(write)
        return reply

    async def query_one(self, sql: str, vars: Mapping[str, Any] | None = None) -> Any:
        """Run statements and return the last one's result."""
        results = await self.query(sql, vars)
        return results[-1] if results else None

    async def write_one(self, sql: str, vars: Mapping[str, Any] | None = None) -> Any:
        """``query_one`` for ONE write statement from outside the state writer, run again when the key-value store
        refused its transaction for a conflict with another writer's ("can be retried": nothing of it was stored).
        On a file database, tables with a change feed conflict so now and then with the engine's batches."""
        for attempt in range(_CONFLICT_TRIES):
            try:
                return await self.query_one(sql, vars)
            except QueryFailed as exc:
                if "can be retried" not in str(exc) or attempt == _CONFLICT_TRIES - 1:
                    raise
                await asyncio.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the engine; idempotent. Always awaited before the event loop ends."""
        if self._closed:
            return
        self._closed = True
        # Closing a broken connection must not mask the error that brought us here.
        with contextlib.suppress(Exception):
            await self._conn.close()
        if self.is_embedded:
            _release_native_engine(self._conn)


def decode_frame(frame: bytes) -> Any:
    """A query frame (or reply) as values: the attached-dashboard protocol ships frames undecoded."""
    return _cbor.decode(frame)


def _session_lost(exc: QueryFailed) -> bool:
    """A server's refusal of a reconnected session: it has no namespace or database selected, or, where the server
    requires credentials, is not signed in (SurrealDB 3 then refuses the whole request before running any of it)."""
    text = str(exc)
    return "Specify a namespace" in text or "Specify a database" in text or "Anonymous access not allowed" in text


def _release_native_engine(conn: Any) -> None:
    """Drop the embedded engine's native handle now, while the interpreter is whole.

    The SDK's ``close()`` shuts the datastore down but keeps its native handle, which is then freed during
    interpreter teardown; its destructor calls back into a half-finalised Python and the Rust side aborts
    ("panic in a function that cannot unwind", exit code 134). Measured on surrealkv with 200 writes:
    4 unclean exits in 20 with close() alone, 0 in 20 once the handle is dropped and collected here.
    ``tests/integration/test_clean_exit.py`` keeps it so.
    """
    if hasattr(conn, "_db"):
        conn._db = None
    gc.collect()


def _first_line(sql: str) -> str:
    line = sql.strip().splitlines()[0] if sql.strip() else ""
    return line[:160]


async def open_database(url: str | None = None, settings: DbSettings | None = None) -> Database:
    """Open and migrate a database; the caller must ``await db.close()``. Prefer ``connect()``."""
    settings = settings or DbSettings()
    url = url or settings.db
    kind = url_kind(url)
    path = embedded_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the database directory {path.parent}: {exc.strerror}",
                hint="pass --db with a writable location, or set AGENTDECK_DB",
            ) from exc
    try:
        conn = AsyncSurreal(url)
    except surrealdb.ConnectionUnavailableError as exc:
        raise unavailable(url, exc) from exc
    except surrealdb.SurrealError as exc:
        raise DatabaseUnavailable(f"cannot open {redact_url(url)}: {redact_text(str(exc), url)}") from exc
    db = Database(conn, url, kind)

    async def start_session() -> None:
        # A refusal is said without the token or password, should the server echo them; a lost connection is not one.
        if kind == "server" and settings.db_token is not None:
            token = settings.db_token.get_secret_value()
            try:
                await conn.authenticate(token)
            except surrealdb.ServerError as exc:
                raise surrealdb.SurrealError(f"authentication failed: {str(exc).replace(token, '***')}") from None
        elif kind == "server" and settings.db_user:
            password = settings.db_pass.get_secret_value() if settings.db_pass else ""
            try:
                await conn.signin({"username": settings.db_user, "password": password})
            except surrealdb.ServerError as exc:
                shown = str(exc).replace(password, "***") if password else str(exc)
                raise surrealdb.SurrealError(f"signin failed: {shown}") from None
        await conn.use(settings.db_namespace, settings.db_database)

    try:
        await asyncio.wait_for(conn.connect(), _CONNECT_TIMEOUT_S)
        await start_session()
        if kind == "server":
            db._start_session = start_session
        if url.startswith(_SURREALKV_SCHEMES):
            # surrealkv never flushes a memtable while this engine runs, so writes would hang for good after
            # two full ones (issue 9): reopen the engine to flush before that (db/_memtable_flush.py).
            flush_by_reopening(conn, url, settings.db_namespace, settings.db_database)
    except (surrealdb.SurrealError, OSError, TimeoutError) as exc:
        await db.close()
        raise unavailable(url, exc) from exc
    except BaseException:
        await db.close()
        raise
    try:
        from db.migrate import apply_migrations

        await apply_migrations(db, settings.embedding_dimension)
    except QueryFailed as exc:  # the first statements a session runs: a server without credentials refuses them
        await db.close()
        refused = not_permitted(url, settings, exc)
        if refused is None:
            raise
        raise refused from exc
    except BaseException:
        await db.close()
        raise
    return db


@asynccontextmanager
async def connect(url: str | None = None, settings: DbSettings | None = None) -> AsyncIterator[Database]:
    """Open, migrate and — always, even on error or cancellation — close a database.

    Raises:
        DatabaseUnavailable: the DB is locked by another process, the URL is bad, or the server is down.
    """
    db = await open_database(url, settings)
    try:
        yield db
    finally:
        await db.close()
