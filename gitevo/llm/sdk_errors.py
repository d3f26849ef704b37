"""SDK exceptions -> LLMError, for the anthropic and openai SDKs.

Both SDKs share one exception layout (APIStatusError with .status_code and .response,
APITimeoutError, APIConnectionError), and both hand a 200 response whose body is not JSON
through as json.JSONDecodeError (or UnicodeDecodeError, cut inside a character), so one
translation serves both.
"""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

from gitevo.llm.retry import parse_retry_after
from gitevo.llm.types import LLMError

MAX_DETAIL = 200


def translate(exc: BaseException, sdk: ModuleType, who: str, url: str, key_env: str,
              timeout: float) -> LLMError | None:
    """The LLMError for an SDK failure; None for anything that is not a call failure (a bug
    in gitevo should surface as itself). `who` is "provider (model)"."""
    if isinstance(exc, sdk.APITimeoutError):
        return LLMError("timeout", f"{who}: no answer from {url} within {timeout:g} s")
    if isinstance(exc, sdk.APIConnectionError):
        return LLMError("unreachable", f"{who}: cannot reach {url} ({connection_reason(exc)})")
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc, who, url, key_env)
    cut_off = (json.JSONDecodeError, UnicodeDecodeError)
    if isinstance(exc, (sdk.APIResponseValidationError, *cut_off)):
        # a body cut off in transfer (mid-JSON, or mid-character) is worth another try;
        # a well-formed body of the wrong shape (below, per provider) is not
        return LLMError("bad-response", f"{who}: {url} sent a response that is not valid JSON "
                                        f"for the API ({one_line(str(exc))})",
                        retryable=isinstance(exc, cut_off))
    return None


def _status_error(exc: Any, who: str, url: str, key_env: str) -> LLMError:
    status = exc.status_code
    detail = f"HTTP {status} from {url}: {server_message(exc)}"
    headers = exc.response.headers if exc.response is not None else None
    if status in (401, 403):
        return LLMError("auth", f"{who}: the key in {key_env} was refused ({detail})")
    if status == 429:
        return LLMError("rate-limit", f"{who}: rate limited ({detail})",
                        retry_after=parse_retry_after(headers))
    if status == 408:
        return LLMError("timeout", f"{who}: {detail}", retry_after=parse_retry_after(headers))
    # 5xx (529 is Anthropic's "overloaded") may pass; other 4xx are our request's fault
    return LLMError("server", f"{who}: {detail}", retry_after=parse_retry_after(headers),
                    retryable=status >= 500)


def server_message(exc: Any) -> str:
    """The server's own explanation from the error JSON of either API."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            kind = inner.get("type")
            text = f"{kind}: {inner['message']}" if kind else str(inner["message"])
            return one_line(text)
    return one_line(getattr(exc, "message", "") or str(exc))


def connection_reason(exc: BaseException) -> str:
    """The innermost cause, in words: 'connection refused', 'server disconnected ...'."""
    seen, inner = set(), exc
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(inner)).rstrip(".") or type(inner).__name__
    return one_line(text[:1].lower() + text[1:])


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 3] + "..."
