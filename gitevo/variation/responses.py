"""Turn a raw LLM answer into the diff to apply and the rationale to keep.

Order of preference:

1. A unified diff, fenced (```diff, or any fence with @@ hunks in it) or bare among the
   prose. Several diff sections (a hunk per fence) are one change; if together they do
   not apply to the parent's file but the last one is a whole diff (its own ---/+++)
   that does, it wins: that is a "corrected" diff after a failed first attempt. A lone
   hunk out of several is never applied by itself, since it would be half a change.
   Each hunk's line number is re-pointed at its match inside the target block when it
   has one: LLM line numbers are unreliable, and some lines recur in several blocks.
2. A complete new block in a fence whose top-level name is the target block, turned
   into a diff against the parent's file (genome.replace_block + patch.make_diff).
   It is also the fallback when the answer's diff does not apply.

The diff itself is applied by the caller (operators.build_child, through
patch.apply_diff); extract only decides what to hand over. Refusals are
patch.PatchError with a reason: "truncated" (the answer ends inside a fence, a <think>
section or a hunk), "wrong-block" (the only code defines other names), "outside-block"
(a full block that brings other top-level definitions, imports or constants with it),
"elided" (a full block that leaves code out: "# ... rest unchanged"), "no-change", a
parse reason from patch.parse_diff, and "no-diff" (nothing usable).

The rationale is the prose outside the diffs, fences and <think> sections; it becomes
the commit body.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Literal

from gitevo.variation import genome, patch
from gitevo.variation.patch import PatchError

Kind = Literal["diff", "block"]

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([^`\s]*)")
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.S | re.I)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.I)
_HUNK = re.compile(r"^@@\s*-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?\s*@@")
_BULLET = re.compile(r"^(?:[-+*] +\S|\d+[.)] +\S)")
_DEF = r"^(?:async\s+def|def|class)\s+{name}\b"
_INTRO = re.compile(r"\b(diff|patch|code|block|version|changes?|class|function|here)\b", re.I)
# a "lazy" full block that leaves out code with a placeholder instead of writing it
_ELIDED = re.compile(
    r"^\s*(?:\.\.\.|…)\s*$|#\s*(?:\.\.\.|…)|#.*\b(?:rest of (?:the )?(?:code|class|file|block|"
    r"method)|same as (?:before|above|the original)|unchanged from (?:the )?(?:original|before|"
    r"above|seed)|omitted for brevity|existing code)\b", re.I)
_DIFF_LANGS = {"diff", "patch", "udiff"}


@dataclass
class Extracted:
    diff: str
    rationale: str
    kind: Kind  # "diff": the answer's own diff; "block": made from a full replacement block

    @property
    def summary(self) -> str:
        """A commit subject from the rationale's first sentence ("" when there is none)."""
        return summarize(self.rationale)


@dataclass
class _Section:
    """A run of answer lines: a fence's content, or prose outside fences."""

    start: int  # index of the first line of the section in the answer (fence line included)
    end: int  # index after its last line (closing fence included)
    lines: list[str]
    fenced: bool
    lang: str = ""
    closed: bool = True


@dataclass
class _Answer:
    lines: list[str]
    sections: list[_Section]
    diff_spans: list[tuple[int, int]] = field(default_factory=list)  # bare diff line ranges


# ----------------------------------------------------------------------------- reading


def _strip_thinking(text: str) -> str:
    """Drop <think> sections (drafts live there); an unclosed one means a cut-off answer."""
    text = _THINK.sub("", text)
    opened = _THINK_OPEN.search(text)
    if opened:
        raise PatchError("truncated", f"the answer ends inside its {opened.group()} section, "
                         "before any final answer")
    return text


def _sections(lines: list[str]) -> list[_Section]:
    """Split the answer into fenced and prose sections (CommonMark-style fences)."""
    out: list[_Section] = []
    prose_start, i = 0, 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        if prose_start < i:
            out.append(_Section(prose_start, i, lines[prose_start:i], fenced=False))
        indent, marker, lang = len(opening.group(1)), opening.group(2), opening.group(3).lower()
        body, j = [], i + 1
        while j < len(lines) and not _closes(lines[j], marker):
            body.append(_dedent(lines[j], indent))
            j += 1
        closed = j < len(lines)
        out.append(_Section(i, j + 1 if closed else j, body, True, lang, closed))
        i = prose_start = j + 1 if closed else j
    if prose_start < len(lines):
        out.append(_Section(prose_start, len(lines), lines[prose_start:], fenced=False))
    return out


def _closes(line: str, marker: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(marker[0] * len(marker)) and set(stripped) == {marker[0]}


def _dedent(line: str, indent: int) -> str:
    """A fence indented inside a list item has its content indented the same way."""
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent):]


def _read(text: str) -> _Answer:
    text = _strip_thinking(text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = text.split("\n")
    sections = _sections(lines)
    for section in sections:
        if section.fenced and not section.closed:
            raise PatchError("truncated", f"the answer ends inside a ```{section.lang} fence "
                             f"opened at line {section.start + 1}: it was cut off")
    return _Answer(lines, sections)


# ------------------------------------------------------------------------------- diffs


def _is_file_header(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and \
        lines[i + 1].startswith("+++ ")


def _looks_like_diff(lines: list[str]) -> bool:
    return any(line.startswith("@@") for line in lines) or \
        any(_is_file_header(lines, i) for i in range(len(lines)))


def _is_diff_line(line: str) -> bool:
    return line == "" or line[0] in " +-\\@" or line.startswith(("diff --git ", "index "))


def _bare_regions(lines: list[str]) -> list[tuple[int, int]]:
    """Line ranges of diffs written straight into the prose, without a fence.

    A region starts at a file header, a `diff --git` line or a hunk header. It ends at
    the first line that cannot be part of a diff, or at a blank line followed by a
    markdown list item: "- Smaller ratio" after a hunk is prose, not a removed line.
    """
    regions, i = [], 0
    while i < len(lines):
        if not (lines[i].startswith(("@@", "diff --git ")) or _is_file_header(lines, i)):
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and _is_diff_line(lines[i]):
            if lines[i] == "" and i + 1 < len(lines) and _BULLET.match(lines[i + 1]):
                break
            i += 1
        end = i
        while end > start and not lines[end - 1].strip():
            end -= 1
        regions.append((start, end))
    return regions


def _stated_counts(header: str) -> tuple[int, int] | None:
    match = _HUNK.match(header)
    if not match or match.group(2) is None or match.group(4) is None:
        return None
    return int(match.group(2)), int(match.group(4))


def _unbalanced(code: str) -> bool:
    """A line that opens more brackets than it closes (a cut-off line usually does)."""
    depth = 0
    for char in code:
        depth += (char in "([{") - (char in ")]}")
    return depth > 0


def _ends_mid_hunk(lines: list[str]) -> bool:
    """Whether the last hunk looks cut off: fewer old and new lines than its header states.

    Only asked of a bare diff that ends the answer, which is what a reply stopped by the
    token limit looks like. LLMs often miscount by one, so a shortfall of one line on
    each side counts only when the last line itself is visibly cut (an open bracket).
    """
    heads = [i for i, line in enumerate(lines) if line.startswith("@@")]
    if not heads:
        return False
    stated = _stated_counts(lines[heads[-1]])
    if stated is None:
        return False
    body = lines[heads[-1] + 1:]
    old = sum(1 for line in body if line[:1] in (" ", "-", ""))
    new = sum(1 for line in body if line[:1] in (" ", "+", ""))
    short = min(stated[0] - old, stated[1] - new)
    return short >= 2 or (short == 1 and bool(body) and _unbalanced(body[-1][1:]))


def _diff_candidates(answer: _Answer) -> list[str]:
    """The answer's diff sections: fenced ones if any, else bare ones in the prose."""
    fenced = [s for s in answer.sections if s.fenced and
              (s.lang in _DIFF_LANGS or _looks_like_diff(s.lines))]
    if fenced:
        return ["\n".join(s.lines).strip("\n") + "\n" for s in fenced]
    regions = _bare_regions(answer.lines)
    # bare regions inside fences were already seen (and judged not to be diffs)
    inside = [(s.start, s.end) for s in answer.sections if s.fenced]
    regions = [r for r in regions if not any(a <= r[0] < b for a, b in inside)]
    answer.diff_spans = regions
    if regions:
        last_start, last_end = regions[-1]
        rest = "\n".join(answer.lines[last_end:]).strip()
        if not rest and _ends_mid_hunk(answer.lines[last_start:last_end]):
            raise PatchError("truncated", "the answer ends in the middle of a diff hunk "
                             "(fewer lines than its @@ header states): it was cut off")
    return ["\n".join(answer.lines[a:b]) + "\n" for a, b in regions]


# Lines compared exactly first, then with less and less whitespace (as patch.apply_diff does).
_KEYS = (lambda s: s, str.rstrip, str.strip, lambda s: " ".join(s.split()))
MARGIN = 3  # context lines a hunk may take from around its block (blank lines, a neighbour)


def _find(body: list[str], old: list[str], lo: int, hi: int, hint: int) -> int | None:
    """Where `old` sits within body[lo:hi], by the strictest comparison that finds it."""
    for key in _KEYS:
        wanted = [key(line) for line in old]
        hits = [i for i in range(lo, hi - len(old) + 1)
                if [key(line) for line in body[i:i + len(old)]] == wanted]
        if hits:
            return min(hits, key=lambda i: (abs(i - hint), i))
    return None


def _serialise(files: list[patch.FilePatch]) -> str:
    """Parsed file patches back into a unified diff with consistent numbers."""
    out = []
    for fp in files:
        out += [f"--- a/{fp.path}", f"+++ b/{fp.path}"]
        delta = 0
        for hunk in fp.hunks:
            old, new = len(hunk.old_lines), len(hunk.new_lines)
            new_start = max(hunk.old_start + delta, 1 if new else 0)
            out.append(f"@@ -{hunk.old_start},{old} +{new_start},{new} @@")
            out += [tag + text for tag, text in hunk.lines]
            delta += new - old
    return "\n".join(out) + "\n"


def _anchor(diff: str, path: str, block_name: str, source: str) -> str:
    """The diff with each hunk's line number moved to its match inside the target block.

    LLMs' line numbers are unreliable, and identical lines recur across blocks (FCT and
    EVE pool the same way). apply_diff places a hunk by its text, nearest its stated
    line; stating the target block's own line lets the block win such ties. Hunks that
    match nowhere in the block keep their numbers (and the caller judges them).
    """
    try:
        files = patch.parse_diff(diff, default_path=path)
        block = genome.get_block(source, block_name)
    except (PatchError, genome.GenomeError):
        return diff  # the caller will report what is wrong with it
    if any(h.old_no_newline or h.new_no_newline for fp in files for h in fp.hunks):
        return diff  # end-of-file markers do not survive re-serialising; leave as written
    body = [line.rstrip("\r\n") for line in genome.split_lines(source)]
    lo, hi = max(block.start - MARGIN, 0), min(block.end + MARGIN, len(body))
    for fp in files:
        for hunk in fp.hunks if fp.path == path else ():
            old = hunk.old_lines
            pos = _find(body, old, lo, hi, hunk.old_start - 1) if old else None
            if pos is not None:
                hunk.old_start = pos + 1
    return _serialise(files)


def _applies(diff: str, path: str, source: str) -> bool:
    try:
        patch.apply_diff(diff, {path: source}, allowed={path}, default_path=path)
    except PatchError:
        return False
    return True


def _choose_diff(candidates: list[str], path: str, block_name: str,
                 source: str) -> tuple[str, bool]:
    """(diff, applies): all sections together, else the last one if it is a whole diff.

    Only a last section with its own ---/+++ header may stand alone (a corrected diff
    after a failed first attempt): a lone hunk out of several would apply half a change.
    """
    together = _anchor("".join(candidates), path, block_name, source)
    if _applies(together, path, source):
        return together, True
    lines = candidates[-1].split("\n")
    whole = any(_is_file_header(lines, i) for i in range(len(lines)))
    if len(candidates) > 1 and whole:
        last = _anchor(candidates[-1], path, block_name, source)
        if _applies(last, path, source):
            return last, True
    return together, False


# ------------------------------------------------------------------------- full blocks


def _code_sections(answer: _Answer) -> list[_Section]:
    return [s for s in answer.sections if s.fenced and s.lang not in _DIFF_LANGS
            and not _looks_like_diff(s.lines)]


def _module_bindings(source: str) -> set[str]:
    """Top-level imports and assignments (what a block may depend on), via ast.unparse."""
    try:
        tree = genome.parse(source)
    except SyntaxError:
        return set()
    kinds = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign)
    return {ast.unparse(node) for node in tree.body if isinstance(node, kinds)}


def _same_text(a: str, b: str) -> bool:
    return [line.rstrip() for line in a.strip().splitlines()] == \
        [line.rstrip() for line in b.strip().splitlines()]


def _check_extras(code: str, source: str, block_name: str) -> None:
    """A full block may come with the rest of the file unchanged; anything new is refused.

    Only the target block is taken from the answer, so a helper, import or constant
    written beside it would be lost: better to say so than to fail later on a NameError.
    Demo code beside it (`if __name__ == ...`, prints) is simply left behind.
    """
    current = {b.name: b.text for b in genome.blocks(source)}
    changed = [b.name for b in genome.blocks(code)
               if b.name != block_name and not _same_text(current.get(b.name, ""), b.text)]
    if changed:
        raise PatchError("outside-block", f"the answer's code also defines or changes "
                         f"{', '.join(changed)} at top level; only {block_name} may change "
                         "(put helpers inside it)")
    added = sorted(_module_bindings(code) - _module_bindings(source))
    if added:
        raise PatchError("outside-block", f"the answer's code adds module-level "
                         f"{'; '.join(added)}; only {block_name} may change (put it inside)")


def _check_complete(text: str, block_name: str) -> None:
    elided = [line.strip() for line in text.splitlines() if _ELIDED.search(line)]
    if elided:
        raise PatchError("elided", f"the answer's {block_name} leaves code out ({elided[0]!r}); "
                         "give the complete block, or a diff")


def _unparsable_block(code: str, block_name: str) -> str | None:
    """The target block in code that does not parse: from its def/class line to the next."""
    lines = code.split("\n")
    head = re.compile(_DEF.format(name=re.escape(block_name)))
    starts = [i for i, line in enumerate(lines) if head.match(line)]
    if not starts:
        return None
    start = starts[-1]
    while start > 0 and lines[start - 1].startswith("@"):
        start -= 1  # keep its decorators
    end = start + 1
    top = re.compile(r"^(?:@|async\s+def\s|def\s|class\s)")
    while end < len(lines) and not top.match(lines[end]):
        end += 1
    return "\n".join(lines[start:end]).rstrip() + "\n"


def _block_text(section: _Section, source: str, block_name: str) -> str | None:
    """The new text of the target block from one fence, or None if it is not there."""
    code = "\n".join(section.lines).strip("\n") + "\n"
    try:
        found = genome.blocks(code)
    except genome.GenomeError:
        return _unparsable_block(code, block_name)  # validation will name the syntax error
    named = [b for b in found if b.name == block_name]
    if not named:
        return None
    _check_extras(code, source, block_name)
    _check_complete(named[-1].text, block_name)
    return named[-1].text


def _from_block(answer: _Answer, path: str, block_name: str, source: str) -> str | None:
    """A diff made from the last fence holding the complete target block."""
    code = _code_sections(answer)
    for section in reversed(code):
        text = _block_text(section, source, block_name)
        if text is not None:
            new = genome.replace_block(source, block_name, text)
            diff = patch.make_diff(path, source, new)
            if not diff:
                raise PatchError("no-change", f"the answer's {block_name} is identical "
                                 "to the current one")
            return diff
    others = _defined_names(code)
    if others:
        raise PatchError("wrong-block", f"the answer's code defines {', '.join(others)}, "
                         f"but the block to change is {block_name}")
    return None


def _defined_names(sections: list[_Section]) -> list[str]:
    names: list[str] = []
    for section in sections:
        try:
            names += [b.name for b in genome.blocks("\n".join(section.lines))]
        except genome.GenomeError:
            continue
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------- rationale


def _rationale(answer: _Answer) -> str:
    """The prose outside fences and bare diffs, with the "Here is the diff:" lines dropped."""
    code = [(s.start, s.end) for s in answer.sections if s.fenced] + answer.diff_spans
    keep = [True] * len(answer.lines)
    for start, end in code:
        for i in range(start, min(end, len(keep))):
            keep[i] = False
        _drop_intro(answer.lines, keep, start)
    out: list[str] = []
    for line, kept in zip(answer.lines, keep, strict=True):
        if not kept:
            if out and out[-1]:
                out.append("")
            continue
        if line.strip() or (out and out[-1]):
            out.append(line.rstrip())
    return "\n".join(out).strip()


def _drop_intro(lines: list[str], keep: list[bool], start: int) -> None:
    """Hide a short line ending in ":" that only introduces the code after it."""
    i = start - 1
    while i >= 0 and keep[i] and not lines[i].strip():
        i -= 1
    if i < 0 or not keep[i]:
        return
    line = lines[i].strip()
    heading = line.startswith("#") and len(line) <= 60
    if (line.endswith(":") and len(line) <= 80 or heading) and _INTRO.search(line):
        keep[i] = False


_FILLER = re.compile(r"^(?:sure|certainly|of course|okay|ok|great|absolutely|alright)\b.{0,3}$"
                     r"|^(?:here(?:'s| is| are)|below is)\b", re.I)


def _informative(sentence: str) -> bool:
    """Not a pleasantry, a bare label ("Comparison") or a short "Here's my proposal"."""
    words = sentence.split()
    return len(words) >= 3 and not (_FILLER.match(sentence) and len(words) <= 8)


def summarize(rationale: str, limit: int = 72) -> str:
    """The first informative sentence of the rationale, without markdown, cut at a word.

    Headings and pleasantries ("Sure!", "Here's my proposal.") make poor commit subjects.
    """
    for line in rationale.splitlines():
        if line.lstrip().startswith("#"):
            continue
        text = re.sub(r"\*\*|__|`", "", line).lstrip("> ").strip(" -:")
        # a sentence ends at . ! or ? before a capital letter, so "i.e. at" stays whole
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            sentence = sentence.strip().rstrip(".")
            if not _informative(sentence):
                continue
            if len(sentence) <= limit:
                return sentence
            return sentence[:limit - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return ""


# ------------------------------------------------------------------------------- extract


def extract(text: str, *, path: str, block_name: str, source: str) -> Extracted:
    """The diff (against `source`, the parent's `path`) and the rationale of an answer.

    Raises PatchError("truncated" | "wrong-block" | "outside-block" | "no-change" |
    "no-diff" | a parse reason) when the answer holds nothing to apply.
    """
    if not text.strip():
        raise PatchError("no-diff", "the answer is empty")
    answer = _read(text)
    candidates = _diff_candidates(answer)
    if candidates:
        diff, applies = _choose_diff(candidates, path, block_name, source)
        if not applies:
            # a full block given as well may succeed where the diff does not
            block = _try_block(answer, path, block_name, source)
            if block is not None:
                return Extracted(block, _rationale(answer), "block")
            patch.parse_diff(diff, default_path=path)  # raise the parse error, if any
        return Extracted(diff, _rationale(answer), "diff")
    block = _from_block(answer, path, block_name, source)
    if block is not None:
        return Extracted(block, _rationale(answer), "block")
    if _code_sections(answer):
        raise PatchError("no-diff", f"the answer's code is neither a unified diff nor a "
                         f"complete {block_name} (from its class/def line to its end)")
    raise PatchError("no-diff", "the answer contains no unified diff and no fenced code block")


def _try_block(answer: _Answer, path: str, block_name: str, source: str) -> str | None:
    try:
        return _from_block(answer, path, block_name, source)
    except PatchError:
        return None
