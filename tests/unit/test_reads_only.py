"""What an attached dashboard may ask its owner to run (``db._commits.reads_only``): reads only — a write anywhere
in the text, also nested in a subquery, is refused; a value or a field name that merely contains such a word is not."""

from __future__ import annotations

import pytest

from db._commits import reads_only

WRITES = [
    "RETURN (CREATE thing:2)",
    "SELECT * FROM (UPDATE thing SET a = 99)",
    "RETURN { DELETE thing:1 }",
    "select*FROM (UPSERT thing:4)",
    "SELECT * FROM thing WHERE (CREATE thing:3) != NONE",
    "SELECT * FROM x; DELETE x",
    "LET $x = 1; SELECT * FROM $x",
    "BEGIN; SELECT * FROM x; COMMIT",
    "INSERT INTO x {a: 1}",
    "",
]

READS = [
    "SELECT * FROM task WHERE workflow = $w AND note = 'delete me'",
    'SELECT * FROM memory WHERE content CONTAINS "create; update"',
    "SELECT updated_at, created_at FROM workflow ORDER BY created_at DESC LIMIT 50",
    "SHOW CHANGES FOR TABLE task SINCE 1 LIMIT 1000",
    "RETURN time::now()",
    "SELECT * FROM event WHERE workflow = $w -- update later\nORDER BY seq",
]


@pytest.mark.parametrize("sql", WRITES)
def test_a_write_anywhere_is_refused(sql: str) -> None:
    assert not reads_only(sql)


@pytest.mark.parametrize("sql", READS)
def test_reads_pass_whatever_their_values_say(sql: str) -> None:
    assert reads_only(sql)
