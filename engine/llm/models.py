"""Which chat model an ``llm`` agent talks to, and whether it can be had here.

A model is named ``provider:model`` (``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``,
``ollama:llama3.1``), in the agent's ``model:`` or ``AGENTDECK_MODEL``, and made by LangChain's
``init_chat_model``. Each provider needs its LangChain package; the ones we ship extras for say which extra to
install. ``register_chat_model`` makes a name resolve to a factory of our own instead (a model class LangChain
has no provider for, or a test's stand-in for a provider); registered names need no provider package.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import AgentUnavailable
from engine.settings import EngineSettings

if TYPE_CHECKING:  # LangChain is imported when a model is made, so checking an agent stays quick
    from langchain_core.language_models import BaseChatModel

ChatModelFactory = Callable[..., "BaseChatModel"]

# provider → (its LangChain package, our extra that installs it, or None)
_PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("langchain_openai", "openai"),
    "azure_openai": ("langchain_openai", "openai"),
    "anthropic": ("langchain_anthropic", "anthropic"),
    "ollama": ("langchain_ollama", "ollama"),
}

# Names LangChain recognises without a provider prefix, for the packages we ship extras for.
_INFERRED = (
    (("gpt-", "o1", "o3", "o4", "chatgpt"), "openai"),
    (("claude",), "anthropic"),
)

_REGISTERED: dict[str, ChatModelFactory] = {}


def register_chat_model(name: str, factory: ChatModelFactory) -> Callable[[], None]:
    """Make the model name ``name`` resolve to ``factory(**model_options)``; returns a function undoing it."""
    _REGISTERED[name] = factory

    def unregister() -> None:
        if _REGISTERED.get(name) is factory:
            del _REGISTERED[name]

    return unregister


def configured_model(model: str | None, settings: EngineSettings | None = None) -> str:
    """The agent's model, else ``AGENTDECK_MODEL``.

    Raises:
        AgentUnavailable: Neither is set.
    """
    chosen = model or (settings or EngineSettings()).model
    if not chosen:
        raise AgentUnavailable(
            "no model configured: set 'model: provider:model' on the agent (e.g. model: openai:gpt-4o-mini) "
            "or the AGENTDECK_MODEL environment variable"
        )
    return chosen


def provider_of(model: str) -> str | None:
    """``openai`` for ``openai:gpt-4o`` or ``gpt-4o``; ``None`` when the name does not say."""
    if ":" in model:
        return model.split(":", 1)[0].replace("-", "_").lower()
    lowered = model.lower()
    for prefixes, provider in _INFERRED:
        if lowered.startswith(prefixes):
            return provider
    return None


def check_model_available(model: str) -> None:
    """Raise ``AgentUnavailable`` when ``model`` cannot be made here, saying what to install.

    Raises:
        AgentUnavailable: The provider cannot be told from the name, or its LangChain package is not installed.
    """
    if model in _REGISTERED:
        return
    provider = provider_of(model)
    if provider is None:
        raise AgentUnavailable(
            f"cannot tell the provider of model {model!r}: write it as provider:model (e.g. openai:gpt-4o-mini)"
        )
    package, extra = _PROVIDERS.get(provider, (f"langchain_{provider}", None))
    if importlib.util.find_spec(package) is None:
        install = f"pip install 'agentdeck[{extra}]'" if extra else f"pip install {package.replace('_', '-')}"
        raise AgentUnavailable(f"model {model!r} needs the {package.replace('_', '-')} package: {install}")


def make_chat_model(model: str, options: dict[str, Any]) -> BaseChatModel:
    """The chat model named ``model``, made with ``options`` (the agent's ``options.model_options``)."""
    from langchain.chat_models import init_chat_model
    from langchain_core.language_models import BaseChatModel

    factory = _REGISTERED.get(model)
    if factory is not None:
        return factory(**options)
    made = init_chat_model(model, **options)
    if not isinstance(made, BaseChatModel):  # a configurable model: only with configurable_fields, which we never pass
        raise AgentUnavailable(f"model {model!r} did not resolve to a chat model")
    return made
