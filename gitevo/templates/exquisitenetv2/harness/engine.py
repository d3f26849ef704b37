"""The training loop: the same for every fidelity, so only the recipe changes between them."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness import guard
from harness.batches import Feeder, steps_per_epoch
from harness.device import Runtime
from harness.fidelity import Fidelity
from harness.schedule import LearningRate


@dataclass
class FitReport:
    epochs: int
    train_loss: float  # mean over the last epoch
    seconds: float
    images: int  # training images processed, for throughput
    diverged: bool
    steps: int = 0  # optimizer steps the harness ran: more training is bought only here


def fit(model: nn.Module, opt: torch.optim.Optimizer, feeder: Feeder, x: torch.Tensor,
        y: torch.Tensor, fidelity: Fidelity, runtime: Runtime, gen: torch.Generator,
        log: Callable[[str], None] | None = None,
        after_epoch: Callable[[int, nn.Module], None] | None = None) -> FitReport:
    """Train `model` in place on device tensors `x` (uint8 NHWC) and `y`; `after_epoch`
    (the learning curve) is called with each finished epoch's number and the model."""
    log = log or _stdout
    steps = steps_per_epoch(x.shape[0], fidelity.batch_size)
    schedule = LearningRate(opt, fidelity, steps)
    scaler = runtime.grad_scaler()
    clock = guard.CLOCK
    start, step, images, loss_mean, epoch = clock(), 0, 0, math.nan, 0
    diverged = False
    for epoch in range(1, fidelity.epochs + 1):
        model.train()
        # summed on the device: reading the loss every step would stall a GPU
        loss_sum = torch.zeros((), device=runtime.device)
        for inputs, targets in feeder.training(x, y, fidelity, gen):
            schedule.apply(step)
            with runtime.autocast():
                loss = F.cross_entropy(model(inputs), targets)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach().float()
            step += 1
            images += targets.shape[0]
        loss_mean = loss_sum.item() / steps
        log(f"epoch {epoch}/{fidelity.epochs}  loss {loss_mean:.4f}  "
            f"lr {schedule.current:.5f}  {clock() - start:.1f}s")
        if not math.isfinite(loss_mean):
            diverged = True  # scored as it stands; more steps cannot recover NaN weights
            break
        if after_epoch is not None:
            after_epoch(epoch, model)
        if not schedule.end_epoch(loss_mean):
            break
    return FitReport(epoch, loss_mean, clock() - start, images, diverged, step)


def _stdout(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
