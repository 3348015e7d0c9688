"""Watchpoints: conditions on a workflow's event stream that pause it when they hold, and say why.

* the language (parsing, errors with columns): ``engine.spec.watch_expr`` — part of the workflow file's language;
* evaluating one watchpoint over events: ``engine.watch.evaluate`` (each condition's state: ``.conditions``);
* the engine's armed watchpoints, fed every stored event, pausing on a trigger: ``engine.watch.manager``;
* the engine's add / remove / list controls: ``engine.watch.controls``.

Public API (on ``Engine``, ``AttachedEngine`` and the ``DashboardEngine`` protocol)::

    await engine.add_watchpoint(workflow_id, 'node check runs >= 2', task=None)  # -> db.models.Watchpoint
    await engine.remove_watchpoint(workflow_id, watchpoint_id)
    await engine.watchpoints(workflow_id)                                         # -> list[Watchpoint]

A trigger emits ``watchpoint.triggered`` (data: ``engine.watch.manager.triggered_data``) and pauses the workflow.
"""

from engine.spec.watch_expr import WatchExpr, WatchSyntaxError, parse_watch
from engine.watch.controls import InvalidWatchpoint, WatchControls, check_expression
from engine.watch.manager import WatchManager, triggered_data

__all__ = [
    "InvalidWatchpoint",
    "WatchControls",
    "WatchExpr",
    "WatchManager",
    "WatchSyntaxError",
    "check_expression",
    "parse_watch",
    "triggered_data",
]
