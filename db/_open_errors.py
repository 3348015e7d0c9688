"""Why a database could not be opened, said for people: the `DatabaseUnavailable` (message and hint, exit code 3)
``db.connection.open_database`` raises for each reason, and the redaction that keeps passwords out of it.

``redact_url`` and ``redact_text`` are imported from ``db.connection`` by the rest of the code.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from db.errors import DatabaseUnavailable, QueryFailed
from db.settings import DbSettings

# "//user:password@" in a URL. The password runs to the last "@": people do not always escape "@" or "/" in it,
# and hiding too much of an odd URL is better than showing a password.
_USERINFO_PASSWORD = re.compile(r"(//[^/:@]*:).*@")
#: A server refusing a session the right to run statements. SurrealDB 3 answers an anonymous session's query with
#: one RPC error, "Anonymous access not allowed: Not enough permissions to perform this action"; 2.x, and 3 for a
#: signed-in user without the rights, fail each statement with "IAM error: Not enough permissions to perform ...".
_NOT_PERMITTED = "Not enough permissions"
_CREDENTIALS = "AGENTDECK_DB_USER and AGENTDECK_DB_PASS (or AGENTDECK_DB_TOKEN)"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs (even when the URL is malformed)."""
    return _USERINFO_PASSWORD.sub(r"\1***@", url)


def redact_text(text: str, url: str) -> str:
    """``text`` (an error from the SDK, say) with the URL's password replaced by ``***`` wherever it appears."""
    found = _USERINFO_PASSWORD.search(url)
    if found is None:
        return text
    password = url[found.end(1) : found.end() - 1]
    for shown in {password, unquote(password)} - {""}:
        text = text.replace(shown, "***")
    return text


def unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    """Connecting, signing in or choosing the namespace failed with ``exc``."""
    text = redact_text(str(exc), url) or type(exc).__name__
    shown = redact_url(url)
    if "already locked" in text or "LOCK" in text:
        return DatabaseUnavailable(
            f"the database {shown} is in use by another agentdeck process",
            hint="stop that process, or point --db / AGENTDECK_DB at another location",
        )
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable(f"timed out connecting to {shown}", hint="is the SurrealDB server running?")
    if "auth" in text.lower() or "credentials" in text.lower() or "signin" in text.lower():
        return DatabaseUnavailable(f"the server at {shown} refused our credentials", hint=f"check {_CREDENTIALS}")
    return DatabaseUnavailable(
        f"cannot open the database {shown}: {text.splitlines()[0]}",
        hint="check the URL (--db / AGENTDECK_DB) and that the server is running",
    )


def not_permitted(url: str, settings: DbSettings, exc: QueryFailed) -> DatabaseUnavailable | None:
    """The server refused the first statements (the migrations) for want of rights: say whether credentials are
    missing or the configured ones lack the rights. None for any other failure. Neither user nor password shown."""
    if _NOT_PERMITTED not in str(exc):
        return None
    shown = redact_url(url)
    if settings.db_token is None and not settings.db_user:
        return DatabaseUnavailable(
            f"the server at {shown} requires credentials, and none are set",
            hint=f"set {_CREDENTIALS} to a user of that server",
        )
    where = f"namespace {settings.db_namespace!r}, database {settings.db_database!r}"
    return DatabaseUnavailable(
        f"the server at {shown} does not let the configured user define agentdeck's tables in {where} "
        "(not enough permissions)",
        hint=f"give {_CREDENTIALS} a user with the OWNER or EDITOR role there, or choose another namespace and "
        "database (AGENTDECK_DB_NAMESPACE, AGENTDECK_DB_DATABASE)",
    )
