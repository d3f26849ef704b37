"""Importing an optional engine (ray, submitit) only when its executor is chosen."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingEngine(RuntimeError):
    """gitevo.toml chose an executor whose package is not installed."""


def need(module: str, extra: str, kind: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingEngine(f"[executor] kind = \"{kind}\" needs the {module} package, which "
                            f"is not installed ({exc}); pip install 'gitevo[{extra}]'") from None
