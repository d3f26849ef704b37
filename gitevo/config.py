"""gitevo.toml: schema, defaults and validation.

Every validation error is one line that names the file, the key and the problem,
because users meet these errors first and should fix them without reading code.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitevo.core.errors import ConfigError as ConfigError  # where callers look for it
from gitevo.llm.settings import LLMSettings, models_from_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "gitevo.toml"
EXECUTORS = ("local", "ray", "slurm")
SLURM_CLUSTERS = ("slurm", "local")  # "local": submitit runs each job as a local process
_GPU_ID = re.compile(r"^[\w-]+$")  # an index or a UUID such as GPU-5fd4...
# sbatch --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_SLURM_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
PLACEHOLDERS = ("metrics", "workdir", "fidelity")
ARTIFACTS = "artifacts"  # the trainer's results, for [fitness] score; only where it is set
PROGRESS = "progress"  # a file the fitness command appends its learning curve to (JSON lines)
# {name} is a placeholder; ${name} and {{name}} belong to the shell and stay as written
PLACEHOLDER = re.compile(r"(?<![{$])\{([A-Za-z_]\w*)\}(?!\})")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(-?[\d.eE+-]+)\s*$")


@dataclass(frozen=True)
class Objective:
    name: str
    sense: str  # "max" or "min"
    reference: float | None = None  # hypervolume reference; derived from the seed if None


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """How far `value` is on the wrong side of the bound (0 when satisfied)."""
        excess = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if excess == 0 and self.op in ("<", ">"):
            return 1e-12  # a strict bound met with equality is violated, if barely
        return max(excess, 0.0)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Genes:
    files: tuple[str, ...]
    blocks: tuple[str, ...] = ()  # "path::Name" allowlist; empty means every top-level block


@dataclass(frozen=True)
class Budget:
    """When a child's training is suspect: its fitness command (the trainer, timed by
    gitevo) ran over `ratio` times its parent's at the same fidelity, plus `grace`
    seconds, more than a model bigger by the `size` metric would explain."""

    ratio: float = 2.0
    grace: float = 30.0
    size: str = "params"  # "" when no metric measures the model's size


PROMOTIONS = ("async", "asha", "sync")


@dataclass(frozen=True)
class Rung:
    """A screening evaluation before the full one: the fitness command at a cheaper
    fidelity (or [fitness.vars] overrides), and the share of the children that reach it
    that go on to the next rung (by non-dominated rank, then crowding)."""

    fidelity: str | None = None  # None: [fitness] fidelity
    vars: dict[str, str] = field(default_factory=dict)  # over [fitness.vars]
    promote: float = 0.5
    # also hold back a child whose first objective here is worse than its parent's at
    # this rung by more than this (None: the share alone decides)
    margin: float | None = None


@dataclass(frozen=True)
class EarlyStop:
    """When to stop an evaluation whose learning curve ({progress}) is clearly behind its
    parent's at the same point: by more than `margin` in `metric` (better is `goal`), once
    at least `min_fraction` of the run is done."""

    metric: str
    goal: str  # "max" or "min"
    margin: float = 0.05
    min_fraction: float = 0.3


@dataclass(frozen=True)
class Fitness:
    command: str
    timeout: float = 600.0
    check: str | None = None
    fidelity: str = "default"
    vars: dict[str, str] = field(default_factory=dict)
    env: tuple[str, ...] = ()  # extra environment variables passed through to the sandbox
    # run on the run's seed commit, with the network, before a process's first evaluation
    # (init, generation, verify): fetch data into a cache so evaluations need no network
    prepare: str | None = None
    # the trusted scorer: run after the fitness command (the trainer) has ended, on a copy
    # of the tree as it was before training and of the files the trainer left in
    # {artifacts}; only its metrics decide selection, and only it sees the held-out data
    score: str | None = None
    # the scorer waits for {artifacts} to appear, so it may start with the trainer and
    # load itself meanwhile; gitevo does so only where bubblewrap keeps the trainer from
    # reaching it (elsewhere it starts once the trainer has ended, as without this)
    score_early: bool = False
    budget: Budget = field(default_factory=Budget)
    # [fitness.cascade] rungs: screening evaluations in order, before the full one (the
    # [fitness] settings themselves, always the last rung); empty: every child is
    # evaluated in full
    rungs: tuple[Rung, ...] = ()
    # [fitness.cascade] promotion, where more than one evaluation runs at a time: "async"
    # promotes a child as soon as enough siblings are in to be sure the whole rung would;
    # "asha" by ASHA's rule (sooner, a few extra); "sync" waits for the whole rung
    promotion: str = "async"
    # [fitness.early_stop]: None = every evaluation runs to its end
    early_stop: EarlyStop | None = None


@dataclass(frozen=True)
class Evolution:
    population: int = 8
    offspring: int = 8
    prob_crossover: float = 0.3
    prob_mutation: float = 0.7
    prob_eot: float = 0.0
    seed: int = 0
    hall_of_fame: int = 10
    constraints: tuple[Constraint, ...] = ()
    # refuse a child whose gene files only restate its parent's or a population member's
    # (comments, docstrings, formatting, local names aside); reuse the evaluation of a
    # child whose tree an earlier individual already had
    dedupe: bool = True
    # how models, mutation directions and personas are drawn: "uniform", or "bandit"
    # (learned from the run's outcomes); None: bandit when there is a choice to learn
    allocation: str | None = None


ALLOCATIONS = ("uniform", "bandit")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: ray.init() starts or finds a cluster as Ray decides
    num_cpus: float = 1.0  # resources each evaluation task asks for
    num_gpus: float = 0.0


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time: int = 60  # minutes per evaluation job
    gpus_per_task: int = 0
    mem_gb: float | None = None
    cpus_per_task: int = 1
    # submitit's job files, which the nodes must see (relative: to the repository);
    # None: .git/gitevo/slurm
    folder: str | None = None
    sbatch: dict[str, str] = field(default_factory=dict)  # more `#SBATCH --key=value` lines
    cluster: str = "slurm"


@dataclass(frozen=True)
class Executor:
    kind: str = "local"
    # evaluations in flight; 0 (ray, slurm, when unset): as many as the cluster takes
    workers: int = 1
    gpus: str | tuple[str, ...] = "auto"  # local: "auto" (detect) or the device ids to use
    per_gpu: int = 1  # local: evaluations sharing one GPU
    retries: int = 2  # ray, slurm: new attempts after a lost worker or node
    ray: RayOptions = field(default_factory=RayOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


ISOLATIONS = ("auto", "bwrap", "unshare", "none")


@dataclass(frozen=True)
class Sandbox:
    """How evaluated code is confined (see gitevo/execution/sandbox.py and `gitevo doctor`)."""

    network: str = "deny"  # or "allow"
    isolation: str = "auto"  # "bwrap", "unshare", "none"; auto takes the first that works
    memory: float | None = None  # GB of address space per process; 0: none; None: auto
    processes: int = 1024  # tasks (threads count) in one evaluation
    file_size: float = 16.0  # GB, largest file one process may write; 0: no limit
    # paths (placeholders of [fitness.vars] filled) that read as empty for every command
    # but prepare and score: a dataset's held-out part, wherever it lives
    hide: tuple[str, ...] = ()
    # Landlock under every candidate process where the kernel has it (inside bubblewrap too)
    landlock: bool = True
    # protections a run refuses to start without ("filesystem", "network"); else a warning
    require: tuple[str, ...] = ()


SECTIONS = ("task", "hints", "scores", "history", "inspiration", "notebook")


@dataclass(frozen=True)
class Prompt:
    """[prompt]: what a prompt shows of the task and of the run so far, and how much.

    `tokens` caps each section (estimated at 4 characters a token); the prompt builder
    drops the oldest history (the lowest-ranked inspiration) first to stay under it."""

    task: str = ".gitevo/task.md"  # the task file, relative to the repository
    recipe: str | None = None  # a command run on the seed; its output fills {recipe}
    history: int = 4  # earlier attempts on the block shown (0: none)
    inspiration: int = 0  # best individuals' versions of the block shown (0: none)
    notebook: bool = False  # an LLM call after each generation keeps a notebook of lessons
    tokens: dict[str, int] = field(default_factory=lambda: {
        "task": 1200, "hints": 400, "scores": 300, "history": 1200, "inspiration": 2000,
        "notebook": 600})


@dataclass(frozen=True)
class Config:
    path: Path
    genes: Genes
    fitness: Fitness
    objectives: tuple[Objective, ...]
    evolution: Evolution
    llm: LLMSettings
    executor: Executor
    raw: dict[str, Any]
    sandbox: Sandbox = field(default_factory=Sandbox)
    prompt: Prompt = field(default_factory=Prompt)
    # every model of the run, `llm` first: one, or an ensemble of [[llm]] tables
    models: tuple[LLMSettings, ...] = ()

    @property
    def ensemble(self) -> tuple[LLMSettings, ...]:
        """The run's models, `llm` (which a replace() may have swapped) first."""
        return (self.llm, *self.models[1:])

    @property
    def senses(self) -> list[str]:
        return [o.sense for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]


class _Reader:
    """Typed access to a TOML table that reports errors as `file: key: problem`."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str):
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        where = f"{self.prefix}.{key}" if self.prefix else key
        return ConfigError(f"{self.path}: {where}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "required key is missing")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {_kind_name(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {_kind_name(kinds)}, got {value!r}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float = math.inf) -> float:
        value = float(self.get(key, (int, float), default))
        if not lo <= value <= hi or math.isnan(value):
            bounds = f"between {lo:g} and {hi:g}" if hi != math.inf else f">= {lo:g}"
            raise self.fail(key, f"must be {bounds}, got {value:g}")
        return value

    def integer(self, key: str, default: int, lo: int) -> int:
        value = self.get(key, int, default)
        if value < lo:
            raise self.fail(key, f"must be >= {lo}, got {value}")
        return value

    def sub(self, key: str) -> _Reader:
        table = self.get(key, dict, {})
        return _Reader(self.path, table, f"{self.prefix}.{key}" if self.prefix else key)

    def reject_unknown(self, known: set[str]) -> None:
        for key in self.table:
            if key not in known:
                raise self.fail(key, f"unknown key (known: {', '.join(sorted(known))})")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load(path: str | Path) -> Config:
    """Read and validate a gitevo.toml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run `gitevo init` first)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    return parse(text, path)


def parse(text: str, path: Path | str = CONFIG_NAME) -> Config:
    """Validate TOML text; `path` is only used in error messages."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    top = _Reader(path, raw, "")
    top.reject_unknown({"genes", "fitness", "objectives", "evolution", "llm", "executor",
                        "sandbox", "prompt"})
    objectives = _objectives(top)
    evolution = _evolution(top.sub("evolution"), {o.name for o in objectives})
    fitness = _fitness(top.sub("fitness"), objectives)
    models = models_from_config(raw.get("llm", {}), path)
    return Config(path=path, genes=_genes(top.sub("genes")), fitness=fitness,
                  objectives=objectives, evolution=evolution, llm=models[0], models=models,
                  executor=_executor(top.sub("executor")), raw=raw,
                  sandbox=_sandbox(top.sub("sandbox"), set(fitness.vars)),
                  prompt=_prompt(top.sub("prompt"), set(fitness.vars)))


def _genes(r: _Reader) -> Genes:
    r.reject_unknown({"files", "blocks"})
    files = r.get("files", list)
    if not files or not all(isinstance(f, str) and f for f in files):
        raise r.fail("files", "must be a non-empty list of paths")
    for f in files:
        if f.startswith("/") or ".." in Path(f).parts or f.startswith(".git/"):
            raise r.fail("files", f"{f!r} must be a relative path inside the repository")
    blocks = r.get("blocks", list, [])
    for b in blocks:
        if not isinstance(b, str) or "::" not in b or b.split("::")[0] not in files:
            raise r.fail("blocks", f"{b!r} must look like 'FILE::Name' with FILE in genes.files")
    return Genes(files=tuple(files), blocks=tuple(blocks))


def _fitness(r: _Reader, objectives: tuple[Objective, ...]) -> Fitness:
    r.reject_unknown({"command", "timeout", "check", "fidelity", "vars", "env", "prepare",
                      "score", "score_early", "budget", "cascade", "early_stop"})
    command = r.get("command", str)
    if not command.strip():
        raise r.fail("command", "must not be empty")
    variables = r.get("vars", dict, {})
    for key, value in variables.items():
        if not isinstance(value, str):
            raise r.fail(f"vars.{key}", f"expected a string, got {value!r}")
        if key in (*PLACEHOLDERS, ARTIFACTS, PROGRESS):
            raise r.fail(f"vars.{key}", f"'{key}' is a built-in placeholder")
    check = r.get("check", str, None)
    prepare = r.get("prepare", str, None)
    score = r.get("score", str, None)
    known = set(PLACEHOLDERS) | set(variables)
    if score is not None:
        _check_scorer(r, command, score)
    early = r.get("score_early", bool, False)
    if early and score is None:
        raise r.fail("score_early", "starts the scorer early, but no fitness.score is set")
    if score is None and ARTIFACTS in PLACEHOLDER.findall(command):
        raise r.fail("command", f"{{{ARTIFACTS}}} is only for a trainer whose results "
                     "[fitness] score reads; set fitness.score too")
    # the trainer and the scorer share {artifacts}; the checks and prepare run without one
    shared = known | ({ARTIFACTS} if score is not None else set())
    for key, template, names in (("command", command, shared | {PROGRESS}),
                                 ("check", check, known),
                                 ("prepare", prepare, known), ("score", score, shared)):
        if template:
            _check_placeholders(r, key, template, names)
    env = r.get("env", list, [])
    if not all(isinstance(e, str) for e in env):
        raise r.fail("env", "must be a list of environment variable names")
    return Fitness(command=command, timeout=r.number("timeout", Fitness.timeout, 1.0), check=check,
                   fidelity=r.get("fidelity", str, "default"), vars=dict(variables),
                   env=tuple(env), prepare=prepare or None, score=score, score_early=early,
                   budget=_budget(r.sub("budget")),
                   rungs=_rungs(r.sub("cascade"), set(variables)),
                   promotion=_promotion(r.sub("cascade")),
                   early_stop=_early_stop(r, command, objectives))


def _early_stop(r: _Reader, command: str,
                objectives: tuple[Objective, ...]) -> EarlyStop | None:
    if "early_stop" not in r.table:
        return None
    if PROGRESS not in PLACEHOLDER.findall(command):
        raise r.fail("early_stop", f"needs a learning curve: the command must name "
                     f"{{{PROGRESS}}}, the file it appends JSON lines to")
    sub = r.sub("early_stop")
    sub.reject_unknown({"metric", "goal", "margin", "min_fraction"})
    senses = {o.name: o.sense for o in objectives}
    metric = sub.get("metric", str, objectives[0].name if objectives else "")
    goal = sub.get("goal", str, senses.get(metric))
    if goal is None:
        raise sub.fail("goal", f'required: {metric!r} is not an objective, so say whether '
                       'higher ("max") or lower ("min") is better')
    if goal not in ("max", "min"):
        raise sub.fail("goal", f'must be "max" or "min", got {goal!r}')
    return EarlyStop(metric=metric, goal=goal,
                     margin=sub.number("margin", EarlyStop.margin, 0.0),
                     min_fraction=sub.number("min_fraction", EarlyStop.min_fraction, 0.0, 1.0))


def _promotion(r: _Reader) -> str:
    promotion = r.get("promotion", str, Fitness.promotion)
    if promotion not in PROMOTIONS:
        raise r.fail("promotion", f'must be "async", "asha" or "sync", got {promotion!r}')
    return promotion


def _rungs(r: _Reader, variables: set[str]) -> tuple[Rung, ...]:
    r.reject_unknown({"rungs", "promotion"})
    rungs = []
    for i, table in enumerate(r.get("rungs", list, [])):
        if not isinstance(table, dict):
            raise r.fail(f"rungs[{i}]", f"expected a table, got {table!r}")
        sub = _Reader(r.path, table, f"{r.prefix}.rungs[{i}]")
        sub.reject_unknown({"fidelity", "vars", "promote", "margin"})
        overrides = sub.get("vars", dict, {})
        for key, value in overrides.items():
            if key not in variables:
                raise sub.fail(f"vars.{key}", "not a key of [fitness.vars], so no command "
                               "reads it")
            if not isinstance(value, str):
                raise sub.fail(f"vars.{key}", f"expected a string, got {value!r}")
        fidelity = sub.get("fidelity", str, None)
        if fidelity is None and not overrides:
            raise sub.fail("fidelity", "a rung needs a fidelity or vars that make it cheaper")
        promote = sub.number("promote", Rung.promote, 0.0, 1.0)
        if promote == 0.0:
            raise sub.fail("promote", "must be above 0: a rung that promotes nobody ends "
                           "every generation with no child measured in full")
        margin = sub.number("margin", math.nan, 0.0) if "margin" in table else None
        rungs.append(Rung(fidelity=fidelity, vars=dict(overrides), promote=promote,
                          margin=margin))
    return tuple(rungs)


def _budget(r: _Reader) -> Budget:
    r.reject_unknown({"ratio", "grace", "size"})
    return Budget(ratio=r.number("ratio", Budget.ratio, 1.0),
                  grace=r.number("grace", Budget.grace, 0.0), size=r.get("size", str, Budget.size))


def _check_scorer(r: _Reader, command: str, score: str) -> None:
    """A scorer needs the trainer's artifacts, and must not be the trainer itself."""
    if not score.strip():
        raise r.fail("score", "must not be empty (leave it out to score in the fitness command)")
    for key, template in (("command", command), ("score", score)):
        if ARTIFACTS not in PLACEHOLDER.findall(template):
            raise r.fail(key, f"must name {{{ARTIFACTS}}}: the trainer leaves its results "
                         "there and the scorer reads a copy of them")


def _check_placeholders(r: _Reader, key: str, template: str, known: set[str]) -> None:
    for name in PLACEHOLDER.findall(template):
        if name not in known:
            listed = ", ".join(sorted(known)) or "none; add it to [fitness.vars]"
            raise r.fail(key, f"unknown placeholder {{{name}}} (known: {listed})")


def _objectives(top: _Reader) -> tuple[Objective, ...]:
    r = top.sub("objectives")
    if not r.table:
        raise top.fail("objectives", "at least one objective is required, e.g. accuracy = \"max\"")
    out = []
    for name, spec in r.table.items():
        if isinstance(spec, str):
            spec = {"sense": spec}
        if not isinstance(spec, dict):
            raise r.fail(name, f"expected \"max\", \"min\" or a table, got {spec!r}")
        sub = _Reader(r.path, spec, f"objectives.{name}")
        sub.reject_unknown({"sense", "reference"})
        sense = sub.get("sense", str)
        if sense not in ("max", "min"):
            raise sub.fail("sense", f"must be \"max\" or \"min\", got {sense!r}")
        reference = sub.get("reference", (int, float), None)
        out.append(Objective(name, sense, None if reference is None else float(reference)))
    return tuple(out)


def _evolution(r: _Reader, objective_names: set[str]) -> Evolution:
    r.reject_unknown({"population", "offspring", "prob_crossover", "prob_mutation", "prob_eot",
                      "seed", "hall_of_fame", "constraints", "dedupe", "allocation"})
    constraints = tuple(_constraint(r, c) for c in r.get("constraints", list, []))
    evo = Evolution(
        population=r.integer("population", 8, 1), offspring=r.integer("offspring", 8, 1),
        prob_crossover=r.number("prob_crossover", 0.3, 0.0, 1.0),
        prob_mutation=r.number("prob_mutation", 0.7, 0.0, 1.0),
        prob_eot=r.number("prob_eot", 0.0, 0.0, 1.0), seed=r.integer("seed", 0, 0),
        hall_of_fame=r.integer("hall_of_fame", 10, 1), constraints=constraints,
        dedupe=r.get("dedupe", bool, True), allocation=r.get("allocation", str, None))
    if evo.allocation is not None and evo.allocation not in ALLOCATIONS:
        raise r.fail("allocation", f"must be one of {', '.join(ALLOCATIONS)}, got "
                                   f"{evo.allocation!r}")
    if evo.prob_crossover + evo.prob_mutation + evo.prob_eot <= 0:
        raise r.fail("prob_mutation", "prob_crossover + prob_mutation + prob_eot must be > 0")
    return evo


def _constraint(r: _Reader, text: Any) -> Constraint:
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise r.fail("constraints", f"{text!r} must look like 'params <= 518230'")
    try:
        bound = float(match.group(3))
    except ValueError:
        raise r.fail("constraints", f"{text!r}: bound is not a number") from None
    return Constraint(match.group(1), match.group(2), bound)


def _executor(r: _Reader) -> Executor:
    r.reject_unknown({"kind", "workers", "gpus", "per_gpu", "retries", "ray", "slurm"})
    kind = r.get("kind", str, "local")
    if kind not in EXECUTORS:
        raise r.fail("kind", f"must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    # a cluster's executor defaults to filling the cluster; a local one to one at a time
    workers = r.integer("workers", 1 if kind == "local" else 0, 1 if "workers" in r.table else 0)
    return Executor(kind=kind, workers=workers, gpus=_gpus(r),
                    per_gpu=r.integer("per_gpu", 1, 1), retries=r.integer("retries", 2, 0),
                    ray=_ray(r.sub("ray")), slurm=_slurm(r.sub("slurm")))


def _gpus(r: _Reader) -> str | tuple[str, ...]:
    value = r.get("gpus", (str, list), "auto")
    if value == "auto":
        return value
    ids = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v
           for v in (value if isinstance(value, list) else [None])]
    if not all(isinstance(v, str) and _GPU_ID.match(v) for v in ids):
        raise r.fail("gpus", f'must be "auto" or a list of device ids like [0, 1], got {value!r}')
    return tuple(ids)


def _ray(r: _Reader) -> RayOptions:
    r.reject_unknown({"address", "num_cpus", "num_gpus"})
    return RayOptions(address=r.get("address", str, None),
                      num_cpus=r.number("num_cpus", 1.0, 0.0),
                      num_gpus=r.number("num_gpus", 0.0, 0.0))


def _slurm(r: _Reader) -> SlurmOptions:
    r.reject_unknown({"partition", "time", "gpus_per_task", "mem_gb", "cpus_per_task",
                      "folder", "sbatch", "cluster"})
    sbatch = r.get("sbatch", dict, {})
    for key, value in sbatch.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise r.fail(f"sbatch.{key}", f"expected a string or a number, got {value!r}")
    cluster = r.get("cluster", str, "slurm")
    if cluster not in SLURM_CLUSTERS:
        raise r.fail("cluster", f"must be one of {', '.join(SLURM_CLUSTERS)}, got {cluster!r}")
    mem = r.get("mem_gb", (int, float), None)
    if mem is not None and not mem > 0:
        raise r.fail("mem_gb", f"must be > 0, got {mem}")
    return SlurmOptions(partition=r.get("partition", str, None), time=_minutes(r, "time", 60),
                        gpus_per_task=r.integer("gpus_per_task", 0, 0),
                        mem_gb=None if mem is None else float(mem),
                        cpus_per_task=r.integer("cpus_per_task", 1, 1),
                        folder=r.get("folder", str, None),
                        sbatch={k: str(v) for k, v in sbatch.items()}, cluster=cluster)


def _minutes(r: _Reader, key: str, default: int) -> int:
    """A SLURM time limit in minutes: a number, or a string in any form sbatch takes."""
    value = r.get(key, (int, str), default)
    if isinstance(value, int):
        if value < 1:
            raise r.fail(key, f"must be >= 1 minute, got {value}")
        return value
    match = _SLURM_TIME.match(value)
    if not match:
        raise r.fail(key, f'must be minutes or sbatch\'s "M:S", "H:M:S", "D-H[:M[:S]]", '
                          f"got {value!r}")
    days, day_hours, day_minutes, day_seconds, *parts = match.groups()
    if days is not None:
        hours, minutes, seconds = (int(g or 0) for g in (day_hours, day_minutes, day_seconds))
        total = int(days) * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
    else:  # as sbatch reads them: M, M:S, H:M:S
        numbers = [int(g) for g in parts if g is not None]
        hours, minutes, seconds = numbers if len(numbers) == 3 else [0, *numbers, 0][:3]
        total = hours * 60 + minutes + math.ceil(seconds / 60)
    return max(1, total)


def _sandbox(r: _Reader, variables: set[str]) -> Sandbox:
    r.reject_unknown({"network", "isolation", "memory", "processes", "file_size", "hide",
                      "landlock", "require"})
    require = r.get("require", list, [])
    for entry in require:
        if entry not in ("filesystem", "network"):
            raise r.fail("require", f'must list "filesystem" and/or "network", got {entry!r}')
    network = r.get("network", str, "deny")
    if network not in ("deny", "allow"):
        raise r.fail("network", f'must be "deny" or "allow", got {network!r}')
    isolation = r.get("isolation", str, "auto")
    if isolation not in ISOLATIONS:
        raise r.fail("isolation", f"must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    memory = r.get("memory", (str, int, float), "auto")
    if memory != "auto" and (isinstance(memory, str) or not 0 <= memory < math.inf):
        raise r.fail("memory", f'must be "auto" or GB >= 0 (0: no limit), got {memory!r}')
    hide = r.get("hide", list, [])
    for entry in hide:
        if not isinstance(entry, str) or not entry.strip():
            raise r.fail("hide", f"must be a list of paths, got {entry!r}")
        _check_placeholders(r, "hide", entry, variables)
    return Sandbox(network=network, isolation=isolation,
                   memory=None if memory == "auto" else float(memory),
                   processes=r.integer("processes", 1024, 8),
                   file_size=r.number("file_size", 16.0, 0.0), hide=tuple(hide),
                   landlock=r.get("landlock", bool, True), require=tuple(require))


def _prompt(r: _Reader, variables: set[str]) -> Prompt:
    r.reject_unknown({"task", "recipe", "history", "inspiration", "notebook", "tokens"})
    task = r.get("task", str, Prompt.task)
    if not task.strip() or Path(task).is_absolute() or ".." in Path(task).parts:
        raise r.fail("task", f"must be a path inside the repository, got {task!r}")
    recipe = r.get("recipe", str, None)
    if recipe is not None:
        if not recipe.strip():
            raise r.fail("recipe", "must be a command (leave the key out for none)")
        _check_placeholders(r, "recipe", recipe, {"fidelity", *variables})
    tokens = r.sub("tokens")
    tokens.reject_unknown(set(SECTIONS))
    defaults = Prompt().tokens
    return Prompt(task=task, recipe=recipe, history=r.integer("history", Prompt.history, 0),
                  inspiration=r.integer("inspiration", Prompt.inspiration, 0),
                  notebook=r.get("notebook", bool, Prompt.notebook),
                  tokens={k: tokens.integer(k, defaults[k], 50) for k in SECTIONS})


def render(files: list[str], command: str, objectives: list[tuple[str, str]], *,
           check: str | None = None, fidelity: str = "default", timeout: float = 600,
           variables: dict[str, str] | None = None, evolution: dict[str, Any] | None = None,
           ) -> str:
    """A commented gitevo.toml for `gitevo init` in an existing repository."""
    lines = ["# gitevo configuration: see `gitevo --help` and the README.", "",
             "[genes]", f"files = {_toml_list(files)}",
             "# blocks = [\"FILE::Name\"]  # optional allowlist of evolvable top-level blocks", "",
             "[fitness]", "# placeholders: {metrics} JSON output path, {workdir} checkout, "
             "{fidelity}, and [fitness.vars]", f"command = {toml_str(command)}"]
    if check:
        lines.append(f"check = {toml_str(check)}")
    lines += [f"fidelity = {toml_str(fidelity)}", f"timeout = {timeout:g}"]
    if variables:
        lines += ["", "[fitness.vars]"] + [f"{k} = {toml_str(v)}" for k, v in variables.items()]
    lines += ["", "[objectives]"] + [f"{n} = {toml_str(s)}" for n, s in objectives]
    evo = {"population": 8, "offspring": 8, "prob_crossover": 0.3, "prob_mutation": 0.7,
           "prob_eot": 0.0, "seed": 0, **(evolution or {})}
    lines += ["", "[evolution]"] + [f"{k} = {_toml_value(v)}" for k, v in evo.items()]
    lines += ["constraints = []  # e.g. [\"params <= 518230\"]", "", "[llm]",
              "provider = \"offline\"", "", "[executor]", "kind = \"local\"", "workers = 1", ""]
    return "\n".join(lines)


def toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
