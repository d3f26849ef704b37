"""Decode a dataset once; afterwards every evaluation loads the decoded arrays.

Several evaluations may start at once on a cold cache. A lock file lets one of them
decode while the others wait, and the result is written to a temporary file and
renamed into place, so no reader ever sees half a cache file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from harness.formats import Splits

CACHE_VERSION = 1  # bump when the stored arrays change meaning
_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes")


def candidate_dirs(data_root: Path | None = None) -> list[Path]:
    """Where a cache may live, most preferred first; the first writable one wins."""
    dirs = []
    if os.environ.get("GITEVO_CACHE_DIR"):
        dirs.append(Path(os.environ["GITEVO_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append(Path(xdg) / "gitevo" if xdg else Path.home() / ".cache" / "gitevo")
    if data_root is not None:
        dirs.append(data_root / ".gitevo-cache")
    dirs.append(Path(tempfile.gettempdir()) / "gitevo-cache")
    return dirs


def writable_dir(dirs: list[Path]) -> Path:
    for directory in dirs:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    raise OSError(f"no writable cache directory among {', '.join(map(str, dirs))}")


def load_or_build(path: Path, build: Callable[[], Splits]) -> tuple[Splits, bool]:
    """The cached arrays at `path`, building and storing them first if needed.

    Returns the arrays and whether they came from the cache.
    """
    cached = _load(path)
    if cached is not None:
        return cached, True
    with exclusive(path.with_name(path.name + ".lock")):
        cached = _load(path)  # another process may have built it while we waited
        if cached is not None:
            return cached, True
        splits = build()
        _store(path, splits)
    return splits, False


def _load(path: Path) -> Splits | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if any(key not in stored for key in _KEYS):
                return None
            arrays = {key: stored[key] for key in _KEYS}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # missing or damaged: rebuild it
    return Splits(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                  tuple(str(c) for c in arrays["classes"]))


def _store(path: Path, splits: Splits) -> None:
    store_arrays(path, train_x=splits.train_x, train_y=splits.train_y, test_x=splits.test_x,
                 test_y=splits.test_y, classes=np.asarray(splits.classes, dtype=np.str_))


def store_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write `arrays` as one .npz at `path`, atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (one process at a time) for the block."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): concurrent builders just race to rename
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
