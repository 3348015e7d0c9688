"""What opening a database says when a server refuses our statements for want of rights (db/_open_errors.py): no
credentials set, or credentials without the rights; never the user or password. The refusal itself, from a server,
is in tests/integration/test_server_auth_required.py."""

from __future__ import annotations

from db._open_errors import not_permitted
from db.errors import QueryFailed
from db.settings import DbSettings

URL = "ws://db.example:8000"
ANONYMOUS = QueryFailed("Anonymous access not allowed: Not enough permissions to perform this action\n  in: DEFINE")
IAM = QueryFailed("statement 1 failed: IAM error: Not enough permissions to perform this action\n  in: DEFINE")


def test_without_credentials_it_says_the_server_requires_them() -> None:
    refused = not_permitted(URL, DbSettings(db_user=None, db_pass=None, db_token=None), ANONYMOUS)
    assert refused is not None
    assert str(refused) == f"the server at {URL} requires credentials, and none are set"
    assert (
        refused.hint == "set AGENTDECK_DB_USER and AGENTDECK_DB_PASS (or AGENTDECK_DB_TOKEN) to a user of that server"
    )


def test_with_credentials_it_says_they_lack_the_rights_without_showing_them() -> None:
    settings = DbSettings(db_user="alice-the-user", db_pass="s3cret-pass", db_namespace="ns1", db_database="db1")  # type: ignore[arg-type]
    refused = not_permitted(URL, settings, IAM)
    assert refused is not None
    said = f"{refused} {refused.hint}"
    assert "does not let the configured user define agentdeck's tables in namespace 'ns1', database 'db1'" in said
    assert "OWNER or EDITOR" in said
    assert "alice-the-user" not in said and "s3cret-pass" not in said


def test_any_other_failure_is_left_as_it_is() -> None:
    assert not_permitted(URL, DbSettings(), QueryFailed("Parse error: unexpected token\n  in: DEFINE")) is None
