"""Batched augmentation on whatever device the images are on; no per-sample Python.

The geometric part (shift and flip) is one row gather over the uint8 NHWC pixels, as
they are stored. The photometric part (brightness, contrast, saturation) is linear in
the pixels, so it comes out as one 3x3 matrix and one offset per image, which the
caller merges with normalisation into a single batched matmul over planar (NCHW)
floats: on a CPU that matmul is 8x faster planar than interleaved. All random
draws come from the harness's generator, so a seed fixes the result.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as torchvision's grayscale uses


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: building a tensor from Python values on a GPU is a blocking
    # copy that would stall the queue of kernels on every batch
    luma = torch.tensor(LUMA, device=device).view(1, 1, 3)
    return luma, torch.eye(3, device=device).view(1, 3, 3)


def shift_and_flip(pixels: torch.Tensor, shift: int, flip: bool,
                   gen: torch.Generator) -> torch.Tensor:
    """Move each NHWC image by up to `shift` pixels each way (black fill) and mirror a
    random half of them left to right, with one gather over the padded images."""
    n, h, w, c = pixels.shape
    dev = pixels.device
    arange_h = torch.arange(h, device=dev)
    arange_w = torch.arange(w, device=dev)
    dy = torch.randint(0, 2 * shift + 1, (n, 1), generator=gen, device=dev)
    dx = torch.randint(0, 2 * shift + 1, (n, 1), generator=gen, device=dev)
    cols = arange_w.expand(n, w)
    if flip:
        mirror = torch.rand(n, 1, generator=gen, device=dev) < 0.5
        cols = torch.where(mirror, w - 1 - arange_w, arange_w)
    padded = F.pad(pixels, (0, 0, shift, shift, shift, shift)) if shift else pixels
    width = w + 2 * shift
    # source pixel of every output pixel, as a row of the flattened padded batch
    source = (dy + arange_h).unsqueeze(2) * width + (dx + cols).unsqueeze(1)
    source = source + torch.arange(n, device=dev).view(n, 1, 1) * (padded.shape[1] * width)
    return padded.reshape(-1, c).index_select(0, source.view(-1)).view(n, h, w, c)


def colour_jitter(x: torch.Tensor, strength: float,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random brightness b, contrast c, saturation s, each in [1 - strength, 1 + strength].

    For float NCHW RGB images `x`, returns (weight [n, 3, 3], bias [n, 3, 1]) so that
    `weight @ x.view(n, 3, -1) + bias` equals applying the three in turn (torchvision's
    order), without the clamps in between:

        out = c * b * S(s) x + (1 - c) * b * mean_luma(x),  S(s) = s*I + (1 - s)*1 luma^T
    """
    n = x.shape[0]
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    b, c, s = (low + (high - low) * torch.rand(n, 1, 1, generator=gen, device=x.device)
               for _ in range(3))
    luma, eye = _constants(x.device)
    weight = c * b * (s * eye + (1 - s) * luma.expand(1, 3, 3))
    mean_luma = (x.mean((2, 3)) * luma.view(1, 3)).sum(1).view(n, 1, 1)
    bias = ((1 - c) * b * mean_luma).expand(n, 3, 1)
    return weight, bias
