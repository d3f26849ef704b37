"""One-line reasons for failures, pointing into model.py where the fault lies there.

gitevo keeps the last line a failed check prints as the individual's `invalid` reason,
and feeds it back to the LLM, so it must be short, specific and on one line.
"""

from __future__ import annotations

import traceback

GENE_FILE = "model.py"
_LIMIT = 300  # characters of the exception message worth keeping


class ModelError(Exception):
    """The candidate's code failed or broke a rule of the harness; one line."""


def describe(exc: BaseException, stage: str) -> str:
    # a SyntaxError's str() already ends in "(file, line N)"; the location comes below
    raw = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    message = " ".join(str(raw).split())
    if len(message) > _LIMIT:
        message = message[:_LIMIT] + "..."
    where = _gene_location(exc)
    kind = type(exc).__name__
    text = message if isinstance(exc, ModelError) else f"{kind}: {message}".rstrip(": ")
    return f"{stage}: {text}{f' ({where})' if where else ''}"


def _gene_location(exc: BaseException) -> str:
    """The innermost model.py frame of the traceback, as `model.py:LINE in NAME`."""
    if isinstance(exc, SyntaxError) and str(exc.filename).endswith(GENE_FILE):
        return f"{GENE_FILE}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.endswith(GENE_FILE)]
    if not frames:
        return ""
    frame = frames[-1]
    return f"{GENE_FILE}:{frame.lineno} in {frame.name}"
