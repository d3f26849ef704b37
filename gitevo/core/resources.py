"""Where gitevo's shipped files live: templates, prompts and hooks.

In a wheel, prompts/ and hooks/ sit inside the package; in a source checkout (or an
editable install) they sit at the top of the repository, where users read them.
"""

from __future__ import annotations

import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # gitevo/, not gitevo/core/


@functools.cache  # an installation does not move while it runs; prompts ask on every call
def _shipped(name: str) -> Path:
    for candidate in (PACKAGE / name, PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gitevo installation is missing its {name}/ directory")


def hooks_dir() -> Path:
    return _shipped("hooks")


def prompts_dir() -> Path:
    return _shipped("prompts")


def templates() -> dict[str, Path]:
    """Template name -> directory that `gitevo init DIR --template NAME` copies."""
    root = PACKAGE / "templates"
    return {p.name: p for p in sorted(root.iterdir()) if (p / "gitevo.toml").is_file()}
