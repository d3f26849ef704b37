"""The learning curve gitevo reads while the trainer runs (`--progress FILE`).

After every epoch the trainer appends one JSON line: `{"at": epoch, "of": epochs,
"fit_accuracy": ...}`, the accuracy on a fixed sample of the training images, unaugmented,
in eval mode. The trainer never holds validation labels (the scorer does), so the curve
follows how fast a model fits, which is what early stopping compares between a child and
its parent at the same epoch; the score itself is the scorer's, on the whole held-out
split. The sample is small: a few percent of an epoch's work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from harness import guard, measure
from harness.batches import Feeder
from harness.device import Runtime
from harness.fidelity import Fidelity

SAMPLE = 1000  # training images the curve is measured on


class Curve:
    """Appends a point per epoch to `path`, and times itself."""

    def __init__(self, path: Path, feeder: Feeder, images: np.ndarray, labels: np.ndarray,
                 recipe: Fidelity, runtime: Runtime, classes: int):
        # evenly spread over the training part, the same images for every individual
        picked = np.linspace(0, len(labels) - 1, num=min(SAMPLE, len(labels))).astype(np.int64)
        self.path, self.feeder, self.recipe = path, feeder, recipe
        self.runtime, self.classes = runtime, classes
        self.x, self.labels = feeder.upload(images[picked]), labels[picked]
        self.seconds = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")  # a rerun's curve starts afresh

    def __call__(self, epoch: int, model: torch.nn.Module) -> None:
        start = guard.CLOCK()
        with torch.no_grad():
            predicted = measure.predict(model, self.feeder.inference(
                self.x, self.recipe.eval_batch_size), self.runtime, self.classes)
        point = {"at": epoch, "of": self.recipe.epochs,
                 "fit_accuracy": round(measure.accuracy(predicted, self.labels), 6)}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(point) + "\n")
        self.seconds += guard.CLOCK() - start
