"""The training recipe in words, written from the fidelity table the harness trains by.

    python -m harness.recipe --fidelity demo

gitevo runs this once per run (`[prompt] recipe` in gitevo.toml) and puts what it prints
into the task description every LLM prompt starts with, so the prompts can never tell
the model about a recipe other than the one `train.py` runs. It imports no torch: it
reads the table and nothing else.
"""

from __future__ import annotations

import argparse
import sys

from harness import fidelity
from harness.fidelity import FULL_TRAIN_PER_CLASS, Fidelity

CLASSES = 10
VALIDATION_PER_CLASS = 1000  # the 20% validation part of CIFAR-10's training set
SYNTHETIC_SIDE = 16  # harness/synthetic.py: the smoke fidelity's generated images


def describe(name: str) -> str:
    """The recipe of fidelity `name` at full budget, then at a screening rung's."""
    full = fidelity.resolve(name)
    screen = fidelity.resolve(name, budget="screen")
    return "\n".join([
        f"Training recipe at fidelity {name!r} (every variant is trained from scratch, "
        "with the same seed):",
        f"- data: {_data(full)}",
        f"- {_epochs(full)}, batch size {full.batch_size}",
        f"- optimizer: whatever `get_optimizer` in model.py returns, called with "
        f"lr={full.lr:g} and weight_decay={full.weight_decay:g}; the harness scales each "
        f"parameter group's learning rate by {_schedule(full)}",
        "- loss: cross-entropy",
        f"- augmentation: {_augmentation(full)}",
        f"- measured: {_validation(full)}; the test images are never used for selection",
        f"A screening run (budget \"screen\", a fidelity cascade's cheap first look) trains "
        f"the same way but shorter: {_epochs(screen)} on {_data(screen)}; "
        f"{_validation(screen)}."])


def _epochs(r: Fidelity) -> str:
    count = f"{r.epochs} epoch{'s' if r.epochs != 1 else ''}"
    return f"at most {count} (the schedule may stop it sooner)" if r.schedule == "plateau" \
        else count


def _data(r: Fidelity) -> str:
    if r.synthetic:
        return f"synthetic {SYNTHETIC_SIDE}x{SYNTHETIC_SIDE} images generated in-process"
    per_class = r.train_per_class or FULL_TRAIN_PER_CLASS
    side = r.image_size or 32
    resize = f", upsampled bilinearly to {side}x{side}" if r.image_size else ""
    return (f"{per_class * CLASSES:,} CIFAR-10 training images ({per_class:,} per class, "
            f"32x32 RGB{resize}, {CLASSES} classes)")


def _schedule(r: Fidelity) -> str:
    warmup = (f"a linear warm-up over {r.warmup_epochs:g} "
              f"epoch{'s' if r.warmup_epochs != 1 else ''}, then ")
    if r.schedule == "cosine":
        return warmup + "a cosine decay to zero by the last epoch"
    return (warmup + f"ReduceLROnPlateau on the training loss (factor {r.plateau_factor:g}, "
            f"patience {r.plateau_patience}), stopping once it falls below {r.min_lr:g}")


def _augmentation(r: Fidelity) -> str:
    parts = ["random horizontal flips"] if r.flip else []
    if r.translate:
        parts.append(f"random shifts of up to {r.translate:.0%} of the side")
    if r.jitter:
        parts.append(f"brightness, contrast and saturation jitter of {r.jitter:g}")
    return ", ".join(parts) or "none"


def _validation(r: Fidelity) -> str:
    if r.synthetic:
        return "accuracy on held-out synthetic images"
    per_class = r.val_per_class or VALIDATION_PER_CLASS
    return (f"accuracy on {per_class * CLASSES:,} validation images carved from the "
            "training set (the same images for every variant)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.recipe",
                                     description="Print the training recipe of a fidelity.")
    parser.add_argument("--fidelity", default="demo", choices=sorted(fidelity.FIDELITIES))
    print(describe(parser.parse_args(argv).fidelity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
