"""Agent memory: the service agents, tools, the dashboard and the CLI use (``MemoryService``), its in-process
vector index and the rule for which memories a rollback takes back."""

from engine.memory.index import Filters, MemoryIndex
from engine.memory.service import SHORT_TERM_TTL, MemoryInputError, MemoryService, check_type

__all__ = ["SHORT_TERM_TTL", "Filters", "MemoryIndex", "MemoryInputError", "MemoryService", "check_type"]
