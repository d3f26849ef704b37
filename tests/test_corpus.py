"""The recorded LLM answers through the real proposal path, one corpus per prompt set:
tests/llm_corpus/ (the "model" set, on the exquisitenetv2 template's model.py) and
tests/llm_corpus_program/ (the "program" set, on the sortnet template's network.py).

Each answer is extracted (responses.extract), committed on the seed of a repository
written by `gitevo init --template T` (operators.build_child), and its exported tree
validated (evaluate.validate: parse, import, the template's `--check`). The pipeline
is bench/apply_rate.py's, so the benchmark measures what is tested here.

A model answer's validation costs a few seconds (two fresh interpreters importing
torch), so the slow test validates every model answer expected to be invalid and the
first answer expected to apply in each category; GITEVO_CORPUS_ALL=1 validates all of
them. The sortnet check is pure Python and fast: every program answer is validated.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import load_bench

REQUIRED = {"clean_diff", "wrong_line_numbers", "prose_around", "multi_hunk", "full_block",
            "truncated", "outside_block", "syntax_error"}
PROGRAM_REQUIRED = {"clean_diff", "full_block", "prose_around", "multi_hunk", "crlf",
                    "hallucinated_context", "outside_block", "no_diff", "runtime_error",
                    "does_not_sort"}

bench = load_bench("apply_rate")
CASES = bench.load_corpus()
BY_NAME = {case.name: case for case in CASES}
PROGRAM_CASES = bench.load_corpus(bench.PROGRAM.corpus)
PROGRAM_BY_NAME = {case.name: case for case in PROGRAM_CASES}


def _to_validate() -> list[str]:
    if os.environ.get("GITEVO_CORPUS_ALL") == "1":
        return [c.name for c in CASES if c.expect in ("apply", "invalid")]
    first_per_category: dict[str, str] = {}
    for case in CASES:
        if case.expect == "apply":
            first_per_category.setdefault(case.category, case.name)
    return sorted({*first_per_category.values(),
                   *(c.name for c in CASES if c.expect == "invalid")})


VALIDATE = _to_validate()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def applied(workdir) -> dict:
    """Every answer extracted and applied once (no validation): name -> Result."""
    results = bench.run_corpus(CASES, workdir / "apply", check=False)
    return {r.case.name: r for r in results}


def test_corpus_is_large_and_covers_every_required_category():
    assert len(CASES) >= 40
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.category] = counts.get(case.category, 0) + 1
    assert counts.keys() >= REQUIRED
    assert all(counts[c] >= 4 for c in REQUIRED), counts
    blocks = {case.block for case in CASES}
    assert blocks == {"get_optimizer", "SE", "SE_LN", "DFSEBV2", "FCT", "EVE", "ME", "DW",
                      "ExquisiteNetV2"}


def test_corpus_files_keep_their_exact_bytes():
    crlf = [c for c in CASES if c.category == "crlf"]
    assert crlf and all("\r\n" in c.response for c in crlf)
    cut = [c for c in CASES if c.expect == "reject:truncated"]
    assert cut and all(not c.response.endswith("\n") for c in cut)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_answer_is_refused_or_applied_as_expected(applied, name):
    result = applied[name]
    expect = BY_NAME[name].expect
    if expect.startswith("reject:"):
        assert result.outcome == expect, result.detail
    else:
        assert result.applied, f"{result.outcome}: {result.detail}"
        assert result.kind in ("diff", "block")


def test_applied_commits_carry_the_rationale_and_trailers(applied, workdir):
    from gitevo.store.gitstore import Store

    store = Store(workdir / "apply" / "repo")
    result = applied["thinking/se_ln_think_with_draft"]
    message = store.repo[result.commit].message
    assert message.startswith("mutation(model.py::SE_LN): I add max pooling")
    assert "CBAM observation" in message and "<think>" not in message
    assert "Gitevo-Prompt: mutation/raise_accuracy\n" in message


def test_table_counts_per_category(applied):
    table = bench.table(applied.values(), validated=False)
    lines = table.splitlines()
    assert lines[0].split() == ["category", "count", "applied", "validated", "share", "as",
                                "expected"]
    total = lines[-1].split()
    assert total[:3] == ["total", str(len(CASES)), str(sum(r.applied for r in applied.values()))]
    assert total[-1] == f"{len(CASES)}/{len(CASES)}"


@pytest.fixture(scope="module")
def validated(workdir) -> dict:
    pytest.importorskip("torch")
    chosen = [BY_NAME[name] for name in VALIDATE]
    wanted = {c.name for c in chosen}
    results = bench.run_corpus(chosen, workdir / "validate",
                               only=lambda r: r.case.name in wanted)
    return {r.case.name: r for r in results}


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", VALIDATE)
def test_applied_answer_validates_as_expected(validated, name):
    result = validated[name]
    assert result.outcome == BY_NAME[name].expect, result.detail


@pytest.fixture(scope="module")
def program(workdir) -> dict:
    """Every program answer extracted, applied and validated once: name -> Result."""
    results = bench.run_corpus(PROGRAM_CASES, workdir / "program", prompt_set=bench.PROGRAM)
    return {r.case.name: r for r in results}


def test_program_corpus_covers_its_categories_and_blocks():
    categories = {case.category for case in PROGRAM_CASES}
    assert categories >= PROGRAM_REQUIRED
    assert {case.block for case in PROGRAM_CASES} == {"sort_wires", "merge", "comparators"}
    expects = {case.expect for case in PROGRAM_CASES}
    assert {"apply", "invalid", "reject:outside-block", "reject:no-diff"} <= expects
    crlf = [c for c in PROGRAM_CASES if c.category == "crlf"]
    assert crlf and all("\r\n" in c.response for c in crlf)


@pytest.mark.parametrize("name", sorted(PROGRAM_BY_NAME))
def test_program_answer_ends_as_expected(program, name):
    result = program[name]
    assert result.outcome == PROGRAM_BY_NAME[name].expect, result.detail


def test_program_table_and_summary(program):
    results = list(program.values())
    total = bench.table(results).splitlines()[-1].split()
    assert total[0] == "total" and total[-1] == f"{len(results)}/{len(results)}"
    line = bench.summary(bench.PROGRAM, results)
    assert line.startswith(f"program: applied {sum(r.applied for r in results)}/"
                           f"{len(results)} (")
