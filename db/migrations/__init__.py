"""SurrealQL migrations, applied in name order by ``db.migrate``: one file per schema change, checksummed,
never edited once shipped."""
