"""The `gitevo` command line: click commands and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitevo import __version__

EXIT_USAGE = 2


class _Errors(click.Group):
    """Turn gitevo's own errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        from gitevo.config import ConfigError
        from gitevo.evolution import EvolutionError
        from gitevo.gitstore import GitError

        try:
            return super().invoke(ctx)
        except (ConfigError, GitError, EvolutionError) as exc:
            click.echo(f"gitevo: error: {exc}", err=True)
            sys.exit(EXIT_USAGE)


@click.group(cls=_Errors)
@click.version_option(__version__, prog_name="gitevo")
@click.option("-C", "directory", type=click.Path(file_okay=False), default=".",
              help="Run as if started in this directory.")
@click.option("--run", "run", default="main", show_default=True, help="Name of the run.")
@click.pass_context
def main(ctx: click.Context, directory: str, run: str) -> None:
    """Evolve the code in a git repository; every individual is a branch."""
    ctx.obj = {"dir": Path(directory), "run": run}


def _open(ctx: click.Context):
    from gitevo import config
    from gitevo.gitstore import Store

    store = Store(ctx.obj["dir"])
    return store, config.load(store.root / config.CONFIG_NAME)


def _evolution(ctx: click.Context, quiet: bool = False):
    from gitevo.evolution import Evolution

    store, conf = _open(ctx)
    return Evolution(store, conf, ctx.obj["run"], log=None if quiet else click.echo)


def _pairs(values: tuple[str, ...], what: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        key, found, rest = value.partition(sep)
        if not found or not key or not rest:
            raise click.BadParameter(f"{value!r} must look like NAME{sep}VALUE", param_hint=what)
        out.append((key, rest))
    return out


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--template", help="Write a template repository into DIRECTORY (e.g. toy).")
@click.option("--files", "files", multiple=True, help="Gene file(s) that may evolve.")
@click.option("--fitness", help="Fitness command; writes metrics JSON to {metrics}.")
@click.option("--check", help="Fast validity command run before the fitness command.")
@click.option("--objective", "objectives", multiple=True, help="NAME:max or NAME:min.")
@click.option("--var", "variables", multiple=True, help="KEY=VALUE for [fitness.vars].")
@click.option("--fidelity", help="Fitness fidelity, passed as {fidelity}.")
@click.option("--llm", "llm", multiple=True,
              help="KEY=VALUE for [llm]: provider, model, base_url, api_key_env or command.")
@click.option("--no-eval", is_flag=True, help="Record the seed but do not evaluate it yet.")
@click.pass_context
def init(ctx, directory, template, files, fitness, check, objectives, variables, fidelity,
         llm, no_eval) -> None:
    """Set up a run: configure this repository, or write a template into DIRECTORY."""
    from gitevo import initialize

    variables = dict(_pairs(variables, "--var", "="))
    llm = dict(_pairs(llm, "--llm", "="))
    if template:
        dest = Path(directory or template)
        store, seed = initialize.init_template(dest, template, fidelity=fidelity,
                                               variables=variables, llm=llm)
    else:
        if not (files and fitness and objectives):
            raise click.UsageError("in an existing repository, give --files, --fitness and "
                                   "at least one --objective (or use --template)")
        root = Path(directory) if directory else ctx.obj["dir"]
        store, seed = initialize.init_existing(root, list(files), fitness,
                                               _pairs(objectives, "--objective", ":"),
                                               check=check, fidelity=fidelity or "default",
                                               variables=variables, llm=llm)
    for warning in initialize.install(store, ctx.obj["run"]):
        click.echo(f"gitevo: warning: {warning}", err=True)
    click.echo(f"seed {seed[:10]} recorded in {store.root}")
    if not no_eval:
        ctx.obj["dir"] = store.root
        _evolution(ctx).seed(seed)


@main.command()
@click.argument("rev", default="HEAD")
@click.pass_context
def seed(ctx, rev) -> None:
    """Record REV as the run's seed and evaluate it (only before generation 0 is recorded)."""
    from gitevo.gitstore import GitError

    evo = _evolution(ctx)
    if evo.current() is not None:
        raise GitError(f"run {ctx.obj['run']!r} already has a seed and a ledger; "
                       "start another run with --run NAME")
    commit = evo.store.resolve(rev)
    if commit is None:
        raise GitError(f"{rev}: no such revision")
    evo.seed(commit)


@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), help="Offspring (default: config).")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def generation(ctx, n, quiet) -> None:
    """Run the next generation, or finish an interrupted one."""
    _evolution(ctx, quiet).generation(n)


@main.command()
@click.option("--generations", type=click.IntRange(min=1), required=True)
@click.option("--n", "n", type=click.IntRange(min=1), help="Offspring per generation.")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def run(ctx, generations, n, quiet) -> None:
    """Evolve until the run has GENERATIONS generations.

    The target is a total, not a count of more generations, so the same command
    run again after a crash or a preempted job carries on where it stopped.
    """
    evo = _evolution(ctx, quiet)
    current = evo.current()
    done = current.generation if current else 0
    if done >= generations:
        click.echo(f"run {ctx.obj['run']!r} already has {done} generation(s)")
    for _ in range(done, generations):
        evo.generation(n)
        if evo.budget_exhausted:
            click.echo("LLM budget spent: stopping after this generation (raise llm.max_cost "
                       "or llm.max_tokens in gitevo.toml to go on)")
            break


@main.command()
@click.pass_context
def status(ctx) -> None:
    """The current population and the generation in progress."""
    from gitevo import report

    store, conf = _open(ctx)
    report.status(store, conf, ctx.obj["run"])


@main.command()
@click.argument("ident", required=False)
@click.pass_context
def log(ctx, ident) -> None:
    """Ancestry of an individual (default: the champion) with objective deltas."""
    from gitevo import report

    store, conf = _open(ctx)
    report.ancestry(store, conf, ctx.obj["run"], ident)


@main.command()
@click.argument("ident")
@click.option("--prompt", "with_prompt", is_flag=True, help="Also print the exact prompt "
              "and response that produced it.")
@click.pass_context
def show(ctx, ident, with_prompt) -> None:
    """One individual: rationale, fitness note, diff against each parent."""
    from gitevo import report

    store, conf = _open(ctx)
    report.show(store, conf, ctx.obj["run"], ident, with_prompt)


@main.command(hidden=True)
@click.argument("name", type=click.Choice(["pre-commit"]))
@click.pass_context
def hook(ctx, name) -> None:
    """Entry point of the git hooks that init installs."""
    from gitevo import hooks

    store, conf = _open(ctx)
    problem = hooks.pre_commit(store, conf)
    if problem:
        click.echo(f"gitevo pre-commit: {problem}", err=True)
        sys.exit(1)
