"""The validation split: carved from the training set, the same for every evaluation.

The seed is fixed and independent of the training seed, so every individual, at every
fidelity, is scored on the same held-out images; smaller fidelities use a prefix of
each class's shuffled list, so their data is nested in the larger ones'.
"""

from __future__ import annotations

import numpy as np

VAL_FRACTION = 0.2
SPLIT_SEED = 0


def carve(labels: np.ndarray, classes: int, fraction: float = VAL_FRACTION,
          seed: int = SPLIT_SEED) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per class, shuffled indices of the training part and of the validation part."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        held = round(fraction * len(members))
        if len(members) >= 2:
            held = min(max(held, 1), len(members) - 1)  # keep one of each on both sides
        val.append(members[:held])
        train.append(members[held:])
    return train, val


def pick(by_class: list[np.ndarray], per_class: int | None) -> np.ndarray:
    """The first `per_class` indices of every class (all of them for None)."""
    chosen = [members if per_class is None else members[:per_class] for members in by_class]
    return np.concatenate(chosen).astype(np.int64)
