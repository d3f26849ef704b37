"""Learning-rate schedules, applied by the harness to whatever optimizer the gene returns.

Each parameter group keeps the ratio to the base rate that get_optimizer gave it; the
schedule only supplies a factor.

* cosine: linear warmup, then cosine decay to zero over the fixed epoch budget;
* plateau: linear warmup, then the paper's ReduceLROnPlateau on the epoch's training
  loss (factor 0.7, patience 4, relative threshold 1e-4), stopping once the rate falls
  below `min_lr`.
"""

from __future__ import annotations

import math

import torch

from harness.fidelity import Fidelity

PLATEAU_THRESHOLD = 1e-4  # relative improvement that counts, as torch's default


class LearningRate:
    def __init__(self, optimizer: torch.optim.Optimizer, fidelity: Fidelity,
                 steps_per_epoch: int):
        self.optimizer = optimizer
        self.fidelity = fidelity
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.warmup_steps = round(fidelity.warmup_epochs * steps_per_epoch)
        self.total_steps = fidelity.epochs * steps_per_epoch
        self.plateau_scale = 1.0
        self.best_loss = math.inf
        self.bad_epochs = 0

    def factor(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.fidelity.schedule == "plateau":
            return warm * self.plateau_scale
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max(0, step - self.warmup_steps) / decay_steps)
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, step: int) -> None:
        factor = self.factor(step)
        # groups a custom optimizer adds later keep the rate they were given
        for group, base in zip(self.optimizer.param_groups, self.base, strict=False):
            group["lr"] = base * factor

    def end_epoch(self, train_loss: float) -> bool:
        """Account for an epoch's mean training loss; False when training should stop."""
        if self.fidelity.schedule != "plateau":
            return True
        if train_loss < self.best_loss * (1.0 - PLATEAU_THRESHOLD):
            self.best_loss, self.bad_epochs = train_loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.fidelity.plateau_patience:
            self.plateau_scale *= self.fidelity.plateau_factor
            self.bad_epochs = 0
        return self.fidelity.lr * self.plateau_scale >= self.fidelity.min_lr

    @property
    def current(self) -> float:
        return self.optimizer.param_groups[0]["lr"] if self.optimizer.param_groups else 0.0
