"""The flight recorder: one workflow's history exported to a self-contained file, imported into a database, and
read back for offline replay (``engine.replay``)."""
