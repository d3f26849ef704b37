"""Plain data that crosses the gitevo.llm boundary: requests, replies, usage and errors.

No SDK types leak out of gitevo.llm, so operators, provenance notes and tests see the same
shapes whichever provider answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ERROR_KINDS = ("auth", "missing-key", "unreachable", "rate-limit", "server", "timeout",
               "bad-response", "budget")
# transient by nature: worth another attempt after a pause
RETRYABLE_KINDS = frozenset({"unreachable", "rate-limit", "server", "timeout"})


@dataclass(frozen=True)
class Message:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Request:
    """One call. `stable_prefix` (rules + seed file) goes first in the first user message, so
    providers with prompt caching can cache it across every call of a run."""

    system: str
    messages: list[Message]
    temperature: float | None  # None: the provider's own (Anthropic takes no temperature)
    max_tokens: int
    stable_prefix: str = ""

    def merged(self) -> list[Message]:
        """The messages with the stable prefix leading the first one, for providers that take
        plain text turns (no separate cacheable block)."""
        if not self.messages or not self.stable_prefix:
            return list(self.messages)
        first = self.messages[0]
        text = f"{self.stable_prefix}\n\n{first.content}" if first.content else self.stable_prefix
        return [Message(first.role, text), *self.messages[1:]]

    def chars(self) -> int:
        return len(self.system) + len(self.stable_prefix) + sum(len(m.content)
                                                                for m in self.messages)


@dataclass(frozen=True)
class Usage:
    """Tokens of one call (or a total). `input_tokens` excludes cached input: the total prompt
    is input_tokens + cache_read_tokens + cache_write_tokens. `cost` is in USD."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_tokens
                + self.cache_write_tokens)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cache_read_tokens + other.cache_read_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.cost + other.cost)


@dataclass(frozen=True)
class Reply:
    text: str
    model: str  # as the server reported it
    stop_reason: str  # "end", "max_tokens" (the answer was cut off), or the provider's own word
    usage: Usage
    attempts: int = 1  # 1 + the retries this call needed
    raw: dict[str, Any] = field(default_factory=dict)  # the response as the provider sent it
    seconds: float = 0.0  # wall time of the call, retries and their pauses included

    def with_usage(self, usage: Usage) -> Reply:
        return replace(self, usage=usage)


class LLMError(Exception):
    """A call that produced no answer. The message is one line naming provider and server."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None,
                 retryable: bool | None = None):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown LLMError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.attempts = 1
        self.seconds = 0.0  # how long the call tried before giving up (0: nothing was sent)
        self.turns: list[dict] = []  # a conversation's earlier turns, answered and paid for

    def __str__(self) -> str:
        return self.message

    def after(self, attempts: int) -> LLMError:
        """The same error, saying how many attempts were made before giving up."""
        if attempts > 1:
            self.message = f"{self.message} (after {attempts} attempts)"
            self.args = (self.message,)
        self.attempts = attempts
        return self


class BudgetExceeded(LLMError):
    """The run's max_cost or max_tokens does not allow another call; nothing was sent."""

    def __init__(self, message: str):
        super().__init__("budget", message, retryable=False)
