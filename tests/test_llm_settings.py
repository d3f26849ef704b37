"""[llm] validation: defaults, price tables, and one line naming llm.<key> for each bad key;
importing gitevo.llm loads no SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gitevo.config import ConfigError
from gitevo.llm import LLMSettings, make_client
from gitevo.llm.settings import Prices, default_prices

PATH = "repo/gitevo.toml"


def settings(env: dict[str, str] | None = None, **table) -> LLMSettings:
    return LLMSettings.from_table(table, PATH, env=env or {})


def test_offline_defaults():
    s = settings()
    assert s.provider == "offline"
    assert (s.concurrency, s.retries, s.timeout, s.repair_turns) == (4, 4, 120.0, 1)
    assert s.temperature == (0.05, 0.4)
    assert s.max_output_tokens == (1024, 8192)
    assert s.max_cost is None and s.max_tokens is None
    assert make_client({"provider": "offline"}, PATH) is None
    assert make_client({}, PATH) is None


def test_anthropic_defaults_and_known_prices():
    s = settings(provider="anthropic", model="claude-sonnet-4-5", max_cost=2.5)
    assert s.api_key_env == "ANTHROPIC_API_KEY"
    assert s.temperature is None  # API version 2026-10-21 has no sampling parameters
    assert s.prices == Prices(3.0, 15.0, 0.3, 3.75)
    assert default_prices("anthropic", "claude-opus-4-1-20250805").input == 15.0
    assert default_prices("anthropic", "claude-opus-4-5").input == 5.0
    assert default_prices("anthropic", "claude-3-5-haiku-20241022").output == 4.0
    assert default_prices("anthropic", "claude-haiku-4-5").output == 5.0
    assert default_prices("anthropic", "some-other-model") is None
    assert default_prices("openai", "anything") == Prices()


def test_ranges_prices_and_env_fallbacks():
    s = settings({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, provider="openai",
                 model="qwen", temperature=0.2, max_output_tokens=[256, 4096],
                 prices={"input": 1, "output": 2}, max_cost=1.0, api_key_env="MY_KEY")
    assert s.base_url == "http://127.0.0.1:8000/v1"
    assert s.temperature == (0.2, 0.2)
    assert s.max_output_tokens == (256, 4096)
    assert s.prices == Prices(1.0, 2.0, 1.0, 1.25)  # unset cache prices never undercount
    assert s.api_key_env == "MY_KEY"
    assert settings(provider="command", command="cat").model == "command"


BAD = [
    ({"provider": "gpt"}, "provider", "must be one of"),
    ({"frobnicate": 1}, "frobnicate", "unknown key"),
    ({"api_key": "sk-123"}, "api_key", "environment variable"),
    ({"provider": "anthropic"}, "model", "required for provider anthropic"),
    ({"provider": "openai", "model": "m"}, "base_url", "OPENAI_BASE_URL"),
    ({"provider": "openai", "model": "m", "base_url": "127.0.0.1:8000"}, "base_url", "http"),
    ({"provider": "command"}, "command", "required for provider command"),
    ({"provider": "command", "command": "  "}, "command", "required"),
    ({"model": ""}, "model", "must not be empty"),
    ({"api_key_env": "MY-KEY"}, "api_key_env", "environment variable name"),
    ({"concurrency": 0}, "concurrency", ">= 1"),
    ({"concurrency": 2.5}, "concurrency", "expected an integer"),
    ({"retries": -1}, "retries", ">= 0"),
    ({"timeout": 0}, "timeout", "> 0"),
    ({"timeout": "long"}, "timeout", "expected an integer or a number"),
    ({"backoff": -1}, "backoff", ">= 0"),
    ({"max_cost": 0}, "max_cost", "> 0"),
    ({"max_cost": 1.0}, "max_cost", "needs llm.prices"),
    ({"provider": "anthropic", "model": "claude-fable-5", "max_cost": 1.0}, "max_cost",
     "needs llm.prices"),
    ({"max_tokens": 0}, "max_tokens", ">= 1"),
    ({"max_tokens": True}, "max_tokens", "expected an integer"),
    ({"temperature": [0.4, 0.1]}, "temperature", "above high"),
    ({"temperature": [0.1]}, "temperature", "[low, high]"),
    ({"temperature": [0.1, 3.0]}, "temperature", "within [0, 2]"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-5", "temperature": [0.1, 0.2]},
     "temperature", "takes no sampling temperature"),
    ({"max_output_tokens": [0, 10]}, "max_output_tokens", ">= 1"),
    ({"max_output_tokens": [1024.5, 2048]}, "max_output_tokens", "[low, high]"),
    ({"prices": {"input": 1}}, "prices.output", "required"),
    ({"prices": {"input": 1, "output": -2}}, "prices.output", ">= 0"),
    ({"prices": {"input": 1, "output": 2, "batch": 1}}, "prices.batch", "unknown key"),
    ({"prices": 3}, "prices", "expected a table"),
    ({"repair_turns": -1}, "repair_turns", ">= 0"),
]


@pytest.mark.parametrize(("table", "key", "problem"), BAD, ids=[f"{b[1]}-{i}"
                                                                for i, b in enumerate(BAD)])
def test_each_bad_key_is_one_line_naming_it(table, key, problem):
    with pytest.raises(ConfigError) as info:
        LLMSettings.from_table(table, PATH, env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{PATH}: llm.{key}: "), message
    assert problem in message


def test_importing_gitevo_llm_loads_no_sdk():
    code = ("import sys, gitevo.llm, gitevo.llm.client, gitevo.llm.settings\n"
            "heavy = {'anthropic', 'openai', 'httpx', 'httpx2', 'httpcore', 'pydantic'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


# ---- [[llm]]: an ensemble ----------------------------------------------------------------------

LOCAL = {"provider": "openai", "model": "qwen", "base_url": "http://127.0.0.1:8000/v1"}
CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-6"}


def test_an_ensemble_names_its_models_and_keeps_one_budget():
    from gitevo.llm.settings import models_from_config

    models = models_from_config([{**LOCAL, "max_cost": 2.0, "prices": {"input": 0.1,
                                                                        "output": 0.2}},
                                 {**CLAUDE, "name": "strong", "weight": 0.5}], PATH, env={})
    assert [m.label for m in models] == ["qwen", "strong"]
    assert [m.weight for m in models] == [1.0, 0.5]
    assert models[0].max_cost == 2.0 and models[1].prices.output == 15.0
    assert models_from_config(LOCAL, PATH, env={})[0].label == "qwen"  # one [llm] table


@pytest.mark.parametrize("tables, named", [
    ([LOCAL, LOCAL], "llm[1].name: 'qwen' also names llm[0]"),
    ([LOCAL, {**CLAUDE, "max_cost": 3.0}], "llm[1].max_cost: applies to the whole run"),
    ([LOCAL, {"provider": "offline"}], "llm[1].provider: offline does not mix"),
    ([LOCAL, {**CLAUDE, "weight": 0}], "llm[1].weight: must be > 0"),
    ([LOCAL, {**CLAUDE, "name": "a b"}], "llm[1].name: letters, digits"),
    ([LOCAL, {**CLAUDE, "modle": "x"}], "llm[1].modle: unknown key"),
    ([], "llm: expected a table, or a list of tables"),
])
def test_a_bad_ensemble_is_one_line_naming_the_model(tables, named):
    from gitevo.llm.settings import models_from_config

    with pytest.raises(ConfigError) as err:
        models_from_config(tables, PATH, env={})
    assert str(err.value).startswith(f"{PATH}: {named}"), str(err.value)
    assert "\n" not in str(err.value)
