"""gitevo's own overhead per offspring, next to OpenEvolve's, against one instant fake LLM.

    .venv/bin/pip install -e '.[bench]'      # openevolve 0.4.1, bench-only
    .venv/bin/python bench/overhead.py       # --runs 3 --small 100 --large 200

What is measured is everything except waiting for the LLM and running the fitness
code: a loopback OpenAI-compatible server answers every chat completion at once, in
one write, with a valid edit (a unified diff of the named block for gitevo, a
SEARCH/REPLACE block for OpenEvolve), and the fitness is trivial (a shell builtin
writing the metrics for gitevo, a Python function returning a score for OpenEvolve).

Each tool runs the same problem (the toy template's model.py, one file) for N and for
2N offspring, start-up included; the overhead per offspring is (T(2N) - T(N)) / N, so
start-up (interpreter, imports, the seed) drops out. `--runs R` times R rounds, each
timing every tool at both sizes one after the other, so that a slow spell of a noisy
machine slows both alike: printed are each tool's overhead from its best timings, their
ratio, and the ratio of each round with their median. The CPU time per offspring, taken
the same way over the tool's process and all it started, says how much of the machine
each one keeps busy (on 2 cores, wall time cannot fall below half of it).
gitevo is timed as the real CLI, `gitevo generation --n N` in a fresh repository whose
seed is already evaluated; OpenEvolve as `run_evolution(..., iterations=N)` in a fresh
process, in memory.

OpenEvolve runs its evaluator in its own Python, unconfined; so by default gitevo's
commands run unconfined too ([sandbox] isolation = "none"), where gitevo's fork server
checks imports by fork. `--isolation auto` keeps gitevo's default sandbox (bubblewrap
where it works): each command then pays for its namespaces and the import check for a
new Python inside them (about 30 ms per offspring more on the 2-core CI machine).

Then the Landlock floor on its own: what an evaluation starts through gitevo's sandbox
(the import check of one gene file, then `check` and the fitness command, both `true`),
under each isolation this machine has (none, unshare, bwrap), with and without the
floor, in interleaved rounds; printed are the best time per evaluation of each and the
difference. `--landlock-only` prints just that.

Where the files go matters: on a machine whose /tmp is slow to create files in, run
with TMPDIR on a faster disk; both tools work under TMPDIR.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

GITEVO_FITNESS = """printf '{"accuracy": 0.5, "l1": 1.0}' > {metrics}"""
KEY_ENV = "GITEVO_BENCH_KEY"  # a dummy key: the fake server ignores it

# ---- the fake LLM -----------------------------------------------------------------------------


class FakeLLM:
    """OpenAI chat completions on 127.0.0.1, answered at once, each response in one write
    (status line, headers and body together: separate small writes meet Nagle's algorithm
    and delayed ACKs, ~40 ms each), connections kept alive."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.count = 0
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                body = json.loads(await reader.readexactly(length))
                self.count += 1
                payload = json.dumps(_completion(body, answer(body, self.count))).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(payload) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _completion(request: dict, text: str) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}


def answer(request: dict, n: int) -> str:
    """A valid edit for whichever tool asked: the prompts tell them apart."""
    prompt = "\n".join(m["content"] for m in request["messages"]
                       if isinstance(m.get("content"), str))
    if "<seed-file path=" in prompt:
        return _gitevo_answer(prompt, n)
    return _openevolve_answer(prompt, n)


def _new_number(n: int) -> str:
    return f"{0.05 + (n * 0.6180339887) % 1.0:.4f}"


def _gitevo_answer(prompt: str, n: int) -> str:
    fences = re.findall(r"```python\n(.*?)\n```", prompt, flags=re.S)
    crossover = re.search(r"Combine two versions of `(\w+)`", prompt)
    if crossover:  # the other parent's block, whole: gitevo's full-block fallback
        return f"Parent B's version reads better.\n\n```python\n{fences[1]}\n```\n"
    path = re.search(r'<seed-file path="([^"]+)">', prompt).group(1)
    block = fences[-1] + "\n"  # the block to change comes last
    new = re.sub(r"\d+\.\d+", _new_number(n), block, count=1)
    if new == block:
        new = block.rstrip("\n") + " * 1.0\n"
    diff = "".join(difflib.unified_diff(block.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}"))
    return f"Nudging a constant.\n\n```diff\n{diff}```\n"


def _openevolve_answer(prompt: str, n: int) -> str:
    program = prompt.split("# Current Program\n", 1)[-1]
    program = re.search(r"```\w*\n(.*?)\n```", program, flags=re.S).group(1)
    for line in program.splitlines():
        if re.search(r"\d+\.\d+", line) and not line.lstrip().startswith("#"):
            new = re.sub(r"\d+\.\d+", _new_number(n), line, count=1)
            return (f"Nudging a constant.\n\n<<<<<<< SEARCH\n{line}\n=======\n{new}\n"
                    ">>>>>>> REPLACE\n")
    return "No change."


# ---- gitevo ---------------------------------------------------------------------------------

def gitevo_repo(where: Path, url: str, isolation: str = "none") -> Path:
    """A toy repository with its seed evaluated, evolving through the fake server."""
    repo = where / "toy"
    env = {**os.environ, KEY_ENV: "dummy"}
    subprocess.run([sys.executable, "-m", "gitevo", "init", str(repo), "--template", "toy"],
                   check=True, env=env, capture_output=True)
    text = (repo / "gitevo.toml").read_text()
    text = re.sub(r'(?m)^command = .*$', f"command = {json.dumps(GITEVO_FITNESS)}", text)
    text = re.sub(r"(?m)^check = .*\n", "", text)
    text = text.replace('provider = "offline"',
                        f'provider = "openai"\nmodel = "fake"\nbase_url = "{url}"\n'
                        f'api_key_env = "{KEY_ENV}"\nconcurrency = 4\nretries = 0')
    if isolation != "auto":  # auto is the default: no section (older gitevos know none)
        # unconfined as OpenEvolve's evaluator: no Landlock floor either (its cost is
        # measured on its own, below)
        text += f'\n[sandbox]\nisolation = "{isolation}"\nlandlock = false\n'
    (repo / "gitevo.toml").write_text(text)
    for args in (["add", "-A"], ["commit", "-qm", "bench: fake LLM, instant fitness"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def time_gitevo(url: str, n: int, isolation: str = "none") -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="gitevo-bench-") as tmp:
        repo = gitevo_repo(Path(tmp), url, isolation)
        env = {**os.environ, KEY_ENV: "dummy"}
        with Stopwatch() as watch:
            out = subprocess.run([sys.executable, "-m", "gitevo", "generation", "--n", str(n),
                                  "--json"], cwd=repo, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"gitevo generation failed: {out.stderr.strip()}")
        summary = json.loads(out.stdout.splitlines()[-1])
        if summary["valid"] != n:
            raise SystemExit(f"gitevo: only {summary['valid']}/{n} offspring valid "
                             f"({summary['rejected']}, {summary['statuses']})")
    return watch.wall, watch.cpu


# ---- OpenEvolve -------------------------------------------------------------------------------

OPENEVOLVE_RUN = """
import logging, sys, time
from openevolve import run_evolution
from openevolve.config import Config, LLMModelConfig
config = Config()
config.log_level = "ERROR"
config.llm.models = [LLMModelConfig(name="fake", api_key="dummy", api_base=sys.argv[3])]
config.llm.api_base = sys.argv[3]
config.llm.retries = 0
config.evaluator.cascade_evaluation = False
config.checkpoint_interval = 10**9
logging.disable(logging.WARNING)
started = time.perf_counter()
result = run_evolution(sys.argv[1], sys.argv[2], config=config, iterations=int(sys.argv[4]))
print(time.perf_counter() - started, file=sys.stderr)
"""

OPENEVOLVE_EVALUATOR = """
def evaluate(program_path):
    return {"combined_score": 0.5}
"""


def openevolve_files(where: Path) -> tuple[Path, Path]:
    toy = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "toy" / "model.py"
    program = where / "program.py"
    program.write_text("# EVOLVE-BLOCK-START\n" + toy.read_text() + "# EVOLVE-BLOCK-END\n")
    evaluator = where / "evaluator.py"
    evaluator.write_text(textwrap.dedent(OPENEVOLVE_EVALUATOR))
    return program, evaluator


def time_openevolve(url: str, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="openevolve-bench-") as tmp:
        program, evaluator = openevolve_files(Path(tmp))
        with Stopwatch() as watch:
            out = subprocess.run([sys.executable, "-c", OPENEVOLVE_RUN, str(program),
                                  str(evaluator), url, str(n)], cwd=tmp, capture_output=True,
                                 text=True)
        if out.returncode != 0:
            raise SystemExit(f"openevolve failed: {out.stderr.strip()[-2000:]}")
    return watch.wall, watch.cpu


def openevolve_missing() -> str | None:
    try:
        import openevolve  # noqa: F401
    except ImportError:
        return "openevolve is not installed (pip install -e '.[bench]')"
    return None


# ---- the measurement --------------------------------------------------------------------------

class Stopwatch:
    """Wall time, and the CPU time of the child processes that ended meanwhile (the tool's
    process and everything it started and reaped: fork servers, workers, commands)."""

    def __enter__(self) -> Stopwatch:
        self._cpu = _children_cpu()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = _children_cpu() - self._cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def overhead(small: tuple[float, float], large: tuple[float, float],
             n: int) -> tuple[float, float]:
    """(wall, cpu) seconds per offspring from the timings of the two sizes."""
    return (large[0] - small[0]) / n, (large[1] - small[1]) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1,
                        help="rounds; each times every tool at both sizes, one after another")
    parser.add_argument("--only", choices=("gitevo", "openevolve"))
    parser.add_argument("--isolation", default="none", choices=("none", "auto"),
                        help="gitevo's [sandbox] isolation (default: none, as OpenEvolve)")
    parser.add_argument("--landlock-only", action="store_true",
                        help="only the Landlock floor's cost per evaluation")
    args = parser.parse_args()
    if args.landlock_only:
        print_landlock_cost()
        return
    server = FakeLLM()
    tools = {"gitevo": lambda url, n: time_gitevo(url, n, args.isolation),
             "openevolve": time_openevolve}
    missing = openevolve_missing()
    if missing and args.only != "gitevo":
        print(f"openevolve: not measured: {missing}")
    names = [name for name in tools if (not args.only or args.only == name)
             and not (name == "openevolve" and missing)]
    n = args.large - args.small
    # rounds interleave the tools, so a slow spell of this machine slows both alike
    rounds = [{name: (tools[name](server.url, args.small), tools[name](server.url, args.large))
               for name in names} for _ in range(args.runs)]
    best = {}
    for name in names:
        # the least disturbed timing of each size, judged by wall time
        small = min((r[name][0] for r in rounds), key=lambda t: t[0])
        large = min((r[name][1] for r in rounds), key=lambda t: t[0])
        wall, cpu = best[name] = overhead(small, large, n)
        print(f"{name}: T({args.small}) = {small[0]:.3f} s, T({args.large}) = {large[0]:.3f} s, "
              f"overhead {wall * 1000:.2f} ms per offspring "
              f"(CPU {cpu * 1000:.2f} ms per offspring, all its processes)", flush=True)
    if len(names) == 2:
        ratios = sorted(overhead(*r["gitevo"], n)[0] / overhead(*r["openevolve"], n)[0]
                        for r in rounds)
        print(f"ratio gitevo/openevolve: {best['gitevo'][0] / best['openevolve'][0]:.2f} "
              f"(best timings); per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}, median {statistics.median(ratios):.2f}")
    print_landlock_cost()


def landlock_cost(isolation: str, rounds: int = 5, evaluations: int = 60
                  ) -> tuple[float, float, float] | None:
    """Seconds per evaluation's worth of sandboxed starts (the import check of one gene
    file, then `check` and the fitness command, both `true`) under `isolation`: the
    medians without and with the Landlock floor, and the median of the paired
    differences (each evaluation's worktree timed without and with, one right after
    the other, in alternating order, so that a slow spell of this machine falls on both
    alike); None where the kernel has no Landlock or this machine lacks the isolation."""
    from gitevo.config import Sandbox
    from gitevo.execution import floor, sandbox

    if floor.kernel_abi() < 1:
        return None
    try:
        sandbox.mode(Sandbox(isolation=isolation))
    except sandbox.SandboxUnavailable:
        return None
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="gitevo-bench-landlock-") as tmp:
        # a worktree and temp dir per evaluation, as in a run: each has its own policy,
        # and more of them than the launcher keeps rulesets for
        places = [(Path(tmp, f"work{i}"), Path(tmp, f"scratch{i}")) for i in range(evaluations)]
        for work, scratch in places:
            work.mkdir()
            scratch.mkdir()
            (work / "model.py").write_text("VALUE = 1\n")
        env = sandbox.sandbox_env(Path(tmp))
        settings = {on: Sandbox(isolation=isolation, landlock=on) for on in (False, True)}
        for turn in range(rounds):
            for i, (work, scratch) in enumerate(places):
                for on in (False, True) if (i + turn) % 2 else (True, False):
                    start = time.perf_counter()
                    _evaluation_starts(sandbox, settings[on], work, scratch, env)
                    times[on].append(time.perf_counter() - start)
    paired = [with_ - without for without, with_ in zip(times[False], times[True], strict=True)]
    return (statistics.median(times[False]), statistics.median(times[True]),
            statistics.median(paired))


def _evaluation_starts(sandbox, settings, work: Path, scratch: Path, env: dict) -> None:
    done = [sandbox.import_confined(["model.py"], workdir=work, tmp=scratch, timeout=10,
                                    env=env, settings=settings)]
    done += [sandbox.run_confined("true", workdir=work, tmp=scratch, timeout=10, env=env,
                                  settings=settings) for _ in range(2)]
    assert all(outcome.returncode == 0 for outcome in done), [o.tail for o in done]


def print_landlock_cost() -> None:
    for isolation in ("none", "unshare", "bwrap"):
        found = landlock_cost(isolation)
        if found is None:
            print(f"landlock floor, isolation {isolation}: not measured (no Landlock, or no "
                  f"{isolation} here)")
            continue
        off, on, cost = found
        print(f"landlock floor, isolation {isolation}: {off * 1000:.2f} ms per evaluation's "
              f"starts without, {on * 1000:.2f} ms with (medians): {cost * 1000:+.2f} ms per "
              f"evaluation (median of paired differences), ratio with/without {on / off:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
