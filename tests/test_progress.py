"""What `generation` and `run` print while they work: JSON Lines, plain lines, nothing, a live
display; and the end-of-generation summary that the ledger keeps."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from gitevo import config
from gitevo.core import events
from gitevo.core.events import KINDS, Events
from gitevo.pipeline.evolution import Evolution
from gitevo.pipeline.timesplit import share_wall
from gitevo.results.live import LiveRenderer
from gitevo.results.tally import eta
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from tests.conftest import cli
from tests.test_guided import guided_toy

PHASES = ("llm", "validate", "fitness")


def gitevo(repo: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """The real CLI in its own process (stdout and stderr apart), and how long it took."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "gitevo", *args], cwd=repo,
                         capture_output=True, text=True, timeout=300)
    return out, time.monotonic() - started


def json_lines(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        assert set(record) == {"kind", "t", *KINDS[record["kind"]]}, record
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    return records


def by_generation(records: list[dict]) -> list[list[dict]]:
    """The records of each generation: from its `plan` to its `summary`."""
    blocks: list[list[dict]] = []
    for record in records:
        if record["kind"] == "plan":
            blocks.append([])
        blocks[-1].append(record)
    assert all(block[-1]["kind"] == "summary" for block in blocks)
    return blocks


def of(block: list[dict], kind: str) -> list[dict]:
    return [r for r in block if r["kind"] == kind]


def assert_time_split(summary: dict, elapsed: float) -> None:
    """The phases share the wall time; the wall time is within the command's own."""
    split = summary["time"]
    assert sum(split[p] for p in PHASES) <= split["wall"] <= elapsed
    assert split["other"] == pytest.approx(split["wall"] - sum(split[p] for p in PHASES),
                                           abs=2e-3)


def test_json_lines_match_the_offspring_and_each_summary_matches_the_ledger(toy):
    out, elapsed = gitevo(toy, "run", "--generations", "2", "--n", "5", "--json")
    assert out.returncode == 0 and out.stderr == ""
    records = json_lines(out.stdout)
    assert records[-1]["kind"] == "summary"
    history = ledger.history(Store(toy), "main")
    blocks = by_generation(records)
    assert [b[0]["generation"] for b in blocks] == [1, 2]
    for block in blocks:
        gen = history[block[0]["generation"]]
        rows = {r["id"]: r for r in gen.offspring}
        plan, summary = block[0], block[-1]
        assert plan["offspring"] == 5 and not plan["resumed"]
        committed = {r["id"] for r in of(block, "committed")}
        rejected = {r["id"] for r in of(block, "rejected")}
        assert committed | rejected == set(rows) and not committed & rejected
        assert rejected == {i for i, r in rows.items() if r["status"] == "rejected"}
        assert of(block, "evaluating")[0]["count"] == len(committed)
        assert {r["id"] for r in of(block, "evaluation_started")} == committed
        finished = {r["id"]: r for r in of(block, "evaluation_finished")}
        assert {i: r["status"] for i, r in finished.items()} == \
            {i: rows[i]["status"] for i in committed}
        # the summary is the ledger's, and its counts are the events'
        assert {k: summary[k] for k in KINDS["summary"]} == events.summary(gen.generation,
                                                                           gen.stats)
        assert summary["offspring"] == 5
        assert summary["valid"] == sum(r["status"] == "ok" for r in finished.values())
        before = history[gen.generation - 1].stats
        assert summary["hypervolume_delta"] == pytest.approx(
            gen.stats["hypervolume"] - before["hypervolume"])
        for name, best in summary["best"].items():
            assert summary["best_delta"][name] == pytest.approx(best - before["best"][name])
        assert summary["llm"] == {"calls": 0, "failed": 0, "tokens": 0, "cost": 0.0}
        assert summary["time"]["llm"] == 0 and summary["time"]["fitness"] > 0
        assert summary["busy"]["fitness"] == pytest.approx(
            sum(r["timings"]["fitness"] for r in finished.values()), abs=1e-2)
        assert_time_split(summary, elapsed)


def test_plain_output_is_one_line_per_child_then_the_summary(toy):
    out = cli("-C", str(toy), "generation", "--n", "6")  # not a terminal: plain lines
    lines = out.splitlines()
    gen = ledger.read(Store(toy), "main")
    for row in gen.offspring:
        mine = [line for line in lines if line.startswith(f"{row['id']}: ")]
        assert len(mine) == 1 and mine[0].split()[1] == row["status"], mine
    assert lines[0] == "generation 1: 6 offspring (" + ", ".join(
        f"{n} {op}" for op, n in sorted(_operators(gen).items())) + ")"
    valid = gen.stats["statuses"].get("ok", 0)
    assert re.match(rf"generation 1: best accuracy [\d.]+ \([+-][\d.e-]+\), l1 .*; "
                    rf"{valid}/6 valid", lines[-2])
    assert lines[-1].startswith("  time: ") and " s = LLM 0.0 s, validation " in lines[-1]


def _operators(gen: ledger.Generation) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in gen.offspring:
        counts[row["operator"]] = counts.get(row["operator"], 0) + 1
    return counts


def test_quiet_prints_nothing_and_errors_only_on_stderr(toy, tmp_path):
    out, _ = gitevo(toy, "generation", "--n", "3", "-q")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    assert ledger.read(Store(toy), "main").generation == 1
    out, _ = gitevo(tmp_path, "generation", "-q")  # not a repository
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("gitevo: error: ") and len(out.stderr.splitlines()) == 1
    out, _ = gitevo(toy, "generation", "-q", "--json")
    assert out.returncode == 2 and "--quiet and --json exclude each other" in out.stderr


def test_quiet_run_that_spends_its_budget_says_so_on_stderr(tmp_path):
    repo = guided_toy(tmp_path, extra="\nmax_tokens = 6000")
    out, _ = gitevo(repo, "run", "--generations", "5", "--n", "4", "-q")
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.startswith("gitevo: LLM budget spent: stopping after this generation")
    assert len(out.stderr.splitlines()) == 1
    assert ledger.read(Store(repo), "main").generation < 5


def test_live_display_counts_proposals_and_evaluations(toy):
    console = Console(file=io.StringIO(), record=True, force_terminal=True, width=120)
    with LiveRenderer(console) as live:
        evo = Evolution(Store(toy), config.load(toy / "gitevo.toml"), events=Events(live))
        gen = evo.generation(4)
    text = console.export_text()
    rows = gen.offspring
    applied = sum(r["status"] != "rejected" for r in rows)
    assert "generation 1" in text
    assert re.search(rf"proposals .* 4/4  {applied} applied, {4 - applied} rejected", text)
    assert re.search(rf"evaluations .* {applied}/{applied}  0 running, ETA 0:00", text)
    for row in rows:  # printed above the live counters
        assert re.search(rf"\b{row['id']}: {row['status']} ", text)
    best = gen.stats["best"]["accuracy"]
    assert re.search(rf"best accuracy +{best:.6g}", text)
    assert f"valid offspring  {gen.stats['statuses'].get('ok', 0)}/4" in text


def test_guided_summary_counts_llm_calls_tokens_and_times_each_phase(tmp_path):
    repo = guided_toy(tmp_path, sloppy=3)
    out, elapsed = gitevo(repo, "generation", "--n", "5", "--json")
    assert out.returncode == 0, out.stderr
    [block] = by_generation(json_lines(out.stdout))
    calls, summary = of(block, "llm_call"), block[-1]
    stats = ledger.read(Store(repo), "main").stats
    assert calls and all(c["ok"] and c["tokens"] > 0 and c["seconds"] > 0 for c in calls)
    assert summary["llm"]["calls"] == len(calls) == stats["llm_calls"]["ok"]
    assert summary["llm"]["tokens"] == sum(c["tokens"] for c in calls) == stats["tokens"] > 0
    for child in of(block, "committed"):  # one call per turn of its conversation
        assert child["turns"] == sum(c["id"] == child["id"] for c in calls) >= 1
    validated = {(v["id"], v["turn"]) for v in of(block, "validated")}
    assert validated and validated <= {(c["id"], c["turn"]) for c in calls}
    for evaluation in of(block, "evaluation_finished"):  # checked when proposed, not again
        assert set(evaluation["timings"]) == {"fitness"}
    assert summary["busy"]["llm"] == pytest.approx(sum(c["seconds"] for c in calls), abs=1e-2)
    assert all(summary["time"][p] > 0 for p in PHASES)
    assert_time_split(summary, elapsed)
    plain = cli("-C", str(repo), "generation", "--n", "3")
    assert re.search(r"^  LLM: \d+ calls \(0 failed\), [\d,]+ tokens, \$0\.0000$", plain, re.M)


def test_eta_shares_the_work_left_among_the_workers():
    assert eta([], 3, [], 2) is None  # nothing finished yet: no mean to go by
    assert eta([1.0], 0, [], 2) == 0
    # mean 3 s; 4 left, two of them running for 1 s and 5 s (counted as done at the mean)
    assert eta([2.0, 4.0], 4, [1.0, 5.0], 2) == pytest.approx((12 - 1 - 3) / 2)
    assert eta([2.0], 1, [0.5], 4) == pytest.approx(1.5)  # one left: one worker does it


def test_overlapping_phases_share_the_wall_time():
    spans = [("llm", 0, 4), ("llm", 2, 6), ("validate", 3, 5), ("fitness", -1, 1),
             ("fitness", 9, 12)]
    shares = share_wall(spans, 0, 10)
    # 0-1: llm+fitness, 1-2: llm, 2-3: llm+llm, 3-4: llm+llm+validate, 4-5: llm+validate,
    # 5-6: llm, 9-10: fitness (both fitness spans are clipped to the window)
    assert shares["llm"] == pytest.approx(1 / 2 + 1 + 1 + 2 / 3 + 1 / 2 + 1)
    assert shares["validate"] == pytest.approx(1 / 3 + 1 / 2)
    assert shares["fitness"] == pytest.approx(1 / 2 + 1)
    assert sum(shares.values()) == pytest.approx(7)  # the time anything ran: 0-6, 9-10


def test_the_sweep_matches_sharing_each_moment_by_hand():
    """share_wall against the plain definition: between each pair of consecutive edges,
    every span running there gets an equal part of that stretch."""
    rng = random.Random(7)
    for _ in range(50):
        spans = [(rng.choice(PHASES), a, a + rng.uniform(0, 3))
                 for a in (rng.uniform(-2, 10) for _ in range(rng.randint(0, 12)))]
        expected = dict.fromkeys(PHASES, 0.0)
        edges = sorted({t for _p, a, b in spans for t in (a, b)} | {0.0, 8.0})
        for lo, hi in zip(edges, edges[1:], strict=False):
            lo, hi = max(lo, 0.0), min(hi, 8.0)
            running = [p for p, a, b in spans if a <= lo and b >= hi] if hi > lo else []
            for phase in running:
                expected[phase] += (hi - lo) / len(running)
        got = share_wall(spans, 0.0, 8.0)
        assert got == pytest.approx(expected)


def test_importing_the_pipeline_does_not_load_rich():
    code = ("import sys, gitevo.cli, gitevo.pipeline.evolution, gitevo.results.progress\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
