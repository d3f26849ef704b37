"""Batches cut from tensors that already sit on the training device.

The uint8 images go to the device once (150 MB for all of CIFAR-10); a batch is an
index into them, shifted and flipped as uint8, converted to float, colour-jittered and
normalised in one batched matmul, and upsampled for the paper fidelity, all there. The
stored NHWC layout, viewed as NCHW, is already channels_last, which is what the
convolutions want, so nothing is transposed on the way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from harness.augment import colour_jitter, shift_and_flip
from harness.device import Runtime
from harness.fidelity import Fidelity


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 NHWC images, in [0, 1] units.

    From each channel's histogram of the 256 byte values, a chunk of images at a time:
    exact sums in a third of the time of summing floats, and no copy of 40,000 images.
    """
    channels = images.shape[-1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, len(images), chunk):
        flat = images[start:start + chunk].reshape(-1, channels)
        for c in range(channels):
            counts[c] += np.bincount(flat[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64)
    count = max(1, images.size // channels)
    mean = counts @ values / count
    var = np.maximum(counts @ np.square(values) / count - mean**2, 1e-6)
    return (mean / 255.0).tolist(), (np.sqrt(var) / 255.0).tolist()


class Feeder:
    """Turns uint8 NHWC images on the device into normalised model inputs."""

    def __init__(self, runtime: Runtime, image_size: int | None,
                 mean: list[float], std: list[float]):
        self.runtime = runtime
        self.image_size = image_size
        dev = runtime.device
        self._mean = torch.tensor(mean, device=dev)
        self._std = torch.tensor(std, device=dev)
        self._per_byte = 1.0 / (255.0 * self._std)  # 0..255 -> normalised, per channel
        self._shift = self._mean / self._std
        # normalised values of black and white, to clamp the colour jitter's result
        self._low, self._high = -self._shift, (1.0 - self._mean) / self._std

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """Copy an array (images or labels) to the training device, once."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.runtime.device.type == "cuda":
            return tensor.pin_memory().to(self.runtime.device, non_blocking=True)
        return tensor

    def to_input(self, pixels: torch.Tensor, fidelity: Fidelity | None = None,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (channels_last); augmented when a fidelity
        and a generator are given."""
        n, h, w, c = pixels.shape
        augmenting = fidelity is not None and gen is not None
        if augmenting:
            shift = round(fidelity.translate * w)
            if shift or fidelity.flip:
                pixels = shift_and_flip(pixels, shift, fidelity.flip, gen)
        if augmenting and fidelity.jitter > 0 and c == 3:
            # planar floats: the per-image 3x3 matmul is cheap on contiguous rows
            x = pixels.permute(0, 3, 1, 2).contiguous().float()
            weight, bias = colour_jitter(x, fidelity.jitter, gen)
            # fold normalisation into the jitter: one batched matmul does both
            weight = weight * self._per_byte.view(1, 3, 1)
            bias = bias * self._per_byte.view(1, 3, 1) - self._shift.view(1, 3, 1)
            x = torch.baddbmm(bias, weight, x.view(n, c, h * w))
            x = torch.clamp(x, self._low.view(1, 3, 1), self._high.view(1, 3, 1))
            x = x.view(n, c, h, w)
        else:
            x = torch.addcmul(-self._shift, pixels.float(), self._per_byte)
            x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last already
        # upsampling after normalising is exact (bilinear weights sum to one) and cheaper
        if self.image_size is not None and self.image_size != w:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)
        fmt = torch.channels_last if self.runtime.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def training(self, x: torch.Tensor, y: torch.Tensor, fidelity: Fidelity,
                 gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches; the last partial batch is dropped
        (a batch of one would break BatchNorm, and equal batches keep steps comparable)."""
        count = x.shape[0]
        size = min(fidelity.batch_size, count)
        order = torch.randperm(count, generator=gen, device=x.device)
        for start in range(0, count - size + 1, size):
            idx = order[start:start + size]
            yield self.to_input(x[idx], fidelity, gen), y[idx]

    def inference(self, x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, unaugmented; labels stay with the caller."""
        for start in range(0, x.shape[0], batch_size):
            yield self.to_input(x[start:start + batch_size])


def steps_per_epoch(count: int, batch_size: int) -> int:
    return max(1, count // min(batch_size, count))
