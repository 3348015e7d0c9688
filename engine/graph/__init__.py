"""LangGraph inside the engine: graph agents, their threads, approvals (human in the loop) and time travel.

A graph task runs on a LangGraph thread whose checkpoints live in our SurrealDB (``db.checkpointer``). The thread
is the task's memory across pauses, crashes and cancels: resuming continues from the thread's head, so only the
node that had not finished runs again. Retry starts a fresh thread; rollback and time travel fork the thread.
"""

from engine.graph.support import GraphSupport, default_thread, next_thread

__all__ = ["GraphSupport", "default_thread", "next_thread"]
