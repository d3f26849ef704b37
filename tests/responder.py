"""A scripted stand-in for an LLM, for the `command` provider: prompt on stdin, answer on stdout.

It reads gitevo's real prompts the way a model would (the block name, the current block
text, the other parent's version) and answers in the formats models use: a unified diff
with prose around it for mutation and EoT (its line numbers are relative to the block,
so gitevo must match hunks by context), a full replacement block for crossover. With
GITEVO_RESPONDER_SLOPPY=N every Nth first answer is prose without code, so the repair
turn gets exercised; with GITEVO_RESPONDER_BROKEN=N every Nth first answer is code that
fails its check. A notebook prompt gets a notebook naming the children it read.
Deterministic: everything derives from the prompt text.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
import sys

from gitevo.variation import offline


def python_fences(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", text, flags=re.S)


def mutated(block: str, name: str, rng: random.Random) -> str:
    new, _summary = offline.mutate(block + "\n", name, rng)
    return new


def answer_mutation(turn: str, name: str, path: str, rng: random.Random) -> str:
    block = python_fences(turn)[-1]  # the current block comes last (after EoT's lesson)
    new = mutated(block, name, rng)
    diff = "".join(difflib.unified_diff(
        (block + "\n").splitlines(keepends=True), new.splitlines(keepends=True),
        f"a/{path}", f"b/{path}"))
    return (f"Looking at `{name}`, the constants look under-tuned; nudging them should help "
            f"the fit without adding cost.\n\n```diff\n{diff}```\n\nThis keeps the signature.")


def answer_crossover(turn: str, name: str, rng: random.Random) -> str:
    a, b = python_fences(turn)[-2:]  # the parents' versions come last (after inspiration)
    if a == b:  # nothing to merge: B's text is A's, and gitevo refuses it as no change
        return f"Both parents agree on `{name}`, so the merge keeps it.\n\n```python\n{b}\n```\n"
    # B's version alone would be B itself where the parents differ only here: a merge
    # that adds nothing, which gitevo refuses as a duplicate; so B's, retuned a little
    merged = mutated(b, name, rng).rstrip("\n")
    return (f"Parent B's `{name}` scores better, so the merge starts from its version and "
            f"retunes its constants.\n\n```python\n{merged}\n```\n")


def answer_broken(turn: str) -> str:
    """A whole block that names something undefined: it applies, and fails its check."""
    name = re.search(r"(?:The block to change is|apply the same idea to|two versions of) "
                     r"`(\w+)`", turn).group(1)
    return (f"Scaling by a learned gain should help.\n\n```python\ndef {name}(x):\n"
            f"    return undefined_gain * x\n```\n")


def answer_notebook(prompt: str) -> str:
    """A notebook that names the generation and the children it read, as a model would."""
    generation = re.search(r"What the children of generation (\d+) tried", prompt).group(1)
    children = re.findall(r"^- (g\d{3}-\d{3}) \((\w+), ", prompt, flags=re.M)
    hurt = re.findall(r"^- (g\d{3}-\d{3}) .*\n  -> (?:invalid|crashed|rejected)", prompt,
                      flags=re.M)
    blocks = sorted({block for _, block in children})
    return ("## What helped\n"
            f"- Lessons after generation {generation}: small constant changes in "
            f"{', '.join(blocks) or 'no block'} ({len(children)} children read).\n"
            "## What hurt\n"
            f"- {', '.join(hurt) or 'nothing broke'}.\n"
            "## What to try next\n- Larger steps on the blocks that helped.\n")


def answer(prompt: str, sloppy: int = 0) -> str:
    """The answer to one prompt in the command provider's `=== role ===` text form."""
    if "lab notebook" in prompt.split("=== user ===")[0]:
        return answer_notebook(prompt)
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    rng = random.Random(digest)
    path = re.search(r'<seed-file path="([^"]+)">', prompt).group(1)
    repair = len(prompt.split("=== user ===")) > 2
    if sloppy and not repair and int(digest[:8], 16) % sloppy == 0:
        return "I would change the constants a bit, but I am not sure which ones."
    broken = int(os.environ.get("GITEVO_RESPONDER_BROKEN", "0"))
    first_turn = prompt.split("=== user ===")[1]
    if broken and not repair and int(digest[8:16], 16) % broken == 0:
        return answer_broken(first_turn)
    crossover = re.search(r"Combine two versions of `(\w+)`", first_turn)
    if crossover:
        return answer_crossover(first_turn, crossover.group(1), rng)
    name = re.search(r"(?:The block to change is|apply the same idea to) `(\w+)`",
                     first_turn).group(1)
    return answer_mutation(first_turn, name, path, rng)


def as_prompt(body: dict) -> str:
    """An HTTP request body (Messages or Chat Completions) in the same text form."""
    parts = []
    system = body.get("system")
    if isinstance(system, list):  # Anthropic's blocks, with cache_control
        system = "".join(block.get("text", "") for block in system)
    if system:
        parts.append(f"=== system ===\n{system}")
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(block.get("text", "") for block in content)
        parts.append(f"=== {message['role']} ===\n{content}")
    return "\n\n".join(parts)


def main() -> None:
    sloppy = int(os.environ.get("GITEVO_RESPONDER_SLOPPY", "0"))
    print(answer(sys.stdin.read(), sloppy))


if __name__ == "__main__":
    main()
