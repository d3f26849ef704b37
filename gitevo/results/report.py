"""Terminal reports: the population table and an individual's ancestry, from refs and notes."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gitevo.config import Config
from gitevo.pipeline import replay
from gitevo.pipeline.plan import SEED_ID, no_seed
from gitevo.results import allocation, hint_stats, isolation
from gitevo.results.lines import rung_line
from gitevo.store import ledger
from gitevo.store.gitstore import (
    GitError,
    Store,
    best_ref,
    individual_ref,
    llm_notes_ref,
    notes_ref,
)
from gitevo.store.individuals import Individual, by_commit, load_all
from gitevo.variation.sections import tokens


def status(store: Store, config: Config, run: str, console: Console | None = None) -> None:
    """The run at a glance: population, hall of fame, the generation in progress, champion."""
    console = console or _console()
    current = ledger.read(store, run)
    if current is None:
        console.print(_no_generation_yet(store, run), markup=False)
        return
    everyone = load_all(store, run)
    console.print(_headline(run, current, len(everyone)))
    for rung in current.stats.get("cascade", []):  # where the last generation's training went
        console.print(f"  {rung_line(rung)}", markup=False)
    line = isolation.line(_members(current.population, everyone))
    if line:
        console.print(f"  {line}", markup=False)
    view = _View(config)
    console.print(view.table("population", _members(current.population, everyone)))
    console.print(view.table("hall of fame", _members(current.hall_of_fame, everyone),
                             lineage=False))
    pending = [i for i in everyone.values() if i.generation > current.generation]
    if pending:
        console.print(view.table(f"generation {current.generation + 1} (in progress)",
                                 pending))
    champion = by_commit(everyone).get(store.resolve_ref(best_ref(run)) or "")
    if champion:
        console.print(f"best: {champion.id} {_objectives(champion, config)}")
    _arms(store, config, run, console)
    for line in hint_lines(store, config, run):
        console.print(line, markup=False)


def hint_lines(store: Store, config: Config, run: str) -> list[str]:
    """The person's hints, and how the children that saw each fared against the others."""
    found = hint_stats.gather(store, config, run)
    lines = ["hints (`gitevo hint --list`; children that saw each, against the others of "
             "those generations):"] if found else []
    for s in found:
        h = s.hint
        lines += [f"  {h.number} [{s.state}] {h.scope}: {h.text}",
                  f"      saw it: {s.saw.line()}; the others: {s.others.line()}"]
    return lines


def _arms(store: Store, config: Config, run: str, console: Console) -> None:
    """Where the LLM calls went and what each arm earned (nothing for an offline run)."""
    mode, found = allocation.rows(store, config, run)
    if not found:
        return
    table = Table(title=f"allocation ({mode}): the arms", title_justify="left")
    for column in ("factor", "arm", "children", "mean reward", "cost", "improvements",
                   "cost/improvement", "next share"):
        table.add_column(column, justify="left" if column in ("factor", "arm") else "right")
    for row in found:
        table.add_row(row.factor, escape(row.name), str(row.calls),
                      "-" if row.mean_reward is None else f"{row.mean_reward:.3f}",
                      f"${row.cost:.4f}", str(row.improvements),
                      allocation.cost_per_improvement(row), f"{row.share:.0%}")
    console.print(table)


def _no_generation_yet(store: Store, run: str) -> str:
    """What a run without generation 0 has: a seed waiting for its evaluation, or nothing."""
    seed = store.resolve_ref(individual_ref(run, SEED_ID))
    if seed is None:
        raise no_seed(store.root, run)
    return (f"run {run}: seed {SEED_ID} ({seed[:10]}) is recorded but not evaluated yet; "
            "`gitevo seed` evaluates it (`gitevo generation` and `gitevo run` do too, "
            "before their first generation)")


def _console() -> Console:
    """A terminal's own width; 120 columns when piped, where 80 would wrap every table."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    return console


def _headline(run: str, current: ledger.Generation, count: int) -> str:
    stats = current.stats
    line = (f"run [bold]{run}[/] - generation {current.generation}, {count} individuals, "
            f"hypervolume {stats['hypervolume']:.6g}, valid offspring "
            f"{stats.get('valid_rate', 1.0):.0%}")
    spent = stats.get("llm_total", {})
    if spent.get("input_tokens") or spent.get("output_tokens"):
        tokens = sum(spent.get(k, 0) for k in ("input_tokens", "output_tokens"))
        line += f", LLM {tokens:,} tokens ${spent.get('cost', 0.0):.2f}"
    return line


def _members(members: list[ledger.Member], everyone: dict[str, Individual]) -> list[Individual]:
    return [everyone[m.id] for m in members if m.id in everyone]


class _View:
    """How individuals read in a table: short block names, best first."""

    def __init__(self, config: Config):
        self.config = config
        # with one gene file the path in front of every block name is noise
        self.single_file = len(config.genes.files) == 1

    def block(self, ind: Individual) -> str:
        return ind.block.split("::", 1)[-1] if self.single_file else ind.block

    def table(self, title: str, rows: list[Individual], lineage: bool = True) -> Table:
        """One row per individual; `lineage` adds how it was made (parents, prompt)."""
        prompts = lineage and any(_prompt(ind) for ind in rows)
        table = Table(title=title, title_justify="left")
        table.add_column("id", no_wrap=True)
        if lineage:
            table.add_column("parents", no_wrap=True)
        table.add_column("operator", no_wrap=True)
        table.add_column("block")
        if prompts:
            table.add_column("prompt")
        for name, sense in zip(self.config.objective_names, self.config.senses, strict=True):
            table.add_column(f"{name} {'↑' if sense == 'max' else '↓'}", justify="right",
                             no_wrap=True)
        table.add_column("status", no_wrap=True)
        for ind in sorted(rows, key=self._rank):
            values = ind.evaluation.objectives if ind.evaluation else {}
            cells = [ind.id] + (["+".join(ind.parents)] if lineage else [])
            cells += [ind.operator, self.block(ind)] + ([_prompt(ind)] if prompts else [])
            cells += [_num(values.get(n)) for n in self.config.objective_names]
            table.add_row(*cells, ind.status)
        return table

    def _rank(self, ind: Individual) -> tuple:
        """Best first on the first objective; unevaluated and failed ones last."""
        values = ind.evaluation.objectives if ind.evaluation else {}
        first = values.get(self.config.objective_names[0])
        if first is None:
            return (1, 0.0, ind.id)
        sign = -1.0 if self.config.senses[0] == "max" else 1.0
        return (0, sign * first, ind.id)


def _prompt(ind: Individual) -> str:
    return "" if ind.prompt in ("", "offline") else ind.prompt


def ancestry(store: Store, config: Config, run: str, ident: str | None,
             console: Console | None = None) -> None:
    """Print the ancestry tree of `ident` (default: the champion), merges with both parents.

    Each node says how it was made (operator, block, prompt) and how each objective moved
    against its first parent, the one its diff was applied to.
    """
    console = console or _console()
    everyone = load_all(store, run)
    if ident is None:
        best = by_commit(everyone).get(store.resolve_ref(best_ref(run)) or "")
        if best is None:
            raise GitError(f"run {run!r} has no champion yet")
        ident = best.id
    if ident not in everyone:
        raise GitError(f"no individual {ident!r} in run {run!r}")
    view = _View(config)
    root = Tree(_label(everyone[ident], everyone, view))
    _grow(root, everyone[ident], everyone, view, seen={ident})
    console.print(root)


def _grow(node: Tree, ind: Individual, everyone: dict[str, Individual], view: _View,
          seen: set[str]) -> None:
    merge = len(ind.parents) > 1
    for number, parent_id in enumerate(ind.parents, 1):
        role = f"[dim]parent {number}:[/] " if merge else ""
        parent = everyone.get(parent_id)
        if parent is None:
            node.add(f"{role}{parent_id} (not found)")
            continue
        if parent_id in seen:  # shared ancestry of a merge: show it once
            node.add(f"{role}{parent_id} (shown above)")
            continue
        seen.add(parent_id)
        branch = node.add(role + _label(parent, everyone, view))
        _grow(branch, parent, everyone, view, seen)


def _label(ind: Individual, everyone: dict[str, Individual], view: _View) -> str:
    first = everyone.get(ind.parents[0]) if ind.parents else None
    how = ind.operator if ind.generation else "seed"
    if ind.block:
        how += f" {view.block(ind)}"
    if _prompt(ind):
        how += f" [dim]via[/] {escape(_prompt(ind))}"
    parts = [f"[bold]{ind.id}[/] {ind.commit[:10]}", how,
             _objectives(ind, view.config, first)]
    if ind.status != "ok":
        parts.append(f"[red]{ind.status}[/]")
    if ind.generation:
        parts.append(f"[dim]{escape(_summary(ind.subject))}[/]")
    return "  ".join(p for p in parts if p)


def _summary(subject: str) -> str:
    """The commit subject without its `operator(block): ` prefix, which the label shows."""
    head, found, rest = subject.partition("): ")
    return rest if found and "(" in head else subject


def _objectives(ind: Individual, config: Config, parent: Individual | None = None) -> str:
    if not ind.evaluation or not ind.evaluation.objectives:
        return ""
    before = parent.evaluation.objectives if parent and parent.evaluation else {}
    out = []
    for name in config.objective_names:
        value = ind.evaluation.objectives.get(name)
        delta = ""
        if value is not None and before.get(name) is not None:
            delta = f" ({value - before[name]:+.4g})"
        out.append(f"{name}={_num(value)}{delta}")
    return " ".join(out)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def show(store: Store, config: Config, run: str, ident: str, with_prompt: bool = False,
         console: Console | None = None) -> None:
    """An individual: rationale, fitness note, diff against each parent, and its prompt."""
    console = console or Console(highlight=False, soft_wrap=True)  # exact text, unwrapped
    everyone = load_all(store, run)
    ind = everyone.get(ident)
    if ind is None:
        raise GitError(f"no individual {ident!r} in run {run!r}")
    console.print(f"[bold]{ind.id}[/] {ind.commit}  {ind.operator} {ind.block}".rstrip())
    console.print(store.message(ind.commit).rstrip(), markup=False)
    note = store.read_note(notes_ref(run), ind.commit)
    console.rule("fitness")
    console.print(note.rstrip() if note else "(not evaluated yet)", markup=False)
    for parent in store.parents(ind.commit):
        console.rule(f"diff against {by_commit(everyone).get(parent, ind).id} {parent[:10]}")
        console.print(store.diff(parent, ind.commit).rstrip(), markup=False)
    if with_prompt:
        _provenance(store, config, run, ind, console)


def _sections(shown: dict[str, str], config: Config, console: Console) -> None:
    """The evidence sections the prompt carried, each with its size against its budget
    (they appear again, in place, in the exact conversation below)."""
    if not shown:
        return
    budgets = config.prompt.tokens
    sizes = ", ".join(f"{name} {tokens(text)}/{budgets.get(name, '-')}" if text
                      else f"{name} -" for name, text in shown.items()
                      if text or name != "hints")  # hints only where a person gave some
    console.print(f"sections (estimated tokens / budget): {sizes}", markup=False)
    for name, text in shown.items():
        if text:
            where = "cached part" if name == "task" else "this call's part"
            console.print(f"=== section: {name} ({where}) ===\n{text}", markup=False)


def _provenance(store: Store, config: Config, run: str, ind: Individual,
                console: Console) -> None:
    text = store.read_note(llm_notes_ref(run), ind.commit)
    console.rule("prompt and response")
    if text is None:
        console.print(f"{ind.id} was made without an LLM (operator {ind.operator}, "
                      f"{ind.subject})", markup=False)
        return
    record = json.loads(text)
    console.print(f"model {record.get('model')} via {record.get('provider')}, template "
                  f"{record.get('template')}, persona {record.get('persona')}, temperature "
                  f"{record.get('temperature')}, max tokens {record.get('max_tokens')}",
                  markup=False)
    _sections(record.get("sections") or {}, config, console)
    console.print(f"=== system ===\n{record.get('system', '')}", markup=False)
    console.print(f"=== stable (cached) ===\n{record.get('stable', '')}", markup=False)
    for number, turn in enumerate(record.get("turns", []), 1):
        console.print(f"=== turn {number}: user ===\n{turn['user']}", markup=False)
        console.print(f"=== turn {number}: response ({turn.get('stop_reason')}) ===\n"
                      f"{turn['response']}", markup=False)
        if turn.get("error"):
            console.print(f"=== turn {number}: error ===\n{turn['error']}", markup=False)
    console.print(f"usage: {record.get('usage')}", markup=False)
    if record.get("spec"):
        console.print(_replayed(store, config, run, ind.id), markup=False)


def _replayed(store: Store, config: Config, run: str, ident: str) -> str:
    """Whether the prompt, built again from refs and notes, is the one recorded."""
    try:
        same = replay.same_as_recorded(store, config, run, ident)
    except (ValueError, KeyError, GitError) as exc:
        return f"rebuilt from refs and notes: could not ({exc})"
    return ("rebuilt from refs and notes: identical to the recorded prompt" if same else
            "rebuilt from refs and notes: differs from the recorded prompt (the task file, "
            "the prompt templates or [prompt] changed since it was sent)")
