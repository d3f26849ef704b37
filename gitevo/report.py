"""Terminal reports: the population table and an individual's ancestry, from refs and notes."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from gitevo import ledger
from gitevo.config import Config
from gitevo.gitstore import GitError, Store, best_ref, llm_notes_ref, notes_ref
from gitevo.individuals import Individual, by_commit, load_all


def status(store: Store, config: Config, run: str, console: Console | None = None) -> None:
    console = console or Console()
    current = ledger.read(store, run)
    if current is None:
        raise GitError(f"{store.root}: run {run!r} has no finished generation yet "
                       "(run `gitevo init` or `gitevo generation`)")
    everyone = load_all(store, run)
    members = [everyone[m.id] for m in current.population if m.id in everyone]
    stats = current.stats
    console.print(f"run [bold]{run}[/] - generation {current.generation}, "
                  f"{len(everyone)} individuals, hypervolume {stats['hypervolume']:.6g}, "
                  f"valid offspring {stats.get('valid_rate', 1.0):.0%}")
    console.print(_table("population", members, config))
    pending = [i for i in everyone.values() if i.generation > current.generation]
    if pending:
        console.print(_table(f"generation {current.generation + 1} (in progress)", pending,
                             config))
    champion = by_commit(everyone).get(store.resolve_ref(best_ref(run)) or "")
    if champion:
        console.print(f"best: {champion.id} {_objectives(champion, config)}")


def _table(title: str, rows: list[Individual], config: Config) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "parents", "operator", "block"):
        table.add_column(column)
    for name in config.objective_names:
        table.add_column(name, justify="right")
    table.add_column("status")
    for ind in rows:
        values = ind.evaluation.objectives if ind.evaluation else {}
        table.add_row(ind.id, " ".join(ind.parents), ind.operator, ind.block,
                      *[_num(values.get(n)) for n in config.objective_names], ind.status)
    return table


def ancestry(store: Store, config: Config, run: str, ident: str | None,
             console: Console | None = None) -> None:
    """Print the ancestry tree of `ident` (default: the champion), merges with both parents."""
    console = console or Console()
    everyone = load_all(store, run)
    if ident is None:
        best = by_commit(everyone).get(store.resolve_ref(best_ref(run)) or "")
        if best is None:
            raise GitError(f"run {run!r} has no champion yet")
        ident = best.id
    if ident not in everyone:
        raise GitError(f"no individual {ident!r} in run {run!r}")
    root = Tree(_label(everyone[ident], None, config))
    _grow(root, everyone[ident], everyone, config, seen={ident})
    console.print(root)


def _grow(node: Tree, ind: Individual, everyone: dict[str, Individual], config: Config,
          seen: set[str]) -> None:
    for parent_id in ind.parents:
        parent = everyone.get(parent_id)
        if parent is None:
            node.add(f"{parent_id} (not found)")
            continue
        if parent_id in seen:  # shared ancestry of a merge: show it once
            node.add(f"{parent_id} (shown above)")
            continue
        seen.add(parent_id)
        branch = node.add(_label(parent, None, config))
        _grow(branch, parent, everyone, config, seen)
    # deltas are relative to the first parent, the one the diff was applied to
    if ind.parents and ind.parents[0] in everyone:
        node.label = _label(ind, everyone[ind.parents[0]], config)


def _label(ind: Individual, parent: Individual | None, config: Config) -> str:
    parts = [f"[bold]{ind.id}[/] {ind.commit[:10]}", ind.subject, _objectives(ind, config, parent)]
    if ind.status != "ok":
        parts.append(f"[red]{ind.status}[/]")
    return "  ".join(p for p in parts if p)


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
        _provenance(store, run, ind, console)


def _provenance(store: Store, run: str, ind: Individual, console: Console) -> None:
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
    console.print(f"=== system ===\n{record.get('system', '')}", markup=False)
    console.print(f"=== stable (cached) ===\n{record.get('stable', '')}", markup=False)
    for number, turn in enumerate(record.get("turns", []), 1):
        console.print(f"=== turn {number}: user ===\n{turn['user']}", markup=False)
        console.print(f"=== turn {number}: response ({turn.get('stop_reason')}) ===\n"
                      f"{turn['response']}", markup=False)
        if turn.get("error"):
            console.print(f"=== turn {number}: error ===\n{turn['error']}", markup=False)
    console.print(f"usage: {record.get('usage')}", markup=False)
