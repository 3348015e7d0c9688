"""Versioned ``.surql`` migrations, applied idempotently at connect and tracked in ``schema_version``.

Each file in ``db/migrations`` is named ``NNNN_what.surql``. A migration runs in one transaction together with
the row recording it, so a crash leaves it either applied and recorded or neither. Statements use
``IF NOT EXISTS`` so two processes migrating a shared server at once do no harm.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from db.connection import Database
from db.errors import SchemaMismatch

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.surql$")

_BOOTSTRAP = """
DEFINE TABLE IF NOT EXISTS schema_version SCHEMAFULL;
DEFINE FIELD IF NOT EXISTS version ON schema_version TYPE int;
DEFINE FIELD IF NOT EXISTS name ON schema_version TYPE string;
DEFINE FIELD IF NOT EXISTS checksum ON schema_version TYPE string;
DEFINE FIELD IF NOT EXISTS applied_at ON schema_version TYPE datetime DEFAULT time::now();
DEFINE TABLE IF NOT EXISTS schema_setting SCHEMAFULL;
DEFINE FIELD IF NOT EXISTS value ON schema_setting TYPE any;
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def load_migrations() -> list[Migration]:
    """Every migration shipped with this build, in version order."""
    found: list[Migration] = []
    for entry in resources.files("db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def applied_versions(db: Database) -> dict[int, str]:
    """Versions already applied to ``db``, with their checksums."""
    rows = await db.query_one("SELECT version, checksum FROM schema_version")
    return {int(row["version"]): str(row["checksum"]) for row in rows or []}


async def apply_migrations(db: Database, embedding_dimension: int) -> list[int]:
    """Bring ``db`` up to this build's schema; returns the versions applied now (empty if none were due).

    Raises:
        SchemaMismatch: the database was migrated by a newer agentdeck, or built for another embedding size.
    """
    await db.query(_BOOTSTRAP)
    await _check_embedding_dimension(db, embedding_dimension)
    done = await applied_versions(db)
    migrations = load_migrations()
    newest_known = migrations[-1].version if migrations else 0
    if done and max(done) > newest_known:
        raise SchemaMismatch(
            f"the database has schema version {max(done)}, newer than this agentdeck knows ({newest_known}); "
            "upgrade agentdeck"
        )
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        body = migration.text.replace("{{embedding_dimension}}", str(embedding_dimension))
        await db.query(
            "BEGIN TRANSACTION;\n"
            f"{body}\n;"
            "UPSERT type::record('schema_version', $version) "
            "CONTENT { version: $version, name: $name, checksum: $checksum };\n"
            "COMMIT TRANSACTION;",
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
        )
        applied.append(migration.version)
    return applied


async def _check_embedding_dimension(db: Database, embedding_dimension: int) -> None:
    stored = await db.query_one("SELECT VALUE value FROM ONLY schema_setting:embedding_dimension")
    if stored is None:
        await db.query("UPSERT schema_setting:embedding_dimension SET value = $value", {"value": embedding_dimension})
    elif int(stored) != embedding_dimension:
        raise SchemaMismatch(
            f"this database stores {stored}-dimensional memory vectors but the configured embedder makes "
            f"{embedding_dimension}-dimensional ones; use the same embedder or another database"
        )
