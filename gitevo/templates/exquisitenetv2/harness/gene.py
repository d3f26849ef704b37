"""Load the gene file and build what the harness needs from it, reporting faults clearly."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn

from harness.reasons import ModelError, describe

MODEL_CLASS = "ExquisiteNetV2"
OPTIMIZER_FACTORY = "get_optimizer"


def load(path: Path) -> types.ModuleType:
    """Import model.py from `path`; called only after the harness has taken its references."""
    if not path.is_file():
        raise ModelError(f"importing model.py: {path} does not exist")
    spec = importlib.util.spec_from_file_location("model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module  # so dataclasses, pickling and the like resolve it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(describe(exc, "importing model.py")) from exc
    return module


def build(module: types.ModuleType, classes: int, channels: int) -> nn.Module:
    factory = getattr(module, MODEL_CLASS, None)
    if factory is None:
        raise ModelError(f"model.py defines no {MODEL_CLASS}")
    try:
        # positional, as the seed's signature is (class_num, img_channels): an evolved
        # model may rename its arguments but must keep their order
        model = factory(classes, channels)
    except Exception as exc:
        raise ModelError(describe(exc, f"building {MODEL_CLASS}({classes}, {channels})")) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{MODEL_CLASS}(...) returned {type(model).__name__}, not an nn.Module")
    return model


def optimizer(module: types.ModuleType, model: nn.Module, lr: float,
              weight_decay: float) -> torch.optim.Optimizer:
    factory = getattr(module, OPTIMIZER_FACTORY, None)
    if factory is None:
        raise ModelError(f"model.py defines no {OPTIMIZER_FACTORY}")
    try:
        opt = factory(model, lr, weight_decay)
    except Exception as exc:
        raise ModelError(describe(exc, f"{OPTIMIZER_FACTORY}(model, {lr}, {weight_decay})")
                         ) from exc
    if not isinstance(opt, torch.optim.Optimizer):
        raise ModelError(f"{OPTIMIZER_FACTORY} returned {type(opt).__name__}, "
                         "not a torch.optim.Optimizer")
    return opt
