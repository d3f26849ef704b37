"""Get a dataset into memory once, as uint8 arrays, and split it for one fidelity.

`--data cifar10` downloads the official python batches with torchvision into the cache
directory (once); `--data PATH` reads python batches or image folders from PATH. Either
way the decoded arrays are cached, so images are decoded once per dataset, not once
per evaluation and never once per epoch.

The whole decoded dataset (and a download) holds the labels that scores are decided
with, so it lives in <cache>/heldout/, which gitevo hides from the trainer; the trainer
reads only the public training part (harness.public) that the prepare step writes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import cache, formats, split, synthetic
from harness.fidelity import Fidelity
from harness.formats import DataError, Splits

HELDOUT = "heldout"  # gitevo shows <cache>/heldout to its prepare and score commands only
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download counts as failed


@dataclass
class Loaded:
    splits: Splits
    origin: str  # where the pixels came from, for the metrics
    from_cache: bool


@dataclass
class Prepared:
    """The arrays one evaluation trains and scores on (uint8 NHWC images, int64 labels)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    origin: str


def load(source: str, cache_dir: Path | None = None) -> Loaded:
    """Decoded arrays for `source` ("cifar10" or a path), from the cache when possible."""
    root = _download_cifar10(cache_dir) if source == "cifar10" else Path(source).expanduser()
    layout = formats.detect(root)
    name = f"exquisitenetv2-{layout.kind}-{formats.fingerprint(layout)}-v{cache.CACHE_VERSION}"
    found = _existing(cache_dir, layout.root, f"{HELDOUT}/{name}.npz")
    directory = found.parent if found else _cache_dir(cache_dir, layout.root) / HELDOUT
    directory.mkdir(parents=True, exist_ok=True)
    splits, hit = cache.load_or_build(directory / f"{name}.npz", lambda: formats.read(layout))
    return Loaded(splits, str(layout.root), hit)


def prepare(fidelity: Fidelity, source: str, cache_dir: Path | None = None) -> Prepared:
    """Load (or generate, for smoke) the data and cut the fidelity's subsets from it."""
    if fidelity.synthetic:
        splits, origin = synthetic.make(), "synthetic"
    else:
        loaded = load(source, cache_dir)
        splits, origin = loaded.splits, loaded.origin
    train_parts, val_parts = split.carve(splits.train_y, len(splits.classes))
    train_idx = split.pick(train_parts, fidelity.train_per_class)
    val_idx = split.pick(val_parts, fidelity.val_per_class)
    return Prepared(splits.train_x[train_idx], splits.train_y[train_idx],
                    splits.train_x[val_idx], splits.train_y[val_idx],
                    splits.test_x, splits.test_y, splits.classes, origin)


def cache_root(explicit: Path | None = None) -> Path:
    """The cache directory that prepare writes into: the first writable one."""
    return _cache_dir(explicit, None)


def _cache_dir(explicit: Path | None, data_root: Path | None) -> Path:
    dirs = [explicit] if explicit is not None else cache.candidate_dirs(data_root)
    try:
        return cache.writable_dir(dirs)
    except OSError as exc:
        raise DataError(str(exc)) from exc


def _existing(explicit: Path | None, data_root: Path | None, relative: str) -> Path | None:
    """An earlier run's file in any cache directory, writable or not: once gitevo's prepare
    step has filled the cache, candidates may only read it."""
    dirs = [explicit] if explicit is not None else cache.candidate_dirs(data_root)
    return next((d / relative for d in dirs if (d / relative).is_file()), None)


def _download_cifar10(cache_dir: Path | None) -> Path:
    found = _existing(cache_dir, None, f"{HELDOUT}/torchvision/cifar-10-batches-py/test_batch")
    if found is not None and (found.parent / "data_batch_1").is_file():
        return found.parent  # downloaded before: no network needed
    root = _cache_dir(cache_dir, None) / HELDOUT / "torchvision"  # searched above
    batches = root / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    # evaluations that start together must not download and unpack over each other
    with cache.exclusive(root / ".download.lock"):
        if not (batches / "test_batch").is_file():
            _fetch_cifar10(root)
    return batches


def _fetch_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # fail, rather than hang, when offline
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # any failure of the download means the same to the user
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(f"cannot download CIFAR-10 into {root} ({reason}); pass --data PATH "
                        "to a local copy (python batches or train/ and test/ image "
                        "folders)") from exc
    finally:
        socket.setdefaulttimeout(previous)
