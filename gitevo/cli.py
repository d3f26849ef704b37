"""The `gitevo` command line: click commands and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitevo import __version__
from gitevo.core.events import JSON_HELP

EXIT_USAGE = 2


class _Errors(click.Group):
    """Turn gitevo's own errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        from gitevo.config import ConfigError
        from gitevo.pipeline.errors import EvolutionError
        from gitevo.pipeline.prepare import PrepareError
        from gitevo.results.verify import VerifyError
        from gitevo.store.gitstore import GitError

        try:
            return super().invoke(ctx)
        except (ConfigError, GitError, EvolutionError, PrepareError, VerifyError) as exc:
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
    from gitevo.store.gitstore import Store

    store = Store(ctx.obj["dir"])
    return store, config.load(store.root / config.CONFIG_NAME)


def _evolution(ctx: click.Context, events=None):
    from gitevo.pipeline.evolution import Evolution

    store, conf = _open(ctx)
    _isolation_warning(conf)
    return Evolution(store, conf, ctx.obj["run"], events=events)


def _isolation_warning(conf) -> None:
    """One line on stderr when candidates run with a protection missing here (or the
    one-line error of a `[sandbox] require` that this machine cannot meet)."""
    from gitevo.execution import protection

    line = protection.warning(conf.sandbox)
    if line:
        click.echo(f"gitevo: warning: {line}", err=True)


def _progress_options(command):
    """-q/--quiet and --json, for the commands that evolve."""
    command = click.option("--json", "json_lines", is_flag=True,
                           help="JSON Lines on stdout, one object per event (keys below).")(
                               command)
    return click.option("-q", "--quiet", is_flag=True,
                        help="Print nothing; errors still go to stderr.")(command)


def _progress(quiet: bool = False, json_lines: bool = False):
    """The event bus of the output mode asked for (a context manager)."""
    from gitevo.results import progress

    if quiet and json_lines:
        raise click.UsageError("--quiet and --json exclude each other")
    return progress.output("quiet" if quiet else "json" if json_lines else "auto")


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
              help="KEY=VALUE for [llm]: provider, model, base_url, api_key_env, command or "
                   "prompts.")
@click.option("--no-eval", is_flag=True, help="Record the seed but do not evaluate it yet.")
@click.pass_context
def init(ctx, directory, template, files, fitness, check, objectives, variables, fidelity,
         llm, no_eval) -> None:
    """Set up a run: configure this repository, or write a template into DIRECTORY."""
    from gitevo.project import initialize

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
                                               variables=variables, llm=llm,
                                               run=ctx.obj["run"])
    branch = initialize.record_seed(store, ctx.obj["run"], seed)
    for warning in initialize.install(store, ctx.obj["run"]):
        click.echo(f"gitevo: warning: {warning}", err=True)
    click.echo(f"seed {seed[:10]} recorded as {branch} in {store.root}")
    click.echo(initialize.prompts_notice(store))
    notice = initialize.task_notice(store)
    if notice:
        click.echo(f"gitevo: {notice}", err=notice.startswith("warning"))
    if no_eval:
        click.echo("not evaluated yet: `gitevo seed` evaluates it (`gitevo generation` and "
                   "`gitevo run` do too, before their first generation)")
    else:
        ctx.obj["dir"] = store.root
        with _progress() as events:
            _evolution(ctx, events).seed(seed)


@main.command()
@click.argument("rev", default="HEAD")
@click.pass_context
def seed(ctx, rev) -> None:
    """Record REV as the run's seed and evaluate it (only before generation 0 is recorded)."""
    from gitevo.store.gitstore import GitError

    with _progress() as events:
        evo = _evolution(ctx, events)
        if evo.current() is not None:
            raise GitError(f"run {ctx.obj['run']!r} already has a seed and a ledger; "
                           "start another run with --run NAME")
        commit = evo.store.resolve(rev)
        if commit is None:
            raise GitError(f"{rev}: no such revision")
        evo.seed(commit)


@main.command(epilog=JSON_HELP)
@click.option("--n", "n", type=click.IntRange(min=1), help="Offspring (default: config).")
@_progress_options
@click.pass_context
def generation(ctx, n, quiet, json_lines) -> None:
    """Run the next generation, or finish an interrupted one.

    On a terminal a live display counts LLM calls, patches and evaluations (with an
    ETA); elsewhere each child gets a plain line. Each generation ends with a summary.
    """
    with _progress(quiet, json_lines) as events:
        _evolution(ctx, events).generation(n)


@main.command(epilog=JSON_HELP)
@click.option("--generations", type=click.IntRange(min=1), required=True)
@click.option("--n", "n", type=click.IntRange(min=1), help="Offspring per generation.")
@_progress_options
@click.pass_context
def run(ctx, generations, n, quiet, json_lines) -> None:
    """Evolve until the run has GENERATIONS generations.

    The target is a total, not a count of more generations, so the same command
    run again after a crash or a preempted job carries on where it stopped. Output
    as for `gitevo generation`, with a summary after each generation.
    """
    with _progress(quiet, json_lines) as events:
        evo = _evolution(ctx, events)
        current = evo.current()
        done = current.generation if current else 0
        if done >= generations:
            events.emit("notice", message=f"run {ctx.obj['run']!r} already has {done} "
                                          "generation(s)")
        for _ in range(done, generations):
            evo.generation(n)
            if evo.budget_exhausted:
                events.emit("budget_spent", message="LLM budget spent: stopping after this "
                            "generation (raise llm.max_cost or llm.max_tokens in gitevo.toml "
                            "to go on)")
                break


@main.command()
@click.pass_context
def status(ctx) -> None:
    """The current population and the generation in progress."""
    from gitevo.results import report

    store, conf = _open(ctx)
    report.status(store, conf, ctx.obj["run"])


@main.command()
@click.argument("ident", required=False)
@click.pass_context
def log(ctx, ident) -> None:
    """Ancestry of an individual (default: the champion) with objective deltas."""
    from gitevo.results import report

    store, conf = _open(ctx)
    report.ancestry(store, conf, ctx.obj["run"], ident)


@main.command()
@click.argument("ident")
@click.option("--prompt", "with_prompt", is_flag=True, help="Also print the exact prompt "
              "and response that produced it.")
@click.pass_context
def show(ctx, ident, with_prompt) -> None:
    """One individual: rationale, fitness note, diff against each parent."""
    from gitevo.results import report

    store, conf = _open(ctx)
    report.show(store, conf, ctx.obj["run"], ident, with_prompt)


def _out_path(ctx: click.Context, path: str) -> Path:
    """An output path as given, relative paths taken from -C like every other path."""
    return ctx.obj["dir"] / path


@main.command()
@click.option("--out", default="front.png", show_default=True, metavar="FILE",
              help="Image to write (.png, .svg or .pdf).")
@click.option("--x", "x", metavar="NAME", help="Objective on the x axis (default: the first).")
@click.option("--y", "y", metavar="NAME", help="Objective on the y axis (default: the second).")
@click.pass_context
def pareto(ctx, out, x, y) -> None:
    """Objective space of every evaluated individual, with the Pareto fronts.

    Each generation's front is the feasible non-dominated set, on the two plotted
    objectives, of everything evaluated up to and including that generation, so the
    fronts move outwards as the run improves; colour tells the generation. The seed is a
    red star; infeasible individuals (violating a constraint of the current gitevo.toml)
    are hollow grey circles. With one objective, it is plotted against the generation,
    with the best-so-far line.
    """
    from gitevo.results import plots

    store, conf = _open(ctx)
    click.echo(f"wrote {plots.pareto(store, conf, ctx.obj['run'], _out_path(ctx, out), x, y)}")


@main.command()
@click.option("--out", default="progress.png", show_default=True, metavar="FILE",
              help="Image to write (.png, .svg or .pdf).")
@click.pass_context
def plot(ctx, out) -> None:
    """Best feasible value per objective and hypervolume per generation, from the ledger."""
    from gitevo.results import plots

    store, conf = _open(ctx)
    click.echo(f"wrote {plots.progress(store, conf, ctx.obj['run'], _out_path(ctx, out))}")


@main.command()
@click.option("--html", "directory", metavar="DIR",
              help="Directory for index.html and its images (created if needed).")
@click.option("--serve", is_flag=True, help="Serve the page live instead, read-only; it "
              "follows a run that another process makes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to serve on (0: any free one).")
@click.pass_context
def report(ctx, directory, serve, host, port) -> None:
    """An HTML report: family tree, plots, generations, top individuals, success rates."""
    if bool(directory) == serve:
        raise click.UsageError("give --html DIR, or --serve")
    store, conf = _open(ctx)
    if serve:
        from gitevo.results import serve as serving

        serving.serve(store.root, conf, ctx.obj["run"], host, port,
                      ready=lambda line: click.echo(line))
        return
    from gitevo.results import html_report

    page = html_report.write(store, conf, ctx.obj["run"], _out_path(ctx, directory))
    click.echo(f"wrote {page}")


@main.command()
@click.argument("ref")
@click.option("--fidelity", help="Fidelity to measure at (default: the one in the note).")
@click.option("--tolerance", "tolerance", multiple=True, metavar="T|NAME=T",
              help="Largest accepted worsening: T for every objective, NAME=T for one "
                   "(repeatable; default 0.02).")
@click.pass_context
def verify(ctx, ref, fidelity, tolerance) -> None:
    """Measure an individual's fitness again and compare it with its note.

    REF is an individual id (g002-005), `best`, or a revision that is an individual's
    commit. The fitness command runs on a fresh export of the commit, as in a
    generation, and the result is added to the note's `verifications` whatever it
    shows. It is compared with the note's evaluation at the same fidelity (or the
    latest accepted verification there); a max objective may fall, and a min one
    rise, by at most the tolerance. Exit status 1 when one moved further or the
    evaluation failed.
    """
    from gitevo.results import verify as verifying

    store, conf = _open(ctx)
    _isolation_warning(conf)
    result = verifying.verify(store, conf, ctx.obj["run"], ref, fidelity, tolerance,
                              log=click.echo)
    for line in verifying.report_lines(result):
        click.echo(line)
    if result.failed:
        sys.exit(1)


@main.command()
@click.argument("text", required=False)
@click.option("--block", metavar="BLOCK", help="Only for this block (Name or path::Name).")
@click.option("--generations", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shown to the next K generations.")
@click.option("--list", "listing", is_flag=True, help="Show the run's hints and how their "
              "children fared.")
@click.option("--remove", type=click.IntRange(min=1), metavar="N", help="Retire hint N.")
@click.pass_context
def hint(ctx, text, block, generations, listing, remove) -> None:
    """Give the LLM a person's hint: TEXT appears, marked as a person's, in every mutation,
    crossover and EoT prompt of the next generations (for one block, or all).

    Hints are kept in git (refs/notes/gitevo/<run>-hints), so `gitevo sync` carries them
    to other clones; each child's commit names the hints it saw (Gitevo-Hints)."""
    from gitevo.project import steering

    store, conf = _open(ctx)
    if sum(bool(x) for x in (text, listing, remove)) != 1:
        raise click.UsageError("give TEXT, --list or --remove N (one of them)")
    if listing:
        for line in steering.list_lines(store, conf, ctx.obj["run"]):
            click.echo(line)
    elif remove:
        from gitevo.store import hints

        gone = hints.remove(store, ctx.obj["run"], remove)
        click.echo(f"hint {gone.number} removed: {gone.text}")
    else:
        given = steering.give(store, conf, ctx.obj["run"], text, block, generations)
        click.echo(f"hint {given.number} given for {given.scope}")


@main.command()
@click.argument("rev")
@click.pass_context
def adopt(ctx, rev) -> None:
    """Take REV, a commit a person wrote, into the run as an individual.

    REV must descend from an individual of the run and change only gene files. It is
    evaluated in the sandbox at the run's full fidelity and recorded as g<next>-h<k>
    (operator `human`), whose parents are the individuals it descends from; the next
    generation's selection takes it in like its own children. Refused while a
    generation runs.
    """
    from gitevo.project import adopt as adopting

    store, conf = _open(ctx)
    _isolation_warning(conf)
    with _progress() as events:
        ident, result = adopting.adopt(store, conf, ctx.obj["run"], rev, events)
    shown = " ".join(f"{k}={v:.6g}" for k, v in result.objectives.items())
    click.echo(f"adopted {rev} as {ident}: {result.status}"
               + (f" {shown}" if shown else f" ({(result.error or '').splitlines()[0]})"
                  if result.error else ""))


@main.command()
@click.argument("ident")
@click.option("--push", "remote", metavar="REMOTE",
              help="Then push best (forced) and the run's notes to REMOTE, for its CI.")
@click.pass_context
def promote(ctx, ident, remote) -> None:
    """Make IDENT the run's champion: move gitevo/<run>/best to its commit.

    The next generation moves best again, to that generation's champion. With
    --push, best is pushed with force (champions need not descend from each other)
    and the notes without: a remote with notes this clone lacks needs a sync first.
    """
    from gitevo.project.promote import promote as promoting
    from gitevo.store.gitstore import Store

    done = promoting(Store(ctx.obj["dir"]), ctx.obj["run"], ident, remote)
    was = f" (was {done.previous[:10]})" if done.previous and done.previous != done.commit else ""
    click.echo(f"best of run {ctx.obj['run']!r} is {done.ident} ({done.commit[:10]}){was}")
    if remote:
        click.echo(f"pushed {', '.join(done.pushed)} to {remote}")


@main.command()
@click.argument("remote")
@click.pass_context
def sync(ctx, remote) -> None:
    """Exchange every gitevo run with REMOTE (a remote's name, a URL or a path).

    Fetches its individuals, ledgers and notes, takes what is new, merges notes
    (verifications of both sides kept), fast-forwards ledgers, and pushes what it
    lacks without force (best only over the value just fetched). An individual id
    with different commits in the two clones is refused before anything changes.
    Then either clone can continue the run.
    """
    from gitevo.project.sync import sync as syncing
    from gitevo.store.gitstore import Store

    for line in syncing(Store(ctx.obj["dir"]), ctx.obj["run"], remote).lines():
        click.echo(line)


@main.command()
@click.pass_context
def doctor(ctx) -> None:
    """Which sandbox protections hold on this machine, tried rather than assumed.

    Reads [sandbox] and the fitness timeout from gitevo.toml when run in a gitevo
    repository (the defaults elsewhere). Exits 0 whatever is inactive; 2 when
    gitevo.toml is broken.
    """
    from gitevo import config
    from gitevo.execution import doctor as doctoring
    from gitevo.store.gitstore import GitError, Store

    settings, timeout, source = config.Sandbox(), config.Fitness.timeout, "no gitevo.toml: defaults"
    try:
        path = Store(ctx.obj["dir"]).root / config.CONFIG_NAME
    except GitError:
        path = None
    if path is not None and path.is_file():
        conf = config.load(path)
        settings, timeout, source = conf.sandbox, conf.fitness.timeout, str(path)
    rows = doctoring.check(settings, timeout)
    for line in doctoring.render(rows, doctoring.versions(), source):
        click.echo(line)


@main.command(hidden=True)
@click.argument("name", type=click.Choice(["pre-commit"]))
@click.pass_context
def hook(ctx, name) -> None:
    """Entry point of the git hooks that init installs."""
    from gitevo.project import hooks

    store, conf = _open(ctx)
    problem = hooks.pre_commit(store, conf)
    if problem:
        click.echo(f"gitevo pre-commit: {problem}", err=True)
        sys.exit(1)
