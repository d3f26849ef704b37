"""Anthropic Messages API through the `anthropic` SDK, with prompt caching of the stable
part of every prompt (rules + seed file) and cost from the configured prices.

The SDK (>= 1.0) speaks API version 2026-10-21, which has no sampling parameters: a
request's temperature is not sent (settings make it None for this provider)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gitevo.llm.sdk_errors import translate
from gitevo.llm.settings import LLMSettings
from gitevo.llm.types import LLMError, Reply, Request, Usage

# "model_context_window_exceeded" also means the answer was cut off
_STOP = {"end_turn": "end", "stop_sequence": "end", "max_tokens": "max_tokens",
         "model_context_window_exceeded": "max_tokens"}


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, settings: LLMSettings, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        key = env.get(settings.api_key_env)
        if not key:
            raise LLMError("missing-key", f"anthropic: environment variable "
                                          f"{settings.api_key_env} is not set")
        import anthropic  # here: `import gitevo` must stay cheap

        self._sdk = anthropic
        # retries are ours (gitevo.llm.retry): one policy for every provider
        self._client = anthropic.Anthropic(api_key=key, base_url=settings.base_url,
                                           max_retries=0, timeout=settings.timeout)
        self.model = settings.model
        self.url = str(self._client.base_url).rstrip("/")
        self._key_env, self._timeout = settings.api_key_env, settings.timeout

    def send(self, request: Request) -> Reply:
        try:
            response = self._client.messages.create(
                model=self.model, max_tokens=request.max_tokens, messages=messages(request),
                system=request.system or self._sdk.omit)
        except Exception as exc:
            error = translate(exc, self._sdk, f"anthropic ({self.model})", self.url,
                              self._key_env, self._timeout)
            if error is None:
                raise
            raise error from exc
        return self._reply(response)

    def _reply(self, response: Any) -> Reply:
        content, usage = response.content, response.usage
        if content is None or usage is None:
            raise LLMError("bad-response", f"anthropic ({self.model}): {self.url} answered "
                                           "without content or usage")
        text = "".join(b.text for b in content if getattr(b, "type", None) == "text")
        stop = response.stop_reason or "end"
        return Reply(text=text, model=response.model or self.model,
                     stop_reason=_STOP.get(stop, stop), usage=_usage(usage),
                     raw=response.model_dump(mode="json", exclude_none=True))

    def close(self) -> None:
        self._client.close()


def messages(request: Request) -> list[dict[str, Any]]:
    """The conversation with the stable prefix as a cached block ahead of the first user
    turn; the cache breakpoint covers the system prompt too, which comes before it."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if i == 0 and request.stable_prefix:
            blocks = [{"type": "text", "text": request.stable_prefix,
                       "cache_control": {"type": "ephemeral"}}]
            if message.content:  # the API rejects empty text blocks
                blocks.append({"type": "text", "text": message.content})
            out.append({"role": message.role, "content": blocks})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _usage(usage: Any) -> Usage:
    return Usage(input_tokens=usage.input_tokens or 0, output_tokens=usage.output_tokens or 0,
                 cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
                 cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0)
