"""Any OpenAI-compatible Chat Completions server (vLLM, Ollama, llama.cpp, LM Studio, ...)
through the `openai` SDK with base_url."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from gitevo.llm.sdk_errors import translate
from gitevo.llm.settings import LLMSettings
from gitevo.llm.types import LLMError, Reply, Request, Usage

_STOP = {"stop": "end", "length": "max_tokens"}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
NO_KEY = "no-key-needed"  # local servers ignore the key, but the SDK insists on one


def is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: LLMSettings, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        url = settings.base_url or env.get("OPENAI_BASE_URL") or ""
        key = env.get(settings.api_key_env) or (NO_KEY if is_local(url) else None)
        if not key:
            raise LLMError("missing-key", f"openai: environment variable {settings.api_key_env}"
                                          f" is not set (needed for {url})")
        import openai  # here: `import gitevo` must stay cheap

        self._sdk = openai
        # retries are ours (gitevo.llm.retry): one policy for every provider
        self._client = openai.OpenAI(api_key=key, base_url=url, max_retries=0,
                                     timeout=settings.timeout)
        self.model = settings.model
        self.url = str(self._client.base_url).rstrip("/")
        self._key_env, self._timeout = settings.api_key_env, settings.timeout

    def send(self, request: Request) -> Reply:
        body: dict[str, Any] = {"model": self.model, "messages": messages(request),
                                "max_tokens": request.max_tokens}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        try:
            # the client's documented raw-request path: the same auth, URL, timeout and
            # error types as chat.completions.create, without re-validating a body we
            # built ourselves or building typed models we would only read three fields of
            raw = self._client.post("/chat/completions", body=body, cast_to=bytes)
            data = json.loads(raw)
        except Exception as exc:  # a body cut off in transfer is translated as retryable
            error = translate(exc, self._sdk, f"openai ({self.model})", self.url,
                              self._key_env, self._timeout)
            if error is None:
                raise
            raise error from exc
        return self._reply(data, request)

    def _reply(self, data: Any, request: Request) -> Reply:
        choices = data.get("choices") if isinstance(data, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise LLMError("bad-response", f"openai ({self.model}): {self.url} answered "
                                           "without choices")
        text = _text(message.get("content"))
        stop = choice.get("finish_reason") or "stop"
        return Reply(text=text, model=data.get("model") or self.model,
                     stop_reason=_STOP.get(stop, stop),
                     usage=_usage(data.get("usage"), request, text), raw=data)

    def close(self) -> None:
        self._client.close()


def messages(request: Request) -> list[dict[str, Any]]:
    """System, then the conversation; the stable prefix leads the first user turn so that
    servers with automatic prefix caching (OpenAI, vLLM) can reuse it."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    return out + [{"role": m.role, "content": m.content} for m in request.merged()]


def _text(content: Any) -> str:
    """The answer's text: a string, or (some servers) a list of parts with "text" in them."""
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _usage(usage: Any, request: Request, text: str) -> Usage:
    if not isinstance(usage, dict):  # some local servers omit it: estimate, so max_tokens binds
        return Usage(math.ceil(request.chars() / 4), math.ceil(len(text) / 4))
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    prompt = usage.get("prompt_tokens") or 0
    return Usage(input_tokens=max(prompt - cached, 0),
                 output_tokens=usage.get("completion_tokens") or 0, cache_read_tokens=cached)
