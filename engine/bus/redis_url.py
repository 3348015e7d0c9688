"""Redis URLs: checked before first use, and a failed connection told as a message and a hint, TLS included.

Every Redis user here (the bus, the worker dispatcher, ``agentdeck worker``) hands the URL to redis-py's
``from_url`` as given, query string and all. ``rediss://`` means TLS; the query carries what TLS needs:
``ssl_ca_certs=/path/ca.pem`` (the CA that signed the server's certificate, for a private CA),
``ssl_certfile`` / ``ssl_keyfile`` (a client certificate), ``ssl_cert_reqs``, ``ssl_check_hostname``.

``check`` builds what the first connection would build (the connection's settings and, for TLS, its SSL context,
which reads those files) without connecting, so a mistake in the URL is bad input at start (``BadRedisUrl``, exit
2) rather than a traceback at the first command. ``unreachable`` says why a server could not be used: refused
credentials, a TLS handshake that failed (a certificate not signed by a trusted CA, ``redis://`` against a TLS
port or ``rediss://`` against a plain one) or a server that is not there. Neither shows a password: not the one
in the URL's user part, nor one given as a query parameter.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.exceptions
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url

from db.connection import redact_url
from engine.bus.subscription import BusUnavailable

#: Query parameters whose values are secrets (``?password=`` is the same as the URL's password to redis-py).
SECRET_PARAMETERS = ("password", "ssl_password")
#: Query parameters that name files this machine must be able to read.
FILE_PARAMETERS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
_QUERY_SECRET = re.compile(r"([?&](?:password|ssl_password)=)[^&#]*", re.IGNORECASE)
_TLS_HINT = "rediss://HOST:PORT/DB?ssl_ca_certs=/path/to/ca.pem"
#: What Redis answers when it wants credentials it did not get (or got wrong).
_AUTH_WORDS = ("noauth", "authentication required", "hello must be called with the client already authenticated",
               "invalid username-password pair", "wrongpass", "invalid password")  # fmt: skip


class BadRedisUrl(BusUnavailable):
    """A Redis URL redis-py cannot use (a bad scheme or port, an unknown parameter, a TLS file that is not there):
    bad input, exit code 2 at the command line."""


def redact(url: str) -> str:
    """``url`` for messages and logs: its password, and any secret query parameter, shown as ``***``."""
    return _QUERY_SECRET.sub(r"\1***", redact_url(url))


def url_secrets(url: str) -> set[str]:
    """The secrets in ``url`` (its password, a ``password`` or ``ssl_password`` parameter), as written and decoded."""
    try:
        parts = urlsplit(url)
        found = {parts.password or ""}
    except ValueError:
        return set()
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name in SECRET_PARAMETERS:
            found.add(value)
    return {shown for secret in found for shown in (secret, unquote(secret))} - {""}


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def describe(exc: BaseException, url: str) -> str:
    """The reason Redis could not be reached, for one log line: never a password."""
    return scrub(str(exc).strip() or type(exc).__name__, url)


def check(url: str) -> None:
    """Raise ``BadRedisUrl`` unless redis-py can connect with ``url`` as written (nothing is connected here)."""
    shown = redact(url)
    try:
        settings: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise BadRedisUrl(f"bad Redis URL {shown}: {scrub(str(exc), url)}", hint="use redis://HOST:PORT/DB, "
                          f"or {_TLS_HINT} for TLS") from None  # fmt: skip
    tls = settings.get("connection_class") is SSLConnection
    for name in FILE_PARAMETERS:
        value = settings.get(name)
        if value is None:
            continue
        if not tls:
            raise BadRedisUrl(f"bad Redis URL {shown}: {name} is for TLS, and the URL is not rediss://",
                              hint=f"use {_TLS_HINT}")  # fmt: skip
        if not Path(str(value)).exists():
            raise BadRedisUrl(
                f"bad Redis URL {shown}: {name} names {value}, which does not exist on this machine",
                hint="give its path on this machine"
                + (" (the CA that signed the Redis server's certificate)" if name.startswith("ssl_ca") else ""),
            )
    connection_class: type[AbstractConnection] = settings.pop("connection_class", Connection)
    try:
        connection = connection_class(**settings)  # checks the settings; connects only when first used
        if isinstance(connection, SSLConnection):
            connection.ssl_context.get()  # reads the CA and certificate files
    except TypeError as exc:  # a query parameter redis-py does not take
        raise BadRedisUrl(f"bad Redis URL {shown}: {scrub(str(exc), url)}",
                          hint="see redis-py's from_url for the parameters it takes") from None  # fmt: skip
    except (redis.exceptions.RedisError, ssl.SSLError, OSError, ValueError) as exc:
        raise BadRedisUrl(f"bad Redis URL {shown}: {describe(exc, url)}", hint=f"use {_TLS_HINT} for TLS") from None


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first exception in its chain (cause or context) that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def unreachable(url: str, exc: BaseException) -> BusUnavailable:
    """What to tell the user when the first connection to Redis at ``url`` failed with ``exc`` (exit code 3)."""
    shown = redact(url)
    scheme = url.partition("://")[0].lower()
    if isinstance(exc, redis.exceptions.AuthenticationError) or any(w in str(exc).lower() for w in _AUTH_WORDS):
        given = "its credentials were refused" if "@" in url.split("//", 1)[-1] else "it requires a password"
        return BusUnavailable(
            f"Redis at {shown} refused this connection: {given}",
            hint="give them in the URL (redis://[USER]:PASSWORD@HOST:PORT, rediss:// for TLS); set it in "
            "AGENTDECK_REDIS to keep the password out of your shell history",
        )
    refused = _cause(exc, ssl.SSLCertVerificationError)
    if isinstance(refused, ssl.SSLCertVerificationError):
        why = refused.verify_message or refused.reason or str(refused)
        return BusUnavailable(
            f"cannot reach Redis at {shown}: TLS handshake failed: the server's certificate was not accepted "
            f"({scrub(str(why), url)})",
            hint=f"name the CA that signed the server's certificate in the URL: {_TLS_HINT} (and connect to a "
            "host name or address the certificate is for)",
        )
    if isinstance(_cause(exc, ssl.SSLError), ssl.SSLError):
        return BusUnavailable(
            f"cannot reach Redis at {shown}: TLS handshake failed: {describe(exc, url)}",
            hint="does that port serve TLS? rediss:// is for a server with TLS, redis:// for one without",
        )
    reason = describe(exc, url)
    reset = _cause(exc, ConnectionResetError) is not None or "closed by server" in reason.lower()
    if scheme == "redis" and reset:
        return BusUnavailable(
            f"cannot reach Redis at {shown}: the server closed the connection at once ({reason})",
            hint=f"a Redis that serves TLS on that port closes plain connections: use {_TLS_HINT}",
        )
    timed_out = _cause(exc, TimeoutError) is not None or _cause(exc, redis.exceptions.TimeoutError) is not None
    if scheme == "rediss" and timed_out:
        return BusUnavailable(
            f"cannot reach Redis at {shown}: no TLS handshake ({reason})",
            hint="a Redis without TLS on that port never answers one: use redis:// for it; otherwise start Redis, "
            "or point --redis / AGENTDECK_REDIS at a running server",
        )
    return BusUnavailable(
        f"cannot reach Redis at {shown}: {reason}",
        hint="start Redis, or point --redis / AGENTDECK_REDIS at a running server (or leave it unset)",
    )
