"""Where evaluations run. Every executor takes Jobs and yields (job, Evaluation) as each ends,
and calls `on_start(job)` (from any thread) as each begins, for progress displays."""

from __future__ import annotations

from gitevo.config import Config
from gitevo.executors.local import LocalExecutor


def make_executor(config: Config) -> LocalExecutor:
    """The executor that gitevo.toml's [executor] section names (validated by config)."""
    return LocalExecutor(config.executor.workers)
