"""Doing: agents, workflow specs, the coordinator, controls, checkpoints, sandboxes, event buses and metrics.

Imports ``db``, never ``tui`` or Textual (an import-linter contract enforces it).
"""
