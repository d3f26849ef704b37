"""Readers for the two on-disk layouts of CIFAR-style data.

* python batches, as in the official `cifar-10-batches-py`: pickled dicts
  `data_batch_1..5` and `test_batch`, each {b'data': uint8 N x 3072 (planar RGB),
  b'labels': [...]}, with optional `batches.meta` naming the classes;
* an image folder: `train/<class>/*` and `test/<class>/*` (JPEG, PNG, ...), classes
  numbered in sorted order, as torchvision's ImageFolder does.

Both return uint8 arrays in NHWC order; a malformed input raises DataError with a
one-line message that names the offending file.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_FILES_PER_WORKER = 4000  # below this, starting processes costs more than it saves
# the only globals a CIFAR pickle needs; anything else in a pickle is refused
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class DataError(Exception):
    """Missing or malformed data; the message is one line and says what to fix."""


@dataclass
class Splits:
    train_x: np.ndarray  # uint8 [N, H, W, C]
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    kind: str  # "batches" or "folder"
    root: Path


def detect(path: Path) -> Layout:
    """Find a known layout at `path` or one directory below it (an unpacked archive)."""
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if not path.is_dir():
        raise DataError(f"data path {path} is not a directory")
    for root in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (root / "data_batch_1").is_file() and (root / "test_batch").is_file():
            return Layout("batches", root)
        if (root / "train").is_dir() and (root / "test").is_dir():
            return Layout("folder", root)
    raise DataError(f"{path}: no CIFAR python batches (data_batch_1..5, test_batch) and no "
                    "image folders (train/<class>/, test/<class>/) found")


def fingerprint(layout: Layout) -> str:
    """Hash that changes when the data does: paths, sizes and mtimes.

    For batches every file is stat'ed. For image folders only the folders are: a
    folder's mtime moves when a file in it is added, removed or renamed, and stat'ing
    60,000 images would cost a second on every run. Editing an image in place under
    the same name is not seen; touch its folder (or delete the cache) after doing so.
    """
    digest = hashlib.sha256(f"{layout.kind}:{layout.root.resolve()}".encode())
    for path in _fingerprinted(layout):
        stat = path.stat()
        digest.update(f"{path.relative_to(layout.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    if layout.kind == "folder":
        for part in ("train", "test"):
            for class_dir in _class_dirs(layout.root / part):
                digest.update("\0".join(_image_names(class_dir)).encode())
    return digest.hexdigest()[:24]


def read(layout: Layout) -> Splits:
    return _read_batches(layout.root) if layout.kind == "batches" else _read_folder(layout.root)


def _fingerprinted(layout: Layout) -> list[Path]:
    if layout.kind == "batches":
        names = [*TRAIN_BATCHES, "test_batch", "batches.meta"]
        return [layout.root / n for n in names if (layout.root / n).is_file()]
    return [d for part in ("train", "test") for d in _class_dirs(layout.root / part)]


# ---- python batches --------------------------------------------------------------------------

class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing (the batches layout needs data_batch_1..5 and "
                        "test_batch)")
    try:
        with open(path, "rb") as handle:
            content = _CifarUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a CIFAR python batch: {exc}") from exc
    if not isinstance(content, dict):
        raise DataError(f"{path} is not a CIFAR python batch: expected a dict")
    return content


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    content = _load_pickle(path)
    data, labels = content.get(b"data"), content.get(b"labels")
    if data is None or labels is None:
        raise DataError(f"{path}: a CIFAR batch needs the keys b'data' and b'labels'")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(f"{path}: b'data' must be uint8 N x 3072, found {data.dtype} "
                        f"{'x'.join(map(str, data.shape))}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {len(labels)} labels for {data.shape[0]} images")
    # rows hold the red plane, then green, then blue, each 32x32 row-major
    pixels = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(pixels), labels


def _read_batches(root: Path) -> Splits:
    parts = [_batch_arrays(root / name) for name in TRAIN_BATCHES]
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    test_x, test_y = _batch_arrays(root / "test_batch")
    classes = _batch_class_names(root, int(max(train_y.max(), test_y.max())) + 1)
    for name, labels in (("training", train_y), ("test", test_y)):
        if labels.min() < 0 or labels.max() >= len(classes):
            raise DataError(f"{root}: {name} labels fall outside 0..{len(classes) - 1}")
    return Splits(train_x, train_y, test_x, test_y, classes)


def _batch_class_names(root: Path, seen: int) -> tuple[str, ...]:
    meta = root / "batches.meta"
    if meta.is_file():
        names = _load_pickle(meta).get(b"label_names")
        if names:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return tuple(str(i) for i in range(seen))


# ---- image folders ---------------------------------------------------------------------------

def _class_dirs(part: Path) -> list[Path]:
    return sorted(p for p in part.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_names(class_dir: Path) -> list[str]:
    # scandir and plain strings: this runs on every start, over 60,000 names
    with os.scandir(class_dir) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)


def _images_in(class_dir: Path) -> list[Path]:
    return [class_dir / name for name in _image_names(class_dir)]


def _read_folder(root: Path) -> Splits:
    classes = tuple(p.name for p in _class_dirs(root / "train"))
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders")
    test_classes = tuple(p.name for p in _class_dirs(root / "test"))
    if test_classes != classes:
        raise DataError(f"{root}: test classes {list(test_classes)} differ from training "
                        f"classes {list(classes)}")
    train_x, train_y = _decode_part(root / "train", classes)
    test_x, test_y = _decode_part(root / "test", classes)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{root}: training images are {train_x.shape[1:3]}, test images "
                        f"{test_x.shape[1:3]}")
    return Splits(train_x, train_y, test_x, test_y, classes)


def _decode_part(part: Path, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    files, labels = [], []
    for index, name in enumerate(classes):
        found = _images_in(part / name)
        if not found:
            raise DataError(f"{part / name} holds no images")
        files += found
        labels += [index] * len(found)
    images = _decode_all(files)
    first = images[0].shape
    for path, image in zip(files, images, strict=True):
        if image.shape != first:
            raise DataError(f"{path} is {image.shape[1]}x{image.shape[0]}, but {files[0]} is "
                            f"{first[1]}x{first[0]}: all images must share one size")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _decode_all(files: list[Path]) -> list[np.ndarray]:
    """Decode in worker processes when there are many files (threads contend for the GIL).

    Forking is safe here: the harness loads data before torch has run anything, so no
    thread pool exists yet to be copied half-initialised.
    """
    workers = min(os.cpu_count() or 1, len(files) // _FILES_PER_WORKER)
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        return [_decode_one(path) for path in files]
    chunks = [files[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        decoded = list(pool.map(_decode_chunk, chunks))
    # undo the round-robin interleaving so images line up with their labels again
    images: list[np.ndarray] = [None] * len(files)  # type: ignore[list-item]
    for offset, chunk in enumerate(decoded):
        images[offset::workers] = chunk
    return images


def _decode_chunk(files: list[Path]) -> list[np.ndarray]:
    return [_decode_one(path) for path in files]


def _decode_one(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be decoded as an image: {exc}") from exc
