"""Unified diffs: produce them, parse them tolerantly, apply them safely.

Every proposal, offline or from an LLM, reaches a parent's tree as a unified diff, and
LLMs write imperfect diffs. The tolerance policy:

- Prose and ``` fences around or between diff sections are dropped; a hunk ends at the
  first line that cannot belong to it, and trailing blank lines are cut from it.
- Hunk line counts are recounted from the body, and `@@ ... @@` headers without numbers
  get numbers synthesised (right after the previous hunk), so the `unidiff` library can
  parse the result. An empty body line is read as an empty context line.
- Hunks without a `---`/`+++` header belong to `default_path` when one is given.
  `a/` and `b/` prefixes are optional.
- A hunk is placed by its old lines (context and removed), not by its stated line
  numbers: an exact match first, then ignoring trailing whitespace, then ignoring
  surrounding whitespace, then ignoring all whitespace runs; among matches the one
  nearest the stated (drift-corrected) line wins, preferring those after the
  previous hunk.
- Untouched lines, context lines included, keep their exact bytes from the file; added
  lines take the file's line ending.

What is never tolerated, each a PatchError with a `reason`: a path that is absolute,
climbs out with `..` or enters `.git` ("protected-path"), a path outside the allowed set
("protected-path"), creating ("new-file"), deleting ("delete-file") or renaming
("rename") files, a hunk that matches nowhere ("context-mismatch"), and text with no
diff in it ("no-diff"). Nothing is applied unless every hunk of every file applies.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field

from unidiff import Hunk as UnidiffHunk
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from gitevo.variation.genome import line_ending, split_lines

DEV_NULL = "/dev/null"
NO_NEWLINE = "\\ No newline at end of file"

_HUNK_HEADER = re.compile(r"^@@\s*-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?\s*@@ ?(.*)$")
_GIT_EXTENDED = re.compile(
    r"^(index |new file mode |deleted file mode |old mode |new mode |similarity index |"
    r"dissimilarity index |rename from |rename to |copy from |copy to )")


class PatchError(ValueError):
    """A diff that cannot or must not be applied; `reason` is a short slug for statistics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Hunk:
    old_start: int  # 1-based line the hunk says its old lines start at (a hint only)
    lines: list[tuple[str, str]]  # (" " | "-" | "+", text without its line ending)
    old_no_newline: bool = False  # the old side's last line ends the file without "\n"
    new_no_newline: bool = False

    @property
    def old_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "+"]

    @property
    def new_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "-"]


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk] = field(default_factory=list)


# ---------------------------------------------------------------------------- producing


def make_diff(path: str, old: str, new: str) -> str:
    """A unified diff (3 lines of context) from `old` to `new`; "" when they are equal."""
    if old == new:
        return ""
    diff = difflib.unified_diff(split_lines(old), split_lines(new),
                                f"a/{path}", f"b/{path}", n=3)
    out = []
    for line in diff:
        # difflib leaves a last line without a newline unterminated; diff(1) marks it
        out.append(line if line.endswith("\n") else f"{line}\n{NO_NEWLINE}\n")
    return "".join(out)


# ----------------------------------------------------------------------- normalising


def _is_file_header(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and \
        lines[i + 1].startswith("+++ ")


def _is_body_line(line: str) -> bool:
    return line == "" or line[0] in " +-\\"


def _hunk_body(lines: list[str], i: int) -> tuple[list[str], int]:
    """The body lines of the hunk starting at index i, and the index after them."""
    body = []
    while i < len(lines):
        line = lines[i]
        if line.startswith(("@@", "diff --git ")) or _is_file_header(lines, i):
            break
        if not _is_body_line(line):
            break  # prose or a closing fence ends the hunk
        body.append(line)
        i += 1
    while body and body[-1] == "":
        body.pop()  # blank lines after a hunk are layout, not context
    return [line if line else " " for line in body], i


class _Normaliser:
    """Rewrites a sloppy diff into one that unidiff accepts (see the module docstring)."""

    def __init__(self, default_path: str | None):
        self.default_path = default_path
        self.out: list[str] = []
        self.in_file = False
        self.next_old = 1  # where a hunk without numbers is assumed to start
        self.delta = 0  # new-minus-old line count of the file's earlier hunks
        self.hunks = 0

    def start_file(self, *header: str) -> None:
        self.out.extend(header)
        self.in_file, self.next_old, self.delta = True, 1, 0

    def add_hunk(self, header: str, body: list[str]) -> None:
        if not self.in_file:
            if self.default_path is None:
                raise PatchError("no-path", "a hunk has no ---/+++ header naming its file")
            self.start_file(f"--- a/{self.default_path}", f"+++ b/{self.default_path}")
        old = sum(1 for line in body if line[0] in " -")
        new = sum(1 for line in body if line[0] in " +")
        match = _HUNK_HEADER.match(header)
        start = int(match.group(1)) if match else self.next_old
        section = match.group(5) if match else header.strip("@ ")
        self.next_old = start + old
        if not any(line[0] in "+-" for line in body):
            return  # context only: changes nothing, and could only fail to match
        new_start = max(start + self.delta, 0 if new == 0 else 1)
        self.delta += new - old
        self.out.append(f"@@ -{start},{old} +{new_start},{new} @@ {section}".rstrip())
        self.out.extend(body)
        self.hunks += 1

    def feed(self, lines: list[str]) -> None:
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("diff --git "):
                self.start_file(line)
                i += 1
                while i < len(lines) and _GIT_EXTENDED.match(lines[i]):
                    self.out.append(lines[i])
                    i += 1
            elif _is_file_header(lines, i):
                self.start_file(lines[i], lines[i + 1])
                i += 2
            elif line.startswith("@@"):
                body, i = _hunk_body(lines, i + 1)
                self.add_hunk(line, body)
            else:
                i += 1  # prose, fences, blank lines between sections


def _normalise(text: str, default_path: str | None) -> str:
    normaliser = _Normaliser(default_path)
    normaliser.feed(text.replace("\r\n", "\n").split("\n"))
    if normaliser.hunks == 0:
        raise PatchError("no-diff", "no unified diff hunk found in the text")
    return "\n".join(normaliser.out) + "\n"


# -------------------------------------------------------------------------- parsing


def _clean_path(raw: str | None) -> str:
    path = (raw or "").strip()
    if len(path) > 1 and path[0] == path[-1] == '"':
        path = path[1:-1]
    if path.startswith(("a/", "b/")):
        path = path[2:]  # git's prefixes, on either side (LLMs mix them up)
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        raise PatchError("protected-path", f"absolute path {path!r} in the diff")
    if any(p == ".." or p.lower() == ".git" for p in parts) or path.startswith("~"):
        raise PatchError("protected-path", f"path {path!r} leaves the repository or enters .git")
    return "/".join(parts)


def _target_path(source: str | None, target: str | None, default: str | None) -> str:
    if source == DEV_NULL:
        raise PatchError("new-file", f"creates new file {target!r}; only existing files change")
    if target == DEV_NULL:
        raise PatchError("delete-file", f"deletes {source!r}; files cannot be deleted")
    old, new = _clean_path(source), _clean_path(target)
    if old and new and old != new:
        raise PatchError("rename", f"renames {old!r} to {new!r}; files cannot be renamed")
    if not (old or new or default):
        raise PatchError("no-path", "a file header names no file")
    return new or old or _clean_path(default)


def _hunk(raw: UnidiffHunk) -> Hunk:
    """One unidiff hunk as (tag, text) pairs, with the no-newline markers as flags."""
    hunk = Hunk(old_start=raw.source_start, lines=[])
    for line in raw:
        tag = line.line_type
        if tag == "\\":
            last = hunk.lines[-1][0] if hunk.lines else " "
            hunk.old_no_newline |= last in " -"
            hunk.new_no_newline |= last in " +"
        elif tag in " +-":
            hunk.lines.append((tag, line.value.removesuffix("\n").removesuffix("\r")))
    return hunk


def parse_diff(text: str, default_path: str | None = None) -> list[FilePatch]:
    """The files a (possibly sloppy) unified diff changes, with their hunks."""
    try:
        patchset = PatchSet(_normalise(text, default_path))
    except UnidiffParseError as exc:
        raise PatchError("malformed", f"unreadable diff: {exc}") from exc
    patches = []
    for patched in patchset:
        if patched.is_binary_file:
            raise PatchError("binary", f"binary change to {patched.path!r}")
        path = _target_path(patched.source_file, patched.target_file, default_path)
        patches.append(FilePatch(path, [_hunk(h) for h in patched]))
    return [p for p in patches if p.hunks]


# ------------------------------------------------------------------------- applying

_COMPARISONS: tuple[Callable[[str], str], ...] = (
    lambda s: s,
    str.rstrip,
    str.strip,
    lambda s: " ".join(s.split()),
)


def _matches(body: list[str], old: list[str], key: Callable[[str], str]) -> Iterator[int]:
    wanted = [key(line) for line in old]
    keyed = [key(line) for line in body]
    for i in range(len(body) - len(old) + 1):
        if keyed[i:i + len(old)] == wanted:
            yield i


def _locate(body: list[str], old: list[str], hint: int, cursor: int) -> int | None:
    """Where `old` sits in `body`: the strictest comparison that finds it, nearest `hint`."""
    if not old:
        return min(max(hint, 0), len(body))
    for key in _COMPARISONS:
        hits = list(_matches(body, old, key))
        if hits:
            later = [i for i in hits if i >= cursor] or hits
            return min(later, key=lambda i: (abs(i - hint), i))
    return None


def _first_unmatched(body: list[str], old: list[str]) -> tuple[int, str]:
    """The hunk line where the longest partial match (whitespace-insensitive) breaks."""
    key = _COMPARISONS[-1]
    keyed, wanted = [key(line) for line in body], [key(line) for line in old]
    best = 0
    for i in range(len(body)):
        n = 0
        while n < len(wanted) and i + n < len(keyed) and keyed[i + n] == wanted[n]:
            n += 1
        best = max(best, n)
    return best, old[min(best, len(old) - 1)]


class _File:
    """A file as line texts plus their endings, patched hunk by hunk."""

    def __init__(self, path: str, content: str):
        lines = split_lines(content)
        self.path = path
        self.body = [line.removesuffix(line_ending(line)) for line in lines]
        self.ends = [line_ending(line) for line in lines]
        crlf = sum(e == "\r\n" for e in self.ends)
        self.eol = "\r\n" if crlf * 2 > len(self.ends) else "\n"
        self.offset = 0  # stated-to-actual line shift carried from hunk to hunk
        self.cursor = 0  # first line after the previous hunk

    def text(self) -> str:
        return "".join(b + e for b, e in zip(self.body, self.ends, strict=True))

    def apply(self, number: int, hunk: Hunk) -> None:
        old = hunk.old_lines
        stated = hunk.old_start if not old else hunk.old_start - 1
        pos = _locate(self.body, old, stated + self.offset, self.cursor)
        if pos is None:
            k, line = _first_unmatched(self.body, old)
            raise PatchError("context-mismatch",
                             f"{self.path}: hunk {number} matches nowhere; its old line "
                             f"{k + 1} is not in the file: {line!r}")
        new_body, new_ends = self._region(hunk, pos, len(old))
        self.body[pos:pos + len(old)] = new_body
        self.ends[pos:pos + len(old)] = new_ends
        self.offset = pos + len(new_body) - (stated + len(old))
        self.cursor = pos + len(new_body)

    def _region(self, hunk: Hunk, pos: int, n_old: int) -> tuple[list[str], list[str]]:
        """New lines for body[pos:pos+n_old]: context keeps the file's bytes."""
        body, ends, k = [], [], pos
        for tag, text in hunk.lines:
            if tag == "+":
                body.append(text)
                ends.append(self.eol)
            elif tag == " ":
                body.append(self.body[k])
                ends.append(self.ends[k] or self.eol)
                k += 1
            else:
                k += 1
        at_eof = pos + n_old == len(self.body)
        was_open = at_eof and bool(self.ends) and not self.ends[-1]
        if was_open and n_old == 0:
            self.ends[-1] = self.eol  # appending after a last line that had no newline
        # keep (or make, as the diff says) a file without a final newline
        if at_eof and ends and (hunk.new_no_newline or (was_open and not hunk.old_no_newline)):
            ends[-1] = ""
        return body, ends


def apply_diff(text: str, files: Mapping[str, str], allowed: Collection[str],
               default_path: str | None = None) -> dict[str, str]:
    """Apply a unified diff to `files`; returns {path: new content} for the files it changes.

    All or nothing: any PatchError leaves nothing applied (the inputs are never mutated).
    """
    patches = parse_diff(text, default_path)
    for patch in patches:
        if patch.path not in allowed:
            raise PatchError("protected-path", f"edits protected path {patch.path!r}")
        if patch.path not in files:
            raise PatchError("missing-file", f"edits {patch.path!r}, which does not exist")
    edited: dict[str, _File] = {}
    for patch in patches:
        target = edited.setdefault(patch.path, _File(patch.path, files[patch.path]))
        target.offset = target.cursor = 0  # a new section restates positions from the top
        for number, hunk in enumerate(patch.hunks, 1):
            target.apply(number, hunk)
    results = {path: f.text() for path, f in edited.items()}
    return {path: new for path, new in results.items() if new != files[path]}
