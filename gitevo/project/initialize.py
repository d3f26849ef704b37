"""`gitevo init`: turn a repository (existing, or written from a template) into a run's seed."""

from __future__ import annotations

import re
import shutil
import stat
import sys
from pathlib import Path

import pygit2

from gitevo import config as cfg
from gitevo.core import resources
from gitevo.pipeline.plan import SEED_ID
from gitevo.store.gitstore import (
    GitError,
    Store,
    individual_ref,
    init_repository,
    notes_ref,
)
from gitevo.variation import task
from gitevo.variation.prompts import PromptLibrary

HOOKS = ("pre-commit",)
HOOK_MARK = "gitevo-hook"


def init_existing(root: Path, files: list[str], fitness: str, objectives: list[tuple[str, str]],
                  *, check: str | None = None, fidelity: str = "default",
                  variables: dict[str, str] | None = None,
                  llm: dict[str, str] | None = None, run: str = "main") -> tuple[Store, str]:
    """Write and commit gitevo.toml in a repository that already has commits."""
    store = _clean_store(root)
    _refuse_second_seed(store, run, None)
    head = store.head_commit()
    for name in files:
        if store.read_file(head, name) is None:
            raise GitError(f"{name}: gene file is not committed in {store.root}")
    text = cfg.render(files, fitness, objectives, check=check, fidelity=fidelity,
                      variables=variables)
    text = _with_llm(text, llm)
    text = _with_prompts(text, [store.read_file(head, name) or "" for name in files])
    _checked(text, store.root)  # refuse to write a config that won't load
    (store.root / cfg.CONFIG_NAME).write_text(text)
    commit = _commit_all(store, [head], f"gitevo: configure evolution of {', '.join(files)}")
    return store, commit


def init_template(dest: Path, template: str, *, fidelity: str | None = None,
                  variables: dict[str, str] | None = None,
                  llm: dict[str, str] | None = None) -> tuple[Store, str]:
    """Write a template repository into `dest` and commit it as the seed."""
    found = resources.templates()
    if template not in found:
        raise GitError(f"unknown template {template!r} (available: {', '.join(found)})")
    if dest.exists() and any(dest.iterdir()):
        raise GitError(f"{dest}: directory exists and is not empty")
    config_path = dest / cfg.CONFIG_NAME
    text = (found[template] / cfg.CONFIG_NAME).read_text()
    if fidelity:
        text = set_toml_value(text, "fitness", "fidelity", fidelity)
    for key, value in (variables or {}).items():
        text = set_toml_value(text, "fitness.vars", key, value)
    text = _with_llm(text, llm)
    genes = cfg.parse(text, config_path).genes.files
    text = _with_prompts(text, [_read(found[template] / name) for name in genes])
    _checked(text, dest)  # a bad flag fails before anything is written
    shutil.copytree(found[template], dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config_path.write_text(text)
    store = init_repository(dest)
    commit = _commit_all(store, [], f"seed: the {template} template\n\nWritten by gitevo init.")
    return store, commit


def record_seed(store: Store, run: str, commit: str) -> str:
    """Point the run's seed branch at `commit`, so that git shows the run from the start;
    the first `seed`, `generation` or `run` evaluates it. Returns the branch's name."""
    ref = individual_ref(run, SEED_ID)
    if _refuse_second_seed(store, run, commit) is None:
        store.update_refs([(ref, commit, None)], "gitevo: record seed")
    return ref.removeprefix("refs/heads/")


def _refuse_second_seed(store: Store, run: str, commit: str | None) -> str | None:
    """The run's seed commit, when it is `commit`; a GitError when it is another one."""
    ref = individual_ref(run, SEED_ID)
    held = store.resolve_ref(ref)
    if held is not None and held != commit:
        raise GitError(f"{store.root}: run {run!r} already has a seed ({ref} at "
                       f"{held[:10]}); name another run with `gitevo --run NAME init`")
    return held


def _clean_store(root: Path) -> Store:
    store = Store(root)
    if store.repo.head_is_unborn:
        raise GitError(f"{store.root}: the repository has no commits yet (commit the code "
                       "you want to evolve first)")
    if store.repo.head_is_detached:
        raise GitError(f"{store.root}: HEAD is detached (check out a branch first)")
    if (store.root / cfg.CONFIG_NAME).exists():
        raise GitError(f"{store.root / cfg.CONFIG_NAME}: already exists (gitevo is initialised)")
    dirty = store.is_dirty()
    if dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise GitError(f"{store.root}: uncommitted changes in {shown} (commit or stash first)")
    return store


def _commit_all(store: Store, parents: list[str], message: str) -> str:
    """Stage every non-ignored file and commit it on the current branch."""
    index = store.repo.index
    index.add_all()
    index.write()
    sig = store.signature()
    oid = store.repo.create_commit("HEAD", sig, sig, message + "\n", index.write_tree(),
                                   [pygit2.Oid(hex=p) for p in parents])
    return str(oid)


def install(store: Store, run: str) -> list[str]:
    """Install gitevo's git hooks and show the run's fitness notes in plain `git log`."""
    store.set_config("notes.displayRef", notes_ref(run))
    hooks_path = store.get_config("core.hooksPath")
    target = (store.root / hooks_path) if hooks_path else Path(store.repo.path) / "hooks"
    target.mkdir(parents=True, exist_ok=True)
    skipped = []
    for name in HOOKS:
        dest = target / name
        if dest.exists() and HOOK_MARK not in dest.read_text(errors="replace"):
            skipped.append(f"{dest}: a hook of yours is already there; gitevo's was not installed")
            continue
        text = (resources.hooks_dir() / name).read_text().replace("@PYTHON@", sys.executable)
        dest.write_text(text)
        dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return skipped


def task_notice(store: Store) -> str | None:
    """What `init` says about the task file the LLM prompts start with: a problem in it,
    or where to write one; None when it is there and usable."""
    conf = cfg.load(store.root / cfg.CONFIG_NAME)
    try:
        task.check(store.root, conf)
    except task.TaskError as exc:
        return f"warning: {exc}"
    if task.task_path(store.root, conf).is_file():
        return None
    return (f"no {conf.prompt.task} yet: with an LLM, describe the task there (the data, how "
            "a child is trained and measured); {objectives}, {constraints}, {fidelity} and "
            "[fitness.vars] placeholders are filled from gitevo.toml")


# [llm] keys whose values are plain strings, so `gitevo init --llm KEY=VALUE` can set them
LLM_INIT_KEYS = ("provider", "model", "base_url", "api_key_env", "command", "prompts")
# gene code that builds a torch module: the "model" prompt set fits it
_TORCH = re.compile(r"^\s*(?:import|from)\s+torch\b", re.M)
_MODULE = re.compile(r"\bnn\.Module\b|\btorch\.nn\b")


def pick_prompts(sources: list[str]) -> tuple[str, str]:
    """The prompt set for gene files with these sources, and why."""
    if any(_TORCH.search(text) and _MODULE.search(text) for text in sources):
        return "model", "the gene files build a torch module"
    return "program", "the gene files build no torch module"


def prompts_notice(store: Store) -> str:
    """What `init` says about the prompt set: which, why, and how to change it."""
    conf = cfg.load(store.root / cfg.CONFIG_NAME)
    head = store.head_commit()
    picked, why = pick_prompts([store.read_file(head, f) or "" for f in conf.genes.files])
    chosen = conf.llm.prompts
    reason = why if chosen == picked else "as gitevo.toml sets"
    return (f"prompts: {chosen!r} ({reason}); [llm] prompts in gitevo.toml changes it: "
            '"model", "program", or a folder of your own (prompts/README.md)')


def _with_prompts(text: str, sources: list[str]) -> str:
    """`text` with [llm] prompts picked from the gene files, unless it names a set already
    (a template's choice, or --llm prompts=...) or lists several [[llm]] tables."""
    llm = cfg.tomllib.loads(text).get("llm", {})
    if not isinstance(llm, dict) or "prompts" in llm:
        return text
    return set_toml_value(text, "llm", "prompts", pick_prompts(sources)[0])


def _checked(text: str, root: Path) -> None:
    """Refuse a config that won't load, or whose prompt set is incomplete or malformed."""
    conf = cfg.parse(text, root / cfg.CONFIG_NAME)
    try:
        PromptLibrary.for_config(root, conf)
    except ValueError as exc:
        raise cfg.ConfigError(str(exc)) from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _with_llm(text: str, llm: dict[str, str] | None) -> str:
    for key, value in (llm or {}).items():
        if key not in LLM_INIT_KEYS:
            raise cfg.ConfigError(f"--llm {key}: not settable from the command line (choose "
                                  f"one of {', '.join(LLM_INIT_KEYS)}; edit gitevo.toml for "
                                  "the rest)")
        text = set_toml_value(text, "llm", key, value)
    return text


def set_toml_value(text: str, section: str, key: str, value: str) -> str:
    """Set `key = "value"` inside `[section]` of TOML text, keeping comments and layout."""
    line = f"{key} = {cfg.toml_str(value)}"
    header = re.compile(rf"^\[{re.escape(section)}\]\s*$", re.M)
    match = header.search(text)
    if match is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{line}\n"
    end = re.compile(r"^\[", re.M).search(text, match.end())
    body_end = end.start() if end else len(text)
    body = text[match.end():body_end]
    existing = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
    if existing.search(body):
        body = existing.sub(lambda _m: line, body, count=1)
    else:
        body = body.rstrip("\n") + f"\n{line}\n" + ("\n" if end else "")
    return text[:match.end()] + body + text[body_end:]
