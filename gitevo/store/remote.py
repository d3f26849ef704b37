"""gitevo's remote git work: fetch, push, notes merges (the `git` command line).

gitstore does everything local in process with pygit2; talking to other clones needs
git's transports (ssh, https, credential helpers) and `git notes merge`, which libgit2
does not offer, so those few operations run git as a subprocess, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gitevo.store.gitstore import GitError, Store

SCRATCH_NOTES = "refs/notes/gitevo-sync/"  # notes merges happen here (git wants refs/notes/)

# (commit, our note or None, their note or None) -> the merged note's text
Resolver = Callable[[str, str | None, str | None], str]


def git(store: Store, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run git in the store's repository; a failure becomes a GitError with git's reason."""
    env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    # a notes merge commits: give git an identity when the user's config has none
    sig = store.signature()
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", sig.name)
        env.setdefault(f"GIT_{role}_EMAIL", sig.email)
    proc = subprocess.run(["git", *args], cwd=store.root, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]}: {_reason(proc)}")
    return proc


def fetch(store: Store, remote: str, refspecs: Sequence[str]) -> None:
    """Fetch `refspecs` from `remote` (a remote's name, a URL or a path); no tags."""
    # --refmap= : a named remote's tracking refs stay as they were (nothing half-synced)
    proc = git(store, ["fetch", "--no-tags", "--no-write-fetch-head", "--refmap=", "--quiet",
                       remote, *refspecs], check=False)
    if proc.returncode != 0:
        raise GitError(f"cannot fetch from {remote}: {_reason(proc)}")


def push(store: Store, remote: str, refs: Sequence[str],
         leases: Mapping[str, str | None] | None = None, force: Sequence[str] = ()) -> None:
    """Push local `refs` to the same names on `remote`, all or none (--atomic).

    A ref must fast-forward on the remote, except one in `leases` (moved only if the
    remote still has the given id, None: must not exist yet) or in `force`.
    """
    leases = leases or {}
    options = [f"--force-with-lease={ref}:{old or ''}" for ref, old in leases.items()]
    specs = [("+" if ref in force else "") + f"{ref}:{ref}" for ref in refs]
    if not specs:
        return
    proc = git(store, ["push", "--atomic", "--porcelain", *options, remote, *specs],
               check=False)
    if proc.returncode != 0:
        raise GitError(f"{remote} refused the push: {_rejections(proc.stdout) or _reason(proc)}")


def _rejections(porcelain: str) -> str:
    """'ref (why)' for each ref the remote refused, from `git push --porcelain`; the refs
    held back only because the push is atomic are left out."""
    found = []
    for line in porcelain.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] == "!" and "atomic push failed" not in fields[2]:
            why = fields[2].removeprefix("[rejected]").strip() or fields[2]
            found.append(f"{fields[1].split(':')[-1]} {why}")
    return ", ".join(found)


def merge_notes(store: Store, ours: str, theirs: str, resolve: Resolver) -> str:
    """Merge notes commit `theirs` into the scratch notes ref `ours` (under SCRATCH_NOTES:
    git moves it without compare-and-swap) with `git notes merge`; returns the result.

    Each note changed on both sides since their common base goes through `resolve`.
    """
    _clear_notes_merge(store)
    try:
        proc = git(store, ["notes", "--ref", ours, "merge", "-s", "manual", "--quiet", theirs],
                   check=False)
        if proc.returncode != 0:
            _resolve_conflicts(store, ours, theirs, resolve, proc)
    finally:
        _clear_notes_merge(store)
    merged = store.resolve_ref(ours)
    if merged is None:
        raise GitError(f"git notes merge left no {ours}")
    return merged


def _resolve_conflicts(store: Store, ours: str, theirs: str, resolve: Resolver,
                       proc: subprocess.CompletedProcess) -> None:
    worktree = Path(store.repo.path) / "NOTES_MERGE_WORKTREE"
    if not worktree.is_dir():
        raise GitError(f"git notes merge into {ours}: {_reason(proc)}")
    # one file per conflicting note, named by the annotated commit, holding conflict
    # markers: the two sides are read from the refs instead
    for path in sorted(p for p in worktree.rglob("*") if p.is_file()):
        commit = "".join(path.relative_to(worktree).parts)
        path.write_text(resolve(commit, store.read_note(ours, commit),
                                store.read_note(theirs, commit)), encoding="utf-8")
    git(store, ["notes", "--ref", ours, "merge", "--commit", "--quiet"])


def _clear_notes_merge(store: Store) -> None:
    """Abort a notes merge left on a scratch ref (a killed or failed sync); refuse to
    touch one that a person started."""
    git_dir = Path(store.repo.path)
    worktree = git_dir / "NOTES_MERGE_WORKTREE"
    ref_file = git_dir / "NOTES_MERGE_REF"
    # git leaves the worktree directory behind, empty, after every concluded merge
    busy = ref_file.exists() or (git_dir / "NOTES_MERGE_PARTIAL").exists()
    if busy or (worktree.is_dir() and any(worktree.iterdir())):
        target = ref_file.read_text().strip() if ref_file.is_file() else "unknown ref"
        if not target.removeprefix("ref: ").startswith(SCRATCH_NOTES):
            raise GitError(f"{git_dir}: a notes merge is in progress ({target}); finish it "
                           "with `git notes merge --commit` or `--abort` first")
        git(store, ["notes", "merge", "--abort"], check=False)
    with contextlib.suppress(OSError):
        worktree.rmdir()


def _reason(proc: subprocess.CompletedProcess) -> str:
    """git's most telling line: the first fatal/error line, else the last line."""
    lines = [line.strip() for line in (proc.stderr or proc.stdout or "").splitlines()
             if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line.split(":", 1)[1].strip()
    return lines[-1] if lines else f"exit status {proc.returncode}"
