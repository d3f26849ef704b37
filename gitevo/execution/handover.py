"""What crosses from the untrusted trainer to the trusted scorer, and how.

The scorer runs from a copy of the tree as it was before the trainer started (each file
checked against the fingerprint taken then, so a trainer that rewrote the scoring code, or
planted a module beside it, is caught and its planted files never copied), and it reads a
copy of the plain files the trainer left in its artifacts folder: no links, no devices,
within a size and count limit. Both copies go to a folder made after every process the
trainer started is gone, which it never knew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

MAX_ARTIFACT_BYTES = 4 * 1024 ** 3  # all of a trainer's artifacts together
MAX_ARTIFACT_FILES = 1000
MAX_DEPTH = 8


Tree = dict[str, str]  # relative path -> digest of its content and exec bit, or link text


class HandoverError(ValueError):
    """The trainer's tree or artifacts cannot go to the scorer; the message says why."""


def fingerprint(root: Path) -> Tree:
    """Every file and link under `root` (an exported tree), with a digest of its content
    (and of its exec bit). Taken twice per checked child, so plain strings, not Paths."""
    seen: dict[str, str] = {}
    _fingerprint(str(root), "", seen)
    return seen


def _fingerprint(folder: str, prefix: str, seen: dict[str, str]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            key = prefix + entry.name
            if entry.is_symlink():
                seen[key] = "link:" + os.readlink(entry.path)
            elif entry.is_dir():
                _fingerprint(entry.path, key + "/", seen)
            else:
                # a pipe or a device reads as "special": opening one could block for ever
                data = read_plain(Path(entry.path))
                with contextlib.suppress(OSError):
                    executable = bool(entry.stat(follow_symlinks=False).st_mode & 0o111)
                    seen[key] = "special" if data is None else _digest(data, executable)


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files added, removed or rewritten, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def copy_tree(source: Path, before: Tree, dest: Path) -> None:
    """Copy the files `before` lists from `source` to `dest`, each as it was then."""
    changed = []
    for name, digest in sorted(before.items()):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if digest.startswith("link:"):
            os.symlink(digest[5:], target)  # as committed: a link's text is in git
            continue
        data = _as_before(source / name, digest)
        if data is None:
            changed.append(name)
            continue
        target.write_bytes(data)
        if digest.startswith("x"):
            target.chmod(0o755)
    _refuse(changed)


def check_unchanged(source: Path, before: Tree) -> None:
    """Raise HandoverError when a file `before` lists differs in `source` now: the scorer
    already has its copy, but a trainer that rewrites its tree is refused all the same."""
    _refuse([name for name, digest in sorted(before.items())
             if not digest.startswith("link:") and _as_before(source / name, digest) is None])


def _as_before(path: Path, digest: str) -> bytes | None:
    data = read_plain(path)
    return None if data is None or _digest(data, digest.startswith("x")) != digest else data


def _refuse(changed: list[str]) -> None:
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                          else "")
        raise HandoverError(f"the fitness command changed {shown} in its tree; the scorer "
                            "runs only from the tree as it was before training")


def copy_artifacts(source: Path, dest: Path) -> None:
    """Copy the plain files under `source` to `dest`. Anything else (a link, a device, a
    pipe, too deep, too many, too big) is refused, not followed."""
    dest.mkdir(parents=True, exist_ok=True)
    files = total = 0
    for path, depth in _walk(source):
        name = str(path.relative_to(source))
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            if depth >= MAX_DEPTH:
                raise HandoverError(f"artifacts: {name}/ is nested deeper than {MAX_DEPTH}")
            (dest / name).mkdir(exist_ok=True)
            continue
        if not stat.S_ISREG(info.st_mode):
            raise HandoverError(f"artifacts: {name} is not a plain file (a link or a device); "
                                "the scorer reads plain files only")
        total += info.st_size
        files += 1
        if files > MAX_ARTIFACT_FILES or total > MAX_ARTIFACT_BYTES:
            raise HandoverError(f"artifacts: more than {MAX_ARTIFACT_FILES} files or "
                                f"{MAX_ARTIFACT_BYTES // 1024 ** 3} GB")
        data = read_plain(path)
        if data is None:
            raise HandoverError(f"artifacts: {name} could not be read as a plain file")
        (dest / name).write_bytes(data)


def _walk(root: Path):
    """(path, depth) of everything below `root`, parents before children; links are
    listed, never entered."""
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                yield path, depth
                if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
                    stack.append((path, depth + 1))


def read_plain(path: Path, limit: int | None = None) -> bytes | None:
    """A regular file's bytes, opened without following a link at its last step; None
    for anything else, or for a file larger than `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or (limit is not None and info.st_size > limit):
            return None
        return handle.read()


def _digest(data: bytes, executable: bool) -> str:
    return ("x" if executable else "") + hashlib.blake2b(data, digest_size=16).hexdigest()
