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

from gitevo.llm.settings import LLMSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "gitevo.toml"
# only what is implemented today; the cluster executors extend this
EXECUTORS = ("local",)
PLACEHOLDERS = ("metrics", "workdir", "fidelity")
# {name} is a placeholder; ${name} and {{name}} belong to the shell and stay as written
PLACEHOLDER = re.compile(r"(?<![{$])\{([A-Za-z_]\w*)\}(?!\})")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(-?[\d.eE+-]+)\s*$")


class ConfigError(ValueError):
    """A problem in gitevo.toml; the message is one line naming file and key."""


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
class Fitness:
    command: str
    timeout: float = 600.0
    check: str | None = None
    fidelity: str = "default"
    vars: dict[str, str] = field(default_factory=dict)
    env: tuple[str, ...] = ()  # extra environment variables passed through to the sandbox


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


@dataclass(frozen=True)
class Executor:
    kind: str = "local"
    workers: int = 1
    options: dict[str, Any] = field(default_factory=dict)


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
    return parse(text, path)


def parse(text: str, path: Path | str = CONFIG_NAME) -> Config:
    """Validate TOML text; `path` is only used in error messages."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    top = _Reader(path, raw, "")
    top.reject_unknown({"genes", "fitness", "objectives", "evolution", "llm", "executor"})
    objectives = _objectives(top)
    evolution = _evolution(top.sub("evolution"), {o.name for o in objectives})
    return Config(path=path, genes=_genes(top.sub("genes")), fitness=_fitness(top.sub("fitness")),
                  objectives=objectives, evolution=evolution, llm=_llm(top.sub("llm")),
                  executor=_executor(top.sub("executor")), raw=raw)


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


def _fitness(r: _Reader) -> Fitness:
    r.reject_unknown({"command", "timeout", "check", "fidelity", "vars", "env"})
    command = r.get("command", str)
    if not command.strip():
        raise r.fail("command", "must not be empty")
    variables = r.get("vars", dict, {})
    for key, value in variables.items():
        if not isinstance(value, str):
            raise r.fail(f"vars.{key}", f"expected a string, got {value!r}")
        if key in PLACEHOLDERS:
            raise r.fail(f"vars.{key}", f"'{key}' is a built-in placeholder")
    check = r.get("check", str, None)
    known = set(PLACEHOLDERS) | set(variables)
    _check_placeholders(r, "command", command, known)
    if check:
        _check_placeholders(r, "check", check, known)
    env = r.get("env", list, [])
    if not all(isinstance(e, str) for e in env):
        raise r.fail("env", "must be a list of environment variable names")
    return Fitness(command=command, timeout=r.number("timeout", 600.0, 1.0), check=check,
                   fidelity=r.get("fidelity", str, "default"), vars=dict(variables),
                   env=tuple(env))


def _check_placeholders(r: _Reader, key: str, template: str, known: set[str]) -> None:
    for name in PLACEHOLDER.findall(template):
        if name not in known:
            raise r.fail(key, f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})")


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
                      "seed", "hall_of_fame", "constraints"})
    constraints = tuple(_constraint(r, c) for c in r.get("constraints", list, []))
    evo = Evolution(
        population=r.integer("population", 8, 1), offspring=r.integer("offspring", 8, 1),
        prob_crossover=r.number("prob_crossover", 0.3, 0.0, 1.0),
        prob_mutation=r.number("prob_mutation", 0.7, 0.0, 1.0),
        prob_eot=r.number("prob_eot", 0.0, 0.0, 1.0), seed=r.integer("seed", 0, 0),
        hall_of_fame=r.integer("hall_of_fame", 10, 1), constraints=constraints)
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


def _llm(r: _Reader) -> LLMSettings:
    return LLMSettings.from_table(r.table, r.path)


def _executor(r: _Reader) -> Executor:
    kind = r.get("kind", str, "local")
    if kind not in EXECUTORS:
        raise r.fail("kind", f"must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    workers = r.integer("workers", 1, 1)
    options = {k: v for k, v in r.table.items() if k not in ("kind", "workers")}
    return Executor(kind=kind, workers=workers, options=options)


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
