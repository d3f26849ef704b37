"""The numbers that decide selection: parameter count and accuracy.

Everything here goes through the references `guard` took before model.py was
imported, and binds them to locals on entry, so rebinding names anywhere (in this
module, in torch, in builtins) during the candidate's forward pass changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from harness import guard
from harness.device import Runtime
from harness.reasons import ModelError


def parameters(module: nn.Module) -> list[torch.Tensor]:
    """Every distinct parameter registered anywhere in the module tree."""
    get, values = guard.OBJECT_GETATTR, guard.DICT_VALUES
    found: dict[int, torch.Tensor] = {}
    visited: set[int] = set()
    stack = [module]
    while stack:
        current = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        state = get(current, "__dict__")  # bypasses any __getattr__ the model defines
        for param in values(state.get("_parameters") or {}):
            if param is not None:
                found.setdefault(id(param), param)
        stack.extend(child for child in values(state.get("_modules") or {}) if child is not None)
    return list(found.values())


def count_parameters(module: nn.Module) -> int:
    numel = guard.TENSOR_BASE.numel
    with guard.NO_TORCH_FUNCTION():  # a Parameter subclass cannot lie about its size
        return sum(int(numel(p)) for p in parameters(module))


def check_optimizer(opt: torch.optim.Optimizer, module: nn.Module) -> None:
    """Refuse optimizers that train tensors the parameter count does not see."""
    known = {id(p) for p in parameters(module)}
    for group in list(opt.param_groups):
        for tensor in list(group.get("params", [])):
            if id(tensor) not in known:
                shape = "x".join(str(d) for d in getattr(tensor, "shape", ()))
                raise ModelError(f"get_optimizer trains a tensor ({shape}) that is not a "
                                 "registered parameter of the model, so it would escape "
                                 "the parameter count")


def predict(model: nn.Module, inputs: Iterable[torch.Tensor], runtime: Runtime,
            classes: int) -> np.ndarray:
    """Predicted class of every input, in order; the labels never reach the model."""
    set_mode, to_labels = guard.MODULE.train, _to_labels
    concatenate = np.concatenate
    set_mode(model, False)
    chunks = []
    with torch.inference_mode(), runtime.autocast():
        for x in inputs:
            chunks.append(to_labels(model(x), x.shape[0], classes))
    return concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    hits = guard.NDARRAY.__eq__(predicted, labels)
    return float(guard.NDARRAY.sum(hits)) / max(1, len(labels))


def _to_labels(logits: object, batch: int, classes: int) -> np.ndarray:
    base, ndarray = guard.TENSOR_BASE, guard.NDARRAY
    if type(logits) is not guard.TENSOR:
        raise ModelError(f"forward returned {type(logits).__name__}, expected a torch.Tensor "
                         f"of shape [{batch}, {classes}]")
    with guard.NO_TORCH_FUNCTION():
        shape = tuple(base.size(logits))
        if shape != (batch, classes):
            raise ModelError(f"forward returned shape {list(shape)}, expected "
                             f"[{batch}, {classes}]")
        scores = base.numpy(base.cpu(base.float(base.detach(logits))))
    return ndarray.argmax(scores, axis=1)
