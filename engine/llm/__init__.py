"""LLM agents: a ready-made tool-calling LangGraph agent (``kind: llm``), its tools, and token and cost accounting.

``engine.agents`` imports ``engine.llm.agent`` only when a workflow uses an ``llm`` agent, so workflows without
one never load LangChain's agent machinery.
"""

from engine.llm.models import register_chat_model

__all__ = ["register_chat_model"]
