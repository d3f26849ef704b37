"""The `[llm]` table of gitevo.toml, validated into LLMSettings.

Errors are one line, `FILE: llm.KEY: problem`, raised as ConfigError (gitevo.core.errors)
like every other configuration error. Environment variables are only consulted where the
config leaves a choice to them (OPENAI_BASE_URL); API keys are looked up when a client is
made.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitevo.core.errors import ConfigError

CHARS_PER_TOKEN_WORST = 3  # code tokenises at ~3-4 chars a token; 3 over-reserves a little
DIFF_SLACK_TOKENS = 512  # headers, context lines and the rationale around a diff

PROVIDERS = ("offline", "anthropic", "openai", "command")
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRICE_KEYS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0) -> float:
        return (input_tokens * self.input + output_tokens * self.output
                + cache_read * self.cache_read + cache_write * self.cache_write) / 1e6

    @property
    def worst_input(self) -> float:
        """The highest price an input token can cost (a cache write costs more than input)."""
        return max(self.input, self.cache_read, self.cache_write)

    @property
    def free(self) -> bool:
        return not any((self.input, self.output, self.cache_read, self.cache_write))


def _anthropic(inp: float, out: float) -> Prices:
    # Anthropic's ratios: a 5-minute cache write is 1.25x input, a cache read 0.1x
    return Prices(inp, out, round(inp * 0.1, 6), round(inp * 1.25, 6))


# List prices of Claude families (USD/MTok) as published in late 2025; first match wins.
# Newer versions of a family inherit its latest known price; set llm.prices to be exact.
CLAUDE_PRICES: tuple[tuple[re.Pattern[str], Prices], ...] = (
    (re.compile(r"opus-4-[01]\b|opus-4-20|opus-4$|opus-4@|claude-3-opus"), _anthropic(15.0, 75.0)),
    (re.compile(r"opus"), _anthropic(5.0, 25.0)),
    (re.compile(r"sonnet"), _anthropic(3.0, 15.0)),
    (re.compile(r"claude-3-haiku"), _anthropic(0.25, 1.25)),
    (re.compile(r"3-5-haiku|haiku-3-5"), _anthropic(0.8, 4.0)),
    (re.compile(r"haiku"), _anthropic(1.0, 5.0)),
)


def default_prices(provider: str, model: str) -> Prices | None:
    """Known prices for `model`, zeros where calls are free, None when unknown."""
    if provider != "anthropic":
        return Prices()  # OpenAI-compatible local servers and commands cost nothing
    for pattern, prices in CLAUDE_PRICES:
        if pattern.search(model):
            return prices
    return None


@dataclass(frozen=True)
class LLMSettings:
    provider: str = "offline"
    model: str = ""
    base_url: str | None = None
    api_key_env: str = ""
    command: str | None = None
    concurrency: int = 4
    retries: int = 4
    timeout: float = 120.0  # seconds per request
    backoff: float = 1.0  # seconds before the first retry; doubles with each retry
    max_backoff: float = 60.0  # no single wait is longer, retry-after included
    max_cost: float | None = None  # USD for the whole run
    max_tokens: int | None = None  # tokens (input, cached and output) for the whole run
    # None where the API takes no sampling temperature (Anthropic since API version 2026-10-21)
    temperature: tuple[float, float] | None = (0.05, 0.4)
    max_output_tokens: tuple[int, int] = (1024, 8192)
    prices: Prices = field(default_factory=Prices)
    repair_turns: int = 1
    path: str = "gitevo.toml"  # for messages
    name: str = ""  # the model's name in an ensemble (its arm); default the model string
    weight: float = 1.0  # its share of the calls under uniform allocation
    prompts: str = "model"  # the prompt set: "model", "program", or a folder of one's own

    @property
    def label(self) -> str:
        """What plans, notes and tables call this model."""
        return self.name or self.model or self.provider

    def draw_temperature(self, rng: random.Random) -> float | None:
        """A temperature from the configured range, rounded so trailers read cleanly; None
        where the provider takes none. The draw happens either way, so a run's random
        stream (and with it every later choice) does not depend on the provider."""
        draw = rng.random()
        if self.temperature is None:
            return None
        lo, hi = self.temperature
        return round(lo + (hi - lo) * draw, 3)

    def max_tokens_for(self, block_chars: int, rng: random.Random) -> int:
        """An output limit for rewriting a block of `block_chars` characters.

        A diff that rewrites a whole block carries it twice (- and + lines), at about 3
        characters a token, plus slack; a random 0-50% on top varies the limit per call as
        the paper does. Clamped into max_output_tokens."""
        need = math.ceil(2 * max(block_chars, 0) / CHARS_PER_TOKEN_WORST) + DIFF_SLACK_TOKENS
        lo, hi = self.max_output_tokens
        return max(lo, min(hi, int(need * (1.0 + 0.5 * rng.random()))))

    @classmethod
    def from_table(cls, table: Mapping[str, Any], path: Path | str,
                   env: Mapping[str, str] | None = None) -> LLMSettings:
        return _parse(_Table(dict(table), str(path)), os.environ if env is None else env)


class _Table:
    """Typed reads from the [llm] table; every problem becomes `FILE: llm.KEY: problem`."""

    def __init__(self, table: dict[str, Any], path: str, where: str = "llm"):
        self.table, self.path, self.where = table, path, where

    def fail(self, key: str, problem: str) -> Exception:
        return ConfigError(f"{self.path}: {self.where}.{key}: {problem}")

    def get(self, key: str, kinds: tuple[type, ...], default: Any) -> Any:
        value = self.table.get(key, default)
        if key in self.table and (isinstance(value, bool) or not isinstance(value, kinds)):
            names = " or ".join({str: "a string", int: "an integer", float: "a number",
                                 list: "a list", dict: "a table"}[k] for k in kinds)
            raise self.fail(key, f"expected {names}, got {value!r}")
        return value

    def number(self, key: str, default: float | None, lo: float, *, strict: bool = False
               ) -> float | None:
        value = self.get(key, (int, float), default)
        if value is None:
            return None
        if math.isnan(value) or value < lo or (strict and value == lo):
            raise self.fail(key, f"must be {'>' if strict else '>='} {lo:g}, got {value:g}")
        return float(value)

    def integer(self, key: str, default: int | None, lo: int) -> int | None:
        value = self.get(key, (int,), default)
        if value is not None and value < lo:
            raise self.fail(key, f"must be >= {lo}, got {value}")
        return value

    def pair(self, key: str, default: tuple[Any, Any], kinds: tuple[type, ...]) -> tuple:
        """A [low, high] range; a single value means low == high."""
        value = self.get(key, (*kinds, list), default)
        if not isinstance(value, (list, tuple)):
            value = [value, value]
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, kinds)
                                  for v in value):
            raise self.fail(key, f"expected [low, high], got {value!r}")
        if value[0] > value[1]:
            raise self.fail(key, f"low {value[0]} is above high {value[1]}")
        return value[0], value[1]


KNOWN_KEYS = {"provider", "model", "base_url", "api_key_env", "command", "concurrency",
              "retries", "timeout", "backoff", "max_backoff", "max_cost", "max_tokens",
              "temperature", "max_output_tokens", "prices", "repair_turns", "name", "weight",
              "prompts"}
# one budget and one conversation length per run: an ensemble reads them from its first
# model, and says so when a later one sets them
RUN_WIDE_KEYS = ("max_cost", "max_tokens", "repair_turns", "prompts")


def models_from_config(value: Any, path: Path | str,
                       env: Mapping[str, str] | None = None) -> tuple[LLMSettings, ...]:
    """The run's models: one [llm] table, or an ensemble of [[llm]] tables.

    Names (default: the model string) must be unique, since plans and notes name a model
    by them; the offline operators do not mix with LLMs."""
    env = os.environ if env is None else env
    if isinstance(value, Mapping):
        return (_parse(_Table(dict(value), str(path)), env),)
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping)
                                                           for v in value):
        raise ConfigError(f"{path}: llm: expected a table, or a list of tables ([[llm]]), "
                          f"got {value!r}")
    models = []
    for i, table in enumerate(value):
        t = _Table(dict(table), str(path), f"llm[{i}]")
        if i > 0:
            for key in RUN_WIDE_KEYS:
                if key in t.table:
                    raise t.fail(key, "applies to the whole run; set it on the first "
                                      "[[llm]] table")
        models.append(_parse(t, env))
    _check_ensemble(models, str(path))
    return tuple(models)


def _check_ensemble(models: list[LLMSettings], path: str) -> None:
    seen: dict[str, int] = {}
    for i, model in enumerate(models):
        if model.provider == "offline" and len(models) > 1:
            raise ConfigError(f"{path}: llm[{i}].provider: offline does not mix with LLMs; "
                              "list only models that answer")
        if model.label in seen:
            raise ConfigError(f"{path}: llm[{i}].name: {model.label!r} also names "
                              f"llm[{seen[model.label]}]; give each model its own name")
        seen[model.label] = i


def _parse(t: _Table, env: Mapping[str, str]) -> LLMSettings:
    _reject_unknown(t)
    provider = t.get("provider", (str,), "offline")
    if provider not in PROVIDERS:
        raise t.fail("provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    model = _model(t, provider)
    settings = LLMSettings(
        provider=provider, model=model, base_url=_base_url(t, provider, env),
        api_key_env=_key_env(t, provider), command=_command(t, provider),
        concurrency=t.integer("concurrency", 4, 1), retries=t.integer("retries", 4, 0),
        timeout=t.number("timeout", 120.0, 0.0, strict=True),
        backoff=t.number("backoff", 1.0, 0.0), max_backoff=t.number("max_backoff", 60.0, 0.0),
        max_cost=t.number("max_cost", None, 0.0, strict=True),
        max_tokens=t.integer("max_tokens", None, 1),
        temperature=_temperature(t, provider), max_output_tokens=_output_range(t),
        prices=_prices(t, provider, model), repair_turns=t.integer("repair_turns", 1, 0),
        path=t.path, name=_name(t), weight=t.number("weight", 1.0, 0.0, strict=True),
        prompts=_prompts(t))
    if settings.max_cost is not None and settings.prices.free:
        raise t.fail("max_cost", f"needs llm.prices: calls to {provider} {model!r} "
                                 "are priced at 0 (use max_tokens, or set prices)")
    return settings


def _reject_unknown(t: _Table) -> None:
    for key in t.table:
        if key == "api_key":
            raise t.fail(key, "keys never go in gitevo.toml; put it in an environment "
                              "variable and name that with api_key_env")
        if key not in KNOWN_KEYS:
            raise t.fail(key, f"unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")


def _prompts(t: _Table) -> str:
    value = t.get("prompts", (str,), "model")
    if not value.strip():
        raise t.fail("prompts", '"model", "program", or the path of a prompt set folder')
    return value


def _name(t: _Table) -> str:
    name = t.get("name", (str,), "")
    if "name" in t.table and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$", name):
        raise t.fail("name", f"letters, digits and ._:/@+- only, got {name!r}")
    return name


def _model(t: _Table, provider: str) -> str:
    model = t.get("model", (str,), None)
    if model is None and provider in DEFAULT_KEY_ENV:
        raise t.fail("model", f"required for provider {provider}")
    if model is not None and not model.strip():
        raise t.fail("model", "must not be empty")
    return model or ("command" if provider == "command" else "")


def _base_url(t: _Table, provider: str, env: Mapping[str, str]) -> str | None:
    url = t.get("base_url", (str,), None)
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise t.fail("base_url", f"must be an http:// or https:// URL, got {url!r}")
    if provider == "openai" and url is None:
        url = env.get("OPENAI_BASE_URL") or None
        if url is None:
            raise t.fail("base_url", "required for provider openai (the server's URL, e.g. "
                                     "http://127.0.0.1:8000/v1), or set OPENAI_BASE_URL")
    return url


def _key_env(t: _Table, provider: str) -> str:
    name = t.get("api_key_env", (str,), DEFAULT_KEY_ENV.get(provider, ""))
    if "api_key_env" in t.table and not _ENV_NAME.match(name):
        raise t.fail("api_key_env", f"must be an environment variable name, got {name!r}")
    return name


def _command(t: _Table, provider: str) -> str | None:
    command = t.get("command", (str,), None)
    if provider == "command" and not (command and command.strip()):
        raise t.fail("command", "required for provider command (a shell command that reads "
                                "the prompt on stdin and prints the answer)")
    return command


def _temperature(t: _Table, provider: str) -> tuple[float, float] | None:
    if provider == "anthropic":
        # the anthropic SDK (>= 1.0) has no temperature argument, and the API version it
        # speaks (2026-10-21) answers 400 to one sent anyway; better said here than ignored
        if "temperature" in t.table:
            raise t.fail("temperature", "the Anthropic Messages API takes no sampling "
                                        "temperature any more; remove the key")
        return None
    lo, hi = t.pair("temperature", (0.05, 0.4), (int, float))
    if lo < 0 or hi > 2:
        raise t.fail("temperature", f"must lie within [0, 2], got [{lo:g}, {hi:g}]")
    return float(lo), float(hi)


def _output_range(t: _Table) -> tuple[int, int]:
    lo, hi = t.pair("max_output_tokens", (1024, 8192), (int,))
    if lo < 1:
        raise t.fail("max_output_tokens", f"must be >= 1, got {lo}")
    return lo, hi


def _prices(t: _Table, provider: str, model: str) -> Prices:
    table = t.get("prices", (dict,), None)
    if table is None:
        known = default_prices(provider, model)
        return known if known is not None else Prices()
    for key, value in table.items():
        if key not in _PRICE_KEYS:
            raise t.fail(f"prices.{key}", f"unknown key (known: {', '.join(_PRICE_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise t.fail(f"prices.{key}", f"expected USD per million tokens >= 0, got {value!r}")
    for key in ("input", "output"):
        if key not in table:
            raise t.fail(f"prices.{key}", "required when llm.prices is given")
    inp = float(table["input"])
    # unset cache prices default to what never undercounts: reads at full input price,
    # writes at Anthropic's 1.25x
    return Prices(inp, float(table["output"]), float(table.get("cache_read", inp)),
                  float(table.get("cache_write", inp * 1.25)))
