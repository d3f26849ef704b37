"""`python score.py`: the trusted scorer. It never imports model.py.

gitevo runs it after the trainer (`train.py --artifacts DIR`) has ended, on a copy of the
exported model, from a copy of this repository as it was before training, and with the
held-out data that the trainer could not see. It checks the exported graph, counts its
parameters from the tensors the graph uses, runs it on the validation and test images,
and writes the metrics that selection uses.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

from harness import data, device, export, fidelity, formats, measure, metrics
from harness.batches import Feeder, channel_stats
from harness.reasons import ModelError

HARNESS_VERSION = "2"
WAIT_POLL = 0.05  # seconds between looks for the artifacts


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="score.py", description="Score the model that train.py "
                                "exported: validation accuracy, test accuracy, parameters.")
    p.add_argument("--artifacts", type=Path, required=True, help="train.py's --artifacts")
    p.add_argument("--fidelity", default="demo", choices=sorted(fidelity.FIDELITIES))
    p.add_argument("--budget", default="full", choices=fidelity.BUDGETS,
                   help="as train.py's: the screen scores on fewer validation images")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--metrics", default="metrics.json", help="where to write the JSON")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--wait", action="store_true", help="load everything, then wait for "
                   "--artifacts to appear (gitevo starts the scorer with the trainer)")
    for flag, kind in (("image-size", int), ("train-per-class", int), ("val-per-class", int)):
        p.add_argument(f"--{flag}", type=kind, default=None, help="override the fidelity's")
    return p.parse_args(argv)


def main(argv: list[str]) -> NoReturn:
    args = parse(argv)
    out = Path(args.metrics).resolve()
    metrics.discard(out)
    try:
        values = score(args)
    except (formats.DataError, fidelity.FidelityError, device.DeviceError, ModelError,
            export.ScoreError) as exc:
        print(" ".join(str(exc).split()), file=sys.stderr, flush=True)
        metrics.finish(1)
    metrics.write(out, values)
    metrics.finish(0)


def score(args: argparse.Namespace) -> dict:
    recipe = fidelity.resolve(args.fidelity, args.budget, image_size=args.image_size,
                              train_per_class=args.train_per_class,
                              val_per_class=args.val_per_class)
    runtime = device.select(args.device)
    prepared = data.prepare(recipe, args.data, args.cache_dir)
    classes, channels = len(prepared.classes), prepared.train_x.shape[-1]
    size = recipe.image_size or prepared.train_x.shape[1]
    # the same normalisation the trainer used: from the same training images
    feeder = Feeder(runtime, recipe.image_size, *channel_stats(prepared.train_x))
    export.warm()
    if args.wait:
        _wait_for(args.artifacts)
    program = export.load(args.artifacts, channels, size, classes)
    params = export.count(program)
    model = program.module().to(runtime.device)
    val = _accuracy(model, feeder, prepared.val_x, prepared.val_y, recipe, runtime, classes)
    test = _accuracy(model, feeder, prepared.test_x, prepared.test_y, recipe, runtime,
                     classes)
    print(f"accuracy {val:.4f} (validation)  test {test:.4f}  params {params}", flush=True)
    return {"accuracy": val, "test_accuracy": test, "params": params,
            "val_images": len(prepared.val_y), "test_images": len(prepared.test_y),
            "fidelity": recipe.name, "device": runtime.label, "image_size": size,
            "data": prepared.origin, "harness": HARNESS_VERSION}


def _wait_for(folder: Path) -> None:
    """Until `folder` exists: gitevo renames the artifacts into place whole, once the
    trainer's processes are gone, and stops this process if there is nothing to score."""
    while not folder.is_dir():
        time.sleep(WAIT_POLL)


def _accuracy(model: torch.nn.Module, feeder: Feeder, images, labels,
              recipe: fidelity.Fidelity, runtime: device.Runtime, classes: int) -> float:
    x = feeder.upload(images)
    with torch.no_grad():
        predicted = measure.predict(model, feeder.inference(x, recipe.eval_batch_size),
                                    runtime, classes)
    return measure.accuracy(predicted, labels)
