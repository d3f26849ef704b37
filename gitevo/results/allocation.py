"""The allocation's arms as tables show them: calls, mean reward, cost per improvement and
the share of the next calls, per model, mutation direction and persona."""

from __future__ import annotations

from dataclasses import dataclass

from gitevo.config import Config
from gitevo.pipeline import arms
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.variation.prompts import PromptLibrary


@dataclass(frozen=True)
class ArmRow:
    factor: str
    name: str
    calls: int  # children whose conversation used the arm
    mean_reward: float | None
    cost: float  # USD
    improvements: int  # children that entered the population
    share: float  # of the next generation's draws


def rows(store: Store, config: Config, run: str) -> tuple[str, list[ArmRow]]:
    """The allocation's mode and one row per arm; no rows for an offline run."""
    if config.llm.provider == "offline":
        return "offline", []
    library = PromptLibrary.for_config(store.root, config)
    history = ledger.history(store, run)
    state = arms.allocation(config, library.directions, library.personas, history)
    generation = history[-1].generation + 1 if history else 1
    found = []
    for factor in arms.FACTORS:
        shares = state.shares(factor, f"gitevo:{config.evolution.seed}:{generation}:{factor}")
        for name in state.names[factor]:
            arm = state.arms[factor].get(name) if state.arms else None
            found.append(ArmRow(factor, name, arm.calls if arm else 0,
                                arm.mean if arm else None, arm.cost if arm else 0.0,
                                arm.improvements if arm else 0, shares[name]))
    return state.mode, found


def cost_per_improvement(row: ArmRow) -> str:
    if not row.improvements:
        return "-"
    return f"${row.cost / row.improvements:.4f}"
