"""A guided generation evaluates each child as soon as it is committed, while other LLM calls
are still in flight: real LLM commands that take their time, real fitness processes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import RESPONDER, cli, git, gitevo_process
from tests.test_guided import guided_toy

# The first call to arrive answers at once; every other one thinks for SLOW seconds. Each
# call writes the wall-clock time it answered to a log.
SLOW_LLM = """
import os, subprocess, sys, time
prompt = sys.stdin.read()
try:
    os.close(os.open({first!r}, os.O_CREAT | os.O_EXCL))
except FileExistsError:
    time.sleep({slow})
answer = subprocess.run([sys.executable, {responder!r}], input=prompt, text=True,
                        capture_output=True, check=True).stdout
with open({log!r}, "a") as log:
    log.write(f"{{time.time()}}\\n")
sys.stdout.write(answer)
"""
SLOW = 3.0

# While the `hold` file exists, every call but the first waits, then gives up unanswered
# and unlogged once the file is gone: calls left by a killed gitevo end with the test.
HELD_LLM = """
import os, subprocess, sys, time
prompt = sys.stdin.read()
try:
    os.close(os.open({first!r}, os.O_CREAT | os.O_EXCL))
except FileExistsError:
    if os.path.exists({hold!r}):
        while os.path.exists({hold!r}):
            time.sleep(0.05)
        sys.exit(1)
answer = subprocess.run([sys.executable, {responder!r}], input=prompt, text=True,
                        capture_output=True, check=True).stdout
with open({log!r}, "a") as log:
    log.write(f"{{time.time()}} {{prompt.count('=== user ===')}}\\n")  # time, turn
sys.stdout.write(answer)
"""


def _times(path: Path) -> list[float]:
    return [float(line.split()[0]) for line in path.read_text().splitlines()]


def _first_turns(path: Path) -> int:
    """The answered calls that began a proposal (a repair turn continues one)."""
    return sum(line.split()[1] == "1" for line in path.read_text().splitlines())


def test_an_evaluation_starts_while_other_llm_calls_are_in_flight(tmp_path):
    repo = guided_toy(tmp_path)
    answered, started = tmp_path / "answered.log", tmp_path / "evaluations.log"
    script = tmp_path / "slow_llm.py"
    script.write_text(SLOW_LLM.format(first=str(tmp_path / "first"), slow=SLOW,
                                      responder=str(RESPONDER), log=str(answered)))
    text = (repo / "gitevo.toml").read_text()
    text = text.replace(f"{sys.executable} {RESPONDER}", f"{sys.executable} {script}")
    text = text.replace('command = "python fitness.py',
                        f'command = "date +%s.%N >> {started} && python fitness.py')
    text += ('\n[sandbox]\nisolation = "none"  # the log is outside what a sandbox may write\n'
             'landlock = false\n')
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "a slow LLM, and a log of when evaluations start")

    cli("-C", str(repo), "generation", "--n", "3")

    gen = ledger.read(Store(repo), "main")
    children = [i for i in load_all(Store(repo), "main").values() if i.generation == 1]
    assert gen.generation == 1 and len(children) == 3
    assert all(c.evaluation is not None for c in children)
    llm_ends, evaluation_starts = _times(answered), _times(started)
    assert len(llm_ends) >= 3 and len(evaluation_starts) == 3
    # the fast child's fitness ran while the slow calls were still thinking
    assert min(evaluation_starts) < max(llm_ends) - SLOW / 2


def test_kill_9_while_proposing_and_evaluating_then_rerun_redoes_nothing(tmp_path):
    repo = guided_toy(tmp_path)
    answered, slow_flag = tmp_path / "answered.log", tmp_path / "slow"
    script = tmp_path / "slow_llm.py"
    script.write_text(HELD_LLM.format(first=str(tmp_path / "first"), hold=str(slow_flag),
                                      responder=str(RESPONDER), log=str(answered)))
    slow_flag.touch()
    text = (repo / "gitevo.toml").read_text()
    text = text.replace(f"{sys.executable} {RESPONDER}", f"{sys.executable} {script}")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "a slow LLM")
    proc = gitevo_process("generation", "--n", "3", cwd=repo)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_fitness_notes(repo)) < 2:  # seed + 1 child
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _children(repo)
    notes = _fitness_notes(repo)
    assert len(before) == 1 and len(notes) == 2, "the kill should land with one child done"
    calls_before = _first_turns(answered)

    slow_flag.unlink()
    cli("-C", str(repo), "generation", "--n", "3")

    after = _children(repo)
    assert len(after) == 3 and {k: after[k] for k in before} == before  # not proposed again
    # only the two unfinished proposals are asked for (either may take a repair turn)
    assert _first_turns(answered) - calls_before == 2
    final = _fitness_notes(repo)
    assert all(final[c] == n for c, n in notes.items())  # the note was kept, not redone
    assert ledger.read(Store(repo), "main").generation == 1
    git(repo, "fsck", "--strict")


def _children(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname:lstrip=4) %(objectname)",
              "refs/heads/gitevo/main/g001-*")
    return dict(line.split() for line in out.splitlines())


def _fitness_notes(repo: Path) -> dict[str, str]:
    out = git(repo, "notes", "--ref", "gitevo/main", "list", check=False)
    return {commit: git(repo, "notes", "--ref", "gitevo/main", "show", commit)
            for _blob, commit in (line.split() for line in out.splitlines())}
