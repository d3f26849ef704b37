"""A fingerprint of what a gene does, for gitevo's duplicate check.

Two versions of model.py that build the same network and train it the same way are one
individual, however differently they are written; two that differ in anything that
training or inference can see (a layer, an initialisation, the learning rate or weight
decay that get_optimizer applies, a momentum) are two. The check trains the freshly built
model for a few steps from a fixed seed with the gene's own optimizer, so the optimizer's
state (momentum buffers, Adam's moments) has shaped the weights, and this hashes the
parameter count with the outputs on a fixed probe batch. Exact bytes: a change too small to
see in float32 would also be too small to train differently.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

PROBE_SEED = 1729  # the probe batch is the same for every gene, whatever RNG it consumes


def fingerprint(model: nn.Module, params: int, shape: tuple[int, ...],
                device: torch.device | str) -> str:
    probe = torch.randn(*shape, generator=torch.Generator().manual_seed(PROBE_SEED))
    model.eval()
    with torch.no_grad():
        out = model(probe.to(device))
    if not isinstance(out, torch.Tensor):
        return ""  # the forward pass check says what is wrong with such a model
    data = out.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(str(params).encode() + b"|" + data).hexdigest()[:32]
