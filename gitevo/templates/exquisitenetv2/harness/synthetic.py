"""Tiny synthetic CIFAR look-alike for the smoke fidelity: generated, never read from disk.

Each class has its own colour and stripe orientation, blurred by noise, so a few epochs
learn something and an accuracy is defined, in about a second of training.
"""

from __future__ import annotations

import numpy as np

from harness.formats import Splits

CLASSES = 10
SIZE = 16
TRAIN_PER_CLASS = 40  # the validation split then takes 8 of these per class
TEST_PER_CLASS = 6


def make(seed: int = 0) -> Splits:
    # the data seed is fixed: the training seed must not change the data being scored
    rng = np.random.default_rng(seed)
    palette = rng.uniform(60, 200, size=(CLASSES, 3))
    train_x, train_y = _draw(rng, palette, TRAIN_PER_CLASS)
    test_x, test_y = _draw(rng, palette, TEST_PER_CLASS)
    names = tuple(f"class{i}" for i in range(CLASSES))
    return Splits(train_x, train_y, test_x, test_y, names)


def _draw(rng: np.random.Generator, palette: np.ndarray,
          per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(CLASSES), per_class)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    angle = np.pi * labels / CLASSES
    phase = rng.uniform(0, 2 * np.pi, size=len(labels))
    wave = np.sin((np.cos(angle)[:, None, None] * xs + np.sin(angle)[:, None, None] * ys)
                  * (2 * np.pi / 6) + phase[:, None, None])
    image = palette[labels][:, None, None, :] + 45 * wave[..., None]
    image += rng.normal(0, 30, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels.astype(np.int64)
