"""All of gitevo's git access: objects, refs, notes, the ledger, exported trees, the lock.

Git work happens in process through pygit2 (libgit2), so a generation costs no
`git` subprocess per step. Crash safety follows one rule: write objects first,
move refs last, and move several refs in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

import pygit2

FILE_MODE = pygit2.enums.FileMode
# libgit2 caches parsed commits and trees but no blobs: a run reads the same gene files
# (the seed's, each parent's) for every prompt, check and export
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.BLOB, 256 * 1024)

# libgit2's defaults cost us one object lookup per tree entry on every tree write (strict
# creation: a notes tree holds an entry per individual, so each notes commit re-checked
# them all) and a re-hash of every object read. Every object gitevo writes a tree from was
# just written or read here, and `git fsck` still checks the hashes.
pygit2.settings.enable_strict_object_creation(False)
pygit2.settings.enable_strict_hash_verification(False)
# a notes tree outgrows the 4 KB below which libgit2 caches trees; blobs it never caches
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 4 << 20)
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.BLOB, 256 << 10)
NOTES_PREFIX = "refs/notes/gitevo/"
BRANCH_PREFIX = "refs/heads/gitevo/"
STALE_LOCK_SECONDS = 2.0  # far longer than any ref update holds its lock
NOTES_RETRIES = 8  # tries of a notes write that other writers keep beating to the ref

# a note's new text given its current one (None: no note yet)
NoteEdit = Callable[[str | None], str]


class GitError(RuntimeError):
    """A git problem that the user must fix (not a repository, no commits, ...)."""


class LockedError(GitError):
    """Another gitevo process holds the repository's lock."""


class RefMovedError(GitError):
    """A compare-and-swap lost: the ref is not where this process saw it, or is being moved."""


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


def rung_ref(run: str, number: int) -> str:
    """Where screening rung `number` of a fidelity cascade keeps its results."""
    return f"{NOTES_PREFIX}{run}-rung{number}"


def promoted_ref(run: str, number: int) -> str:
    """Where rung `number`'s promotions are recorded, each before its evaluation starts."""
    return f"{rung_ref(run, number)}-promoted"


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
        self._identity: tuple[str, str] | None = None

    # ---- identity and config ------------------------------------------------------------

    def signature(self) -> pygit2.Signature:
        if self._identity is None:
            # read once: opening the config costs more than the commit it signs
            cfg = self.repo.config
            self._identity = (_config_get(cfg, "user.name") or "gitevo",
                              _config_get(cfg, "user.email") or "gitevo@localhost")
        return pygit2.Signature(*self._identity)  # stamped now

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
        so a ref is never moved from a state this process did not see. Raises
        RefMovedError when another writer got there first.
        """
        updates = list(updates)
        try:
            # pygit2 1.21 cannot pass a Signature here (a cffi bug); the reflog then
            # takes the repository's identity
            with self.repo.transaction() as txn:
                for ref, _new, _old in updates:
                    txn.lock_ref(ref)
                # compared only once locked: a writer that moves the ref between a check
                # and the lock would otherwise be overwritten
                for ref, _new, old in updates:
                    current = self.resolve_ref(ref)
                    if current != old:
                        raise RefMovedError(f"{ref}: expected {old or 'absent'}, "
                                            f"found {current or 'absent'}")
                for ref, new, _old in updates:
                    txn.set_target(ref, new, message=message)
        except pygit2.GitError as exc:
            # a lock file held (or, on commit, swept away) by another process
            refs = ", ".join(ref for ref, _new, _old in updates)
            raise RefMovedError(f"{refs}: another process is updating it ({exc})") from None

    def delete_refs(self, prefix: str) -> list[str]:
        """Delete every ref under `prefix` (gitevo's own scratch refs); returns their names."""
        gone = sorted(self.refs_under(prefix))
        for name in gone:
            with contextlib.suppress(KeyError):
                self.repo.references.delete(name)
        # loose refs leave their directories behind; an empty one is clutter, not a ref
        git_dir = Path(self.repo.path)
        _prune_empty(git_dir / prefix.rstrip("/"), git_dir / "refs")
        return gone

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is `descendant` or reachable from it."""
        return ancestor == descendant or self.repo.descendant_of(descendant, ancestor)

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
            _place(nested, list(PurePosixPath(path).parts),
                   self.repo.create_blob(text.encode("utf-8")))
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
        self._export(self.repo[commit].peel(pygit2.Tree), str(dest))

    def worktrees(self, run: str) -> Path:
        """Where a run's individuals are exported for their evaluations (under .git, which
        the sandbox hides from them; recovery clears what a crash leaves there)."""
        return self.state_dir / "worktrees" / run

    def worktree(self, run: str, ident: str) -> Path:
        return self.worktrees(run) / ident

    def _export(self, tree: pygit2.Tree, dest: str) -> None:
        # plain os calls on strings: an export per offspring, and pathlib cost more than
        # the writes
        for entry in tree:
            target = os.path.join(dest, entry.name)
            mode = entry.filemode
            if mode == FILE_MODE.TREE:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(target)
                self._export(self.repo[entry.id], target)
            elif mode == FILE_MODE.LINK:
                os.symlink(self.repo[entry.id].data, target)
            elif mode in (FILE_MODE.BLOB, FILE_MODE.BLOB_EXECUTABLE):
                _write_file(target, self.repo[entry.id].data,
                            0o777 if mode == FILE_MODE.BLOB_EXECUTABLE else 0o666)

    def index_tree(self) -> str:
        """The tree of what is staged now (for the pre-commit hook)."""
        self.repo.index.read()
        return str(self.repo.index.write_tree())

    def export_tree_id(self, tree: str, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self._export(self.repo[tree], str(dest))

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

    def write_notes(self, ref: str, notes: Mapping[str, str], message: str,
                    with_refs: Iterable[tuple[str, str, str | None]] = ()) -> None:
        """Add or replace several notes in a single notes commit; `with_refs` are
        update_refs updates made in the same transaction as the notes ref."""
        self.edit_notes(ref, {commit: _constant(text) for commit, text in notes.items()},
                        message, with_refs)

    def edit_notes(self, ref: str, edits: Mapping[str, NoteEdit], message: str,
                   with_refs: Iterable[tuple[str, str, str | None]] = ()) -> None:
        """Rewrite several notes from their current texts, in a single notes commit.

        Another process may write the same notes ref at any time (a verify runs
        without the run's lock; a generation may be writing fitness notes). The ref
        moves by compare-and-swap; when the swap loses, the edits are applied again
        to the notes as they are now, so neither writer loses a note. A ref of
        `with_refs` found moved is a RefMovedError: nothing is retried for it.
        """
        with_refs = list(with_refs)
        if not edits:
            if with_refs:  # no note to write: the refs still move, as asked
                self.update_refs(with_refs, message)
            return
        for attempt in range(NOTES_RETRIES):
            old = self.resolve_ref(ref)
            base = self.repo[old].peel(pygit2.Tree) if old else None
            changes: dict[str, object] = {}
            for commit, edit in edits.items():
                path, blob = self._note_entry(base, commit)
                text = edit(blob.data.decode("utf-8") if blob is not None else None)
                _place(changes, path, self.repo.create_blob(text.encode("utf-8")))
            tree = self._rewrite_tree(base, changes)
            new = self.commit(str(tree), [old] if old else [], message)
            try:
                self.update_refs([(ref, new, old), *with_refs], message)
                return
            except RefMovedError:
                if any(self.resolve_ref(r) != expected for r, _, expected in with_refs):
                    raise  # one of with_refs moved: trying again would not help
                # back off a little, randomly, so two writers do not collide in step
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise GitError(f"{ref}: other processes kept moving it; gave up writing notes after "
                       f"{NOTES_RETRIES} tries")

    def _note_entry(self, tree: pygit2.Tree | None,
                    commit: str) -> tuple[list[str], pygit2.Blob | None]:
        """Where the note of `commit` is in a notes tree, and its blob; for a missing note,
        where it goes. git fans big notes trees out into ab/cdef... subtrees (and reads
        any mix of levels), so the path follows the subtrees that already exist, and a new
        note starts one level down."""
        path: list[str] = []
        rest, root = commit, tree
        while tree is not None:
            if rest in tree and tree[rest].filemode != FILE_MODE.TREE:
                return path + [rest], self.repo[tree[rest].id]
            head = rest[:2]
            if len(rest) <= 2 or head not in tree or tree[head].filemode != FILE_MODE.TREE:
                break
            path.append(head)
            tree, rest = self.repo[tree[head].id], rest[2:]
        if not path and len(rest) > 2 and not _flat_notes_with(root, rest[:2]):
            # a new note goes one level down (ab/cdef...): each notes commit then rewrites
            # a root of at most 256 subtrees and one small subtree, instead of a flat tree
            # of every note of the run (3 ms a write at 2,000 notes). Never beside flat
            # notes of the same prefix: libgit2 then looks only in the subtree and loses
            # them (git itself never mixes them either)
            return [rest[:2], rest[2:]], None
        return path + [rest], None

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

    def changed_paths(self, old: str, new: str) -> list[str]:
        """The paths whose content differs between two commits' trees, sorted."""
        delta = self.repo.diff(self.repo[old], self.repo[new])
        return sorted({p for d in delta.deltas for p in (d.old_file.path, d.new_file.path)})

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

        Only call this while holding gitevo's own lock: then no other generation is
        mid-update. A `gitevo verify` may still be writing a note without that lock; it
        holds a ref lock for milliseconds, so a young lock file gets STALE_LOCK_SECONDS to
        go away by itself before it is judged stale.
        """
        git_dir = Path(self.repo.path)
        found = []
        for base in (git_dir / "refs" / "heads" / "gitevo" / run, git_dir / "refs" / "notes"
                     / "gitevo"):
            found += base.rglob("*.lock") if base.is_dir() else []
        youngest = max((_mtime(p) for p in found), default=0.0)
        wait = youngest + STALE_LOCK_SECONDS - time.time()
        if wait > 0:
            time.sleep(min(wait, STALE_LOCK_SECONDS))
        removed = []
        for path in found:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed

    def remove_dir(self, path: Path) -> None:
        if os.path.lexists(path):  # mostly not: rmtree's failure to open it costs more
            shutil.rmtree(path, ignore_errors=True)


def init_repository(path: Path) -> Store:
    pygit2.init_repository(str(path), initial_head="main")
    return Store(path)


def _constant(text: str) -> NoteEdit:
    return lambda _current: text


def _place(nested: dict[str, object], path: list[str], blob: pygit2.Oid) -> None:
    """Put `blob` at `path` in the nested dict that `_rewrite_tree` takes."""
    node = nested
    for part in path[:-1]:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[path[-1]] = blob


def _flat_notes_with(tree: pygit2.Tree | None, prefix: str) -> bool:
    """Whether the notes tree holds, at its top, a note whose name starts with `prefix`."""
    return tree is not None and any(
        e.name.startswith(prefix) and e.filemode != FILE_MODE.TREE for e in tree)


def _write_file(path: str, data: bytes, mode: int) -> None:
    """A new file with `data`; `mode` before the umask, as git's checkout does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove the empty directories in `folder`, then it and its parents below `stop`
    while they are empty."""
    if folder.is_dir():
        for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # not empty: something else lives there
            return
        folder = folder.parent


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


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
            if pid is not None and (host != socket.gethostname() or process_alive(pid)):
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


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with that id is running (zombies count as gone)."""
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
