"""All of gitevo's git access: objects, refs, notes, the ledger, exported trees, the lock.

Git work happens in process through pygit2 (libgit2), so a generation costs no
`git` subprocess per step. Crash safety follows one rule: write objects first,
move refs last, and move several refs in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

import pygit2

FILE_MODE = pygit2.enums.FileMode
NOTES_PREFIX = "refs/notes/gitevo/"
BRANCH_PREFIX = "refs/heads/gitevo/"


class GitError(RuntimeError):
    """A git problem that the user must fix (not a repository, no commits, ...)."""


class LockedError(GitError):
    """Another gitevo process holds the repository's lock."""


def individual_ref(run: str, ident: str) -> str:
    return f"{BRANCH_PREFIX}{run}/{ident}"


def ledger_ref(run: str) -> str:
    return f"{BRANCH_PREFIX}{run}/ledger"


def best_ref(run: str) -> str:
    return f"{BRANCH_PREFIX}{run}/best"


def notes_ref(run: str) -> str:
    return f"{NOTES_PREFIX}{run}"


def llm_notes_ref(run: str) -> str:
    return f"{NOTES_PREFIX}{run}-llm"


class Store:
    """A git repository as gitevo's database."""

    def __init__(self, path: str | Path = "."):
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitError(f"{Path(path).resolve()}: not inside a git repository")
        self.repo = pygit2.Repository(found)
        if self.repo.is_bare:
            raise GitError(f"{found}: bare repositories are not supported")
        self.root = Path(self.repo.workdir).resolve()
        self.state_dir = Path(self.repo.path).resolve() / "gitevo"

    # ---- identity and config ------------------------------------------------------------

    def signature(self) -> pygit2.Signature:
        cfg = self.repo.config
        name = _config_get(cfg, "user.name") or "gitevo"
        email = _config_get(cfg, "user.email") or "gitevo@localhost"
        return pygit2.Signature(name, email)

    def set_config(self, key: str, value: str) -> None:
        self.repo.config[key] = value

    def get_config(self, key: str) -> str | None:
        return _config_get(self.repo.config, key)

    # ---- refs ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str | None:
        """The commit id a ref or revision points to, or None."""
        try:
            obj = self.repo.revparse_single(ref)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return str(obj.peel(pygit2.Commit).id)

    def head_commit(self) -> str:
        if self.repo.head_is_unborn:
            raise GitError(f"{self.root}: the repository has no commits yet")
        return str(self.repo.head.target)

    def refs_under(self, prefix: str) -> dict[str, str]:
        """Every ref whose name starts with `prefix`, mapped to its target id."""
        out = {}
        for name in self.repo.references:
            if name.startswith(prefix):
                out[name] = str(self.repo.references[name].target)
        return out

    def update_refs(self, updates: Iterable[tuple[str, str, str | None]], message: str) -> None:
        """Move several refs in one all-or-nothing transaction.

        Each update is (ref, new id, expected old id or None for "must not exist"),
        so a ref is never moved from a state this process did not see.
        """
        updates = list(updates)
        for ref, _new, old in updates:
            current = self.resolve_ref(ref)
            if current != old:
                raise GitError(f"{ref}: expected {old or 'absent'}, found {current or 'absent'}")
        # pygit2 1.21 cannot pass a Signature here (a cffi bug); the reflog then takes
        # the repository's identity
        with self.repo.transaction() as txn:
            for ref, _new, _old in updates:
                txn.lock_ref(ref)
            for ref, new, _old in updates:
                txn.set_target(ref, new, message=message)

    def resolve_ref(self, ref: str) -> str | None:
        try:
            return str(self.repo.references[ref].target)
        except KeyError:
            return None

    # ---- objects -------------------------------------------------------------------------

    def read_file(self, commit: str, path: str) -> str | None:
        """A file's text at a commit, or None if it is not there."""
        tree = self.repo[commit].peel(pygit2.Tree)
        try:
            entry = tree[path]
        except KeyError:
            return None
        blob = self.repo[entry.id]
        if not isinstance(blob, pygit2.Blob):
            return None
        return blob.data.decode("utf-8")

    def tree_id(self, commit: str) -> str:
        return str(self.repo[commit].peel(pygit2.Tree).id)

    def tree_with(self, commit: str, changes: Mapping[str, str]) -> str:
        """Write the tree of `commit` with some files' contents replaced; return its id."""
        base = self.repo[commit].peel(pygit2.Tree)
        nested: dict[str, object] = {}
        for path, text in changes.items():
            parts = PurePosixPath(path).parts
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[parts[-1]] = self.repo.create_blob(text.encode("utf-8"))  # type: ignore[index]
        return str(self._rewrite_tree(base, nested))

    def _rewrite_tree(self, tree: pygit2.Tree | None, changes: dict[str, object]) -> pygit2.Oid:
        builder = self.repo.TreeBuilder(tree) if tree is not None else self.repo.TreeBuilder()
        for name, change in changes.items():
            existing = tree[name] if tree is not None and name in tree else None
            if isinstance(change, dict):
                sub = self.repo[existing.id] if existing is not None else None
                builder.insert(name, self._rewrite_tree(sub, change), FILE_MODE.TREE)
            else:
                mode = existing.filemode if existing is not None else FILE_MODE.BLOB
                builder.insert(name, change, mode)
        return builder.write()

    def commit(self, tree: str, parents: list[str], message: str) -> str:
        """Write a commit object without moving any ref."""
        sig = self.signature()
        oid = self.repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree),
                                      [pygit2.Oid(hex=p) for p in parents])
        return str(oid)

    def message(self, commit: str) -> str:
        return self.repo[commit].message

    def trailers(self, commit: str) -> dict[str, str]:
        return dict(self.repo[commit].message_trailers)

    def parents(self, commit: str) -> list[str]:
        return [str(p) for p in self.repo[commit].parent_ids]

    def export_tree(self, commit: str, dest: Path) -> None:
        """Write a commit's files into `dest` (a plain directory, no .git).

        Cheaper than a checkout and leaves no worktree registration behind to
        clean up after a crash.
        """
        dest.mkdir(parents=True, exist_ok=True)
        self._export(self.repo[commit].peel(pygit2.Tree), dest)

    def _export(self, tree: pygit2.Tree, dest: Path) -> None:
        for entry in tree:
            target = dest / entry.name
            if entry.filemode == FILE_MODE.TREE:
                target.mkdir(exist_ok=True)
                self._export(self.repo[entry.id], target)
            elif entry.filemode == FILE_MODE.LINK:
                os.symlink(self.repo[entry.id].data, target)
            elif entry.filemode in (FILE_MODE.BLOB, FILE_MODE.BLOB_EXECUTABLE):
                target.write_bytes(self.repo[entry.id].data)
                if entry.filemode == FILE_MODE.BLOB_EXECUTABLE:
                    target.chmod(0o755)

    def index_tree(self) -> str:
        """The tree of what is staged now (for the pre-commit hook)."""
        self.repo.index.read()
        return str(self.repo.index.write_tree())

    def export_tree_id(self, tree: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._export(self.repo[tree], dest)

    def is_dirty(self, ignore: Iterable[str] = ()) -> list[str]:
        """Paths with uncommitted changes (untracked files included)."""
        skip = set(ignore)
        flags = self.repo.status(untracked_files="normal")
        return sorted(p for p, f in flags.items()
                      if f != pygit2.enums.FileStatus.IGNORED and p not in skip)

    # ---- notes ----------------------------------------------------------------------------

    def read_note(self, ref: str, commit: str) -> str | None:
        try:
            return self.repo.lookup_note(commit, ref).message
        except KeyError:
            return None

    def read_notes(self, ref: str) -> dict[str, str]:
        """Every note under `ref`, keyed by annotated commit id."""
        if self.resolve_ref(ref) is None:
            return {}
        return {str(n.annotated_id): n.message for n in self.repo.notes(ref)}

    def write_notes(self, ref: str, notes: Mapping[str, str], message: str) -> None:
        """Add or replace several notes in a single notes commit."""
        if not notes:
            return
        old = self.resolve_ref(ref)
        base = self.repo[old].peel(pygit2.Tree) if old else None
        if base is not None and any(e.filemode == FILE_MODE.TREE for e in base):
            # git fanned the notes tree out; let libgit2 place each note correctly
            sig = self.signature()
            for commit, text in notes.items():
                self.repo.create_note(text, sig, sig, commit, ref, True)
            return
        builder = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
        for commit, text in notes.items():
            builder.insert(commit, self.repo.create_blob(text.encode("utf-8")), FILE_MODE.BLOB)
        new = self.commit(str(builder.write()), [old] if old else [], message)
        self.update_refs([(ref, new, old)], message)

    # ---- ledger -----------------------------------------------------------------------------

    def read_tree_files(self, commit: str) -> dict[str, str]:
        """Every top-level file of a commit's tree (the ledger keeps a flat tree)."""
        tree = self.repo[commit].peel(pygit2.Tree)
        return {e.name: self.repo[e.id].data.decode("utf-8") for e in tree
                if e.filemode == FILE_MODE.BLOB}

    def flat_tree(self, files: Mapping[str, str]) -> str:
        builder = self.repo.TreeBuilder()
        for name, text in sorted(files.items()):
            builder.insert(name, self.repo.create_blob(text.encode("utf-8")), FILE_MODE.BLOB)
        return str(builder.write())

    def diff(self, old: str, new: str) -> str:
        """The unified diff between two commits' trees."""
        return self.repo.diff(self.repo[old], self.repo[new]).patch or ""

    def commits_between(self, base: str, tip: str) -> list[str]:
        """`git log base..tip`, oldest first: what tip added on top of base, merges included."""
        walker = self.repo.walk(pygit2.Oid(hex=tip),
                                pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        walker.hide(pygit2.Oid(hex=base))
        return [str(c.id) for c in walker]

    def first_parent_chain(self, commit: str) -> Iterator[str]:
        """The commit and its first-parent ancestors, newest first."""
        current: str | None = commit
        while current:
            yield current
            parents = self.parents(current)
            current = parents[0] if parents else None

    # ---- the lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `.git/gitevo/lock` for the duration; recover it from a dead process."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "lock"
        _acquire(path)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def stale_ref_locks(self, run: str) -> list[Path]:
        """Remove ref lock files that a killed gitevo left behind; returns what was removed.

        Only call this while holding gitevo's own lock: then no live gitevo is mid-update,
        so every lock file under gitevo's namespaces is stale.
        """
        git_dir = Path(self.repo.path)
        found = []
        for base in (git_dir / "refs" / "heads" / "gitevo" / run, git_dir / "refs" / "notes"
                     / "gitevo"):
            found += base.rglob("*.lock") if base.is_dir() else []
        for path in found:
            path.unlink(missing_ok=True)
        return found

    def remove_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def init_repository(path: Path) -> Store:
    pygit2.init_repository(str(path), initial_head="main")
    return Store(path)


def _config_get(cfg: pygit2.Config, key: str) -> str | None:
    try:
        return cfg[key]
    except KeyError:
        return None


def _acquire(path: Path) -> None:
    me = f"{os.getpid()} {socket.gethostname()} {int(time.time())}\n"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _holder(path)
            if pid is not None and (host != socket.gethostname() or _alive(pid)):
                where = "" if host == socket.gethostname() else f" on {host}"
                raise LockedError(f"{path}: locked by pid {pid}{where} (another gitevo is "
                                  "running on this repository; wait for it or stop it)") from None
            # stale: its owner died without unlocking, so take the lock over
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(me)
        return
    raise LockedError(f"{path}: could not take the lock")


def _holder(path: Path) -> tuple[int | None, str | None]:
    try:
        fields = path.read_text().split()
    except FileNotFoundError:
        return None, None
    if not fields or not fields[0].isdigit():
        return None, None
    return int(fields[0]), fields[1] if len(fields) > 1 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
