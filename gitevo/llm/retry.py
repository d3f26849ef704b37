"""How long to wait before the next attempt: the server's retry-after, else backoff.

gitevo retries itself (the SDKs get max_retries=0) so that every provider, the command one
included, follows one policy whose base delay a config (and a fast test) can set.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None
                      ) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms` (Anthropic's precise variant),
    `retry-after` in seconds, or `retry-after` as an HTTP date. None when absent or unreadable."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def delay(attempt: int, retry_after: float | None, backoff: float, max_backoff: float,
          rng: random.Random | None = None) -> float:
    """The wait after failed attempt number `attempt` (1-based).

    retry-after is honoured (never shortened, only capped at max_backoff) with up to 20% on
    top, so that concurrent callers told the same time do not all return at once.
    Otherwise exponential backoff with jitter in [50%, 100%] of backoff * 2**(attempt-1)."""
    draw = (rng or random).random()
    if retry_after is not None:
        return min(retry_after, max_backoff) * (1.0 + 0.2 * draw)
    return min(backoff * 2 ** (attempt - 1), max_backoff) * (0.5 + 0.5 * draw)
