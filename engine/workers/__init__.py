"""Running task commands on other machines: ``agentdeck worker`` processes fed through Redis Streams.

A workflow asks for it with ``sandbox: worker`` (a task's, or ``defaults``), or ``AGENTDECK_SANDBOX=worker``. The
engine stays the coordinator and the one writer of workflow state; workers only run commands and send back what
they print and how they ended. ``protocol`` is the wire format, ``dispatcher`` and ``sandbox`` the engine's side,
``worker`` and ``job`` the worker's.
"""
