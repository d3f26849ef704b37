"""The public training part: the only data the trainer reads.

The prepare step (trusted) carves the validation images out of the training set and
writes what is left, images and labels, to <cache>/exquisitenetv2-train-<source>.npz,
one block per class in the split's order, so that every fidelity's `train_per_class`
prefix picks exactly the images it picked from the whole set. Validation and test images
never enter this file: they stay in <cache>/heldout/, for the scorer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness import cache, split
from harness.fidelity import Fidelity
from harness.formats import DataError, Splits

VERSION = 1


def name(source: str) -> str:
    """The part's file name: by the --data string, which the trainer knows without
    being able to look at what it names."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return f"exquisitenetv2-train-{digest}-v{VERSION}.npz"


def write(directory: Path, source: str, splits: Splits, origin: str) -> Path:
    """Store the training part of `splits` (validation carved out) in `directory`."""
    train_parts, _ = split.carve(splits.train_y, len(splits.classes))
    order = np.concatenate(train_parts).astype(np.int64)
    path = directory / name(source)
    cache.store_arrays(path, train_x=splits.train_x[order], train_y=splits.train_y[order],
                       counts=np.asarray([len(p) for p in train_parts], dtype=np.int64),
                       classes=np.asarray(splits.classes, dtype=np.str_),
                       origin=np.asarray(origin, dtype=np.str_))
    return path


def find(source: str, cache_dir: Path | None) -> Path | None:
    dirs = [cache_dir] if cache_dir is not None else cache.candidate_dirs(None)
    return next((d / name(source) for d in dirs if (d / name(source)).is_file()), None)


def load(fidelity: Fidelity, source: str,
         cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(images, labels, classes, origin) of the fidelity's training images."""
    path = find(source, cache_dir)
    if path is None:
        raise DataError(f"no prepared training data for --data {source} (run `python "
                        "train.py --prepare --data ...` first: gitevo runs it before "
                        "evaluations)")
    with np.load(path, allow_pickle=False) as stored:
        x, y, counts = stored["train_x"], stored["train_y"], stored["counts"]
        classes, origin = tuple(str(c) for c in stored["classes"]), str(stored["origin"])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    parts = [np.arange(s, s + c) for s, c in zip(starts, counts, strict=True)]
    chosen = split.pick(parts, fidelity.train_per_class)
    return x[chosen], y[chosen], classes, origin
