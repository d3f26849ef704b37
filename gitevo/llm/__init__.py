"""LLM providers for the guided operators: anthropic, openai-compatible, command, offline.

Importing this package loads no SDK: `anthropic` and `openai` are imported when a client
for them is made, so commands that never call an LLM stay fast. It imports nothing of
gitevo but core (config imports its settings to read the [llm] table).

    client = make_client(config.llm, config.path)   # None when provider = "offline"
    ensemble = Ensemble(config.ensemble, make_provider)  # [[llm]]: one budget, many models
    reply = client.complete(Request(system, [Message("user", text)], t, n, stable_prefix))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitevo.llm.client import Client, Provider
from gitevo.llm.settings import LLMSettings, Prices
from gitevo.llm.types import BudgetExceeded, LLMError, Message, Reply, Request, Usage

__all__ = ["BudgetExceeded", "Client", "LLMError", "LLMSettings", "Message", "Prices",
           "Provider", "Reply", "Request", "Usage", "make_client", "make_provider"]


def make_client(table: dict[str, Any], config_path: Path | str) -> Client | None:
    """A client for the [llm] table of the gitevo.toml at `config_path`; None for "offline".

    Raises ConfigError for a bad table and LLMError("missing-key") when the API key's
    environment variable is unset, so both surface before a generation starts."""
    settings = LLMSettings.from_table(table, config_path)
    if settings.provider == "offline":
        return None
    return Client(settings, make_provider(settings))


def make_provider(settings: LLMSettings) -> Provider:
    if settings.provider == "anthropic":
        from gitevo.llm.anthropic_provider import AnthropicProvider

        return AnthropicProvider(settings)
    if settings.provider == "openai":
        from gitevo.llm.openai_provider import OpenAIProvider

        return OpenAIProvider(settings)
    if settings.provider == "command":
        from gitevo.llm.command_provider import CommandProvider

        return CommandProvider(settings)
    raise ValueError(f"no provider for {settings.provider!r}")
