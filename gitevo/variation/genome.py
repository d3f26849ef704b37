"""The gene blocks of a Python file: its top-level classes and functions, found by `ast`.

A block spans whole lines, from its first decorator to the last line of its body, so
replacing one block rewrites exactly those lines and leaves every other byte of the file
alone (line endings and a missing final newline included). Everything outside the
blocks (the docstring, imports, module-level statements, comments between blocks) is
the pseudo-block "<module>".
"""

from __future__ import annotations

import ast
import functools
import re
import threading
from dataclasses import dataclass

MODULE = "<module>"

# `ast` counts "\r\n", "\r" and "\n" as line breaks and nothing else; str.splitlines would
# also split on form feeds and Unicode separators and so disagree with node line numbers.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_EOL = re.compile(r"(?:\r\n|\r|\n)\Z")


class GenomeError(ValueError):
    """A file that cannot be split into blocks, or a block that is not there."""


@dataclass(frozen=True)
class Block:
    path: str
    name: str
    kind: str  # "class" | "function"
    start: int  # 0-based index of the first line (decorators included)
    end: int  # 0-based index one past the last line
    text: str  # exact source of lines[start:end]

    @property
    def key(self) -> str:
        return f"{self.path}::{self.name}"


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its own line ending (the last may have none)."""
    return _LINE.findall(text)


def line_ending(line: str) -> str:
    """The terminator of one line from split_lines: "\\r\\n", "\\r", "\\n" or ""."""
    match = _EOL.search(line)
    return match.group() if match else ""


_PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    """ast.parse, one thread at a time. CPython 3.11 keeps the recursion depth of its AST
    converter in state that threads share: two parses at once (proposals run in threads)
    can fail with "SystemError: AST constructor recursion depth mismatch"."""
    with _PARSING:
        return ast.parse(source)


def _parse(source: str, path: str) -> ast.Module:
    try:
        return parse(source)
    except SyntaxError as exc:
        raise GenomeError(f"{path or '<source>'}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except ValueError as exc:  # e.g. a NUL byte in the source
        raise GenomeError(f"{path or '<source>'}: cannot parse: {exc}") from exc


def _kind(node: ast.stmt) -> str | None:
    if isinstance(node, ast.ClassDef):
        return "class"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "function"
    return None


def blocks(source: str, path: str = "") -> list[Block]:
    """The top-level classes and functions of `source`, in file order."""
    return list(_blocks(source, path))


@functools.lru_cache(maxsize=64)
def _blocks(source: str, path: str) -> tuple[Block, ...]:
    # one proposal reads the same file's blocks for its prompt, its answer and its child;
    # a parse per read was a tenth of gitevo's own time per offspring
    tree = _parse(source, path)
    lines = split_lines(source)
    found = []
    for node in tree.body:
        kind = _kind(node)
        if kind is None:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        start, end = first - 1, node.end_lineno or node.lineno
        found.append(Block(path, node.name, kind, start, end, "".join(lines[start:end])))
    return tuple(found)


def get_block(source: str, name: str, path: str = "") -> Block:
    """The block called `name`; if a name is defined twice, the last one (Python binds it)."""
    matches = [b for b in blocks(source, path) if b.name == name]
    if not matches:
        raise GenomeError(f"no top-level block {name} in {path or '<source>'}")
    return matches[-1]


def _fit_line_endings(new_text: str, old_lines: list[str], all_lines: list[str]) -> str:
    """Give `new_text` the file's line ending, and the old block's final-newline state."""
    endings = [line_ending(line) for line in old_lines + all_lines]
    eol = next((e for e in endings if e), "\n")
    new_lines = [line.rstrip("\r\n") for line in split_lines(new_text)]
    if not new_lines:
        return ""
    text = eol.join(new_lines)
    # a block that ended the file without a newline keeps the file that way
    if line_ending(old_lines[-1]):
        text += eol
    return text


def replace_block(source: str, name: str, new_text: str) -> str:
    """`source` with block `name` replaced by `new_text`; all other bytes stay identical."""
    block = get_block(source, name)
    lines = split_lines(source)
    replacement = _fit_line_endings(new_text, lines[block.start:block.end], lines)
    return "".join(lines[:block.start]) + replacement + "".join(lines[block.end:])


def _outside(source: str, found: list[Block]) -> list[str]:
    """Non-blank lines outside every block, without their line endings.

    Blank lines between blocks carry no meaning, and a block edit that adds or drops
    one next to the block should not count as a module-level change.
    """
    lines = split_lines(source)
    inside = set()
    for block in found:
        inside.update(range(block.start, block.end))
    kept = (line for i, line in enumerate(lines) if i not in inside)
    return [line.rstrip("\r\n") for line in kept if line.strip()]


def _texts(found: list[Block]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for block in found:
        by_name.setdefault(block.name, []).append(block.text)
    return by_name


def changed_blocks(old: str, new: str) -> set[str]:
    """Names of blocks edited, added or removed, plus "<module>" for changes outside blocks."""
    old_blocks, new_blocks = blocks(old), blocks(new)
    old_texts, new_texts = _texts(old_blocks), _texts(new_blocks)
    changed = {n for n in old_texts.keys() | new_texts.keys()
               if old_texts.get(n) != new_texts.get(n)}
    if _outside(old, old_blocks) != _outside(new, new_blocks):
        changed.add(MODULE)
    # reordering blocks changes what a module-level statement between them can see
    common = old_texts.keys() & new_texts.keys()
    if [b.name for b in old_blocks if b.name in common] != \
            [b.name for b in new_blocks if b.name in common]:
        changed.add(MODULE)
    return changed


def differing_blocks(a: str, b: str) -> list[str]:
    """Names of blocks present in both sources whose text differs, in a's order."""
    theirs = _texts(blocks(b))
    out = []
    for name, texts in _texts(blocks(a)).items():
        if name in theirs and theirs[name] != texts:
            out.append(name)
    return out


@functools.lru_cache(maxsize=64)
def import_skeleton(source: str) -> str:
    """What importing `source` executes, as a string: every module-level statement, with
    each function's body left out (a `def` runs its decorators, defaults and annotations
    at import, never its body) and class bodies kept, recursively, since they run.
    Raises GenomeError for a file that does not parse. Cached: a parent's file is
    compared with each of its children's."""
    return ast.dump(_skeleton(_parse(source, "")))


def _skeleton(node: ast.AST) -> ast.AST:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        # the docstring is part of the body: it is not evaluated at import either
        return type(node)(**{**{f: getattr(node, f) for f in node._fields}, "body": []})
    if isinstance(node, (ast.Module, ast.ClassDef)):
        fields = {f: getattr(node, f) for f in node._fields}
        return type(node)(**{**fields, "body": [_skeleton(n) for n in node.body]})
    return node


def same_import(old: str, new: str) -> bool:
    """Whether importing `new` runs exactly what importing `old` runs: the two differ at
    most inside function bodies. Then an import check that `old` passed need not be run
    again for `new`; whether `new` compiles is the caller's to check."""
    if old == new:
        return True
    try:
        return import_skeleton(old) == import_skeleton(new)
    except GenomeError:
        return False
