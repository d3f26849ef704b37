"""`python train.py`: the order in which the harness runs, and its command line.

The order is the point. Every harness module is imported, and the guard snapshot
taken, before model.py is imported; data is loaded before it too. The candidate's code
then runs (build, get_optimizer, training), the snapshot is restored, and only then
are parameters counted and accuracy measured, by harness code.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F

# imported for the snapshot as much as for use: every module must be loaded before model.py
from harness import (  # noqa: F401
    audit,
    augment,
    batches,
    behaviour,
    cache,
    curve,
    data,
    device,
    engine,
    export,
    fidelity,
    formats,
    gene,
    guard,
    measure,
    metrics,
    public,
    reasons,
    schedule,
    split,
    synthetic,
)
from harness.batches import Feeder, channel_stats
from harness.reasons import ModelError, describe

HARNESS_VERSION = "1"
CHECK_CLASSES, CHECK_CHANNELS, CHECK_BATCH = 10, 3, 2
# steps on the dummy batch: three, so that an optimizer's state (momentum, Adam's moments)
# has shaped the weights that the behaviour's fingerprint sees
CHECK_STEPS = 3
_EXPECTED = (formats.DataError, fidelity.FidelityError, device.DeviceError, ModelError,
             export.ScoreError)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train.py", description="Train model.py and write the "
                                "fitness metrics (validation accuracy, parameter count).")
    p.add_argument("--check", action="store_true",
                   help="only build the model and run one step on a dummy batch (seconds)")
    p.add_argument("--prepare", action="store_true",
                   help="fetch and decode the data into the cache, then stop: gitevo runs this "
                   "once, trusted and with the network, so that evaluations need neither")
    p.add_argument("--fidelity", default="demo", choices=sorted(fidelity.FIDELITIES))
    p.add_argument("--budget", default="full", choices=fidelity.BUDGETS,
                   help="screen: the fidelity at an eighth of its training (a cascade's rung)")
    p.add_argument("--data", default="cifar10",
                   help="'cifar10' (download once) or a directory with python batches or "
                        "train/ and test/ image folders")
    p.add_argument("--metrics", default="metrics.json", help="where to write the JSON")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="train only, and export the trained model here for score.py (gitevo's "
                        "route: the scorer, apart, decides the fitness)")
    p.add_argument("--progress", type=Path, default=None,
                   help="append the learning curve here, a JSON line per epoch (gitevo's "
                        "{progress}: it may stop a run clearly behind its parent's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="decoded-data cache (default: $GITEVO_CACHE_DIR, ~/.cache/gitevo)")
    p.add_argument("--model", type=Path, default=None, help="gene file (default: model.py)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels where the backend has them (slower on GPU)")
    for flag, kind in (("epochs", int), ("batch-size", int), ("lr", float),
                       ("image-size", int), ("train-per-class", int), ("val-per-class", int)):
        p.add_argument(f"--{flag}", type=kind, default=None, help="override the fidelity's")
    return p.parse_args(argv)


def main(argv: list[str], root: Path) -> NoReturn:
    args = parse(argv)
    metrics.finish(run(args, root))


def run(args: argparse.Namespace, root: Path) -> int:
    snapshot = guard.Snapshot(guard.harness_modules())  # before model.py exists in-process
    write, out = metrics.write, Path(args.metrics).resolve()
    metrics.discard(out)
    step = prepare if args.prepare else check if args.check else evaluate
    hook = None if args.prepare else _audit(args, root)
    try:
        values = step(args, root, snapshot)
    except _EXPECTED as exc:
        return _failed(hook, " ".join(str(exc).split()))
    except Exception as exc:  # the candidate's code failed somewhere in training
        traceback.print_exc()
        return _failed(hook, describe(exc, "training failed"))
    if hook is not None and hook.refusals:
        return _failed(hook, "")  # it caught the refusal and went on: still a cheat
    tampered = sorted(set(values.pop("tampered", "").split(",") + snapshot.restore()) - {""})
    if tampered:
        # the numbers above are honest (everything was put back before measuring), but code
        # that reaches into the measurement is a cheat, and evolution must not keep it
        shown = ", ".join(tampered[:6]) + (f" and {len(tampered) - 6} more"
                                           if len(tampered) > 6 else "")
        print(f"model.py replaced {shown}; the harness does not score code that tampers "
              "with it", file=sys.stderr, flush=True)
        return 1
    running = guard.leftovers()
    if running:
        print(f"model.py left {', '.join(running)} running; the harness does not score code "
              "that could still act after it exits", file=sys.stderr, flush=True)
        return 1
    if os.path.lexists(out):  # removed before model.py ran: only the candidate wrote it
        print(f"model.py wrote {out.name} itself; the harness does not score code that "
              "forges its metrics", file=sys.stderr, flush=True)
        return 1
    write(out, values)
    return 0


def _audit(args: argparse.Namespace, root: Path) -> audit.Audit:
    """The hook, before model.py is imported. The trainer's route (and --check, which
    gitevo runs as untrusted too) may read only the public training part; held-out data
    is refused to everyone in the process. Direct runs measure in-process, so they read
    the held-out part themselves, before the candidate's code exists."""
    readable = [p for p in [public.find(args.data, args.cache_dir)] if p is not None]
    hidden: list[Path] = []
    if args.artifacts is not None or args.check:
        dirs = [args.cache_dir] if args.cache_dir else cache.candidate_dirs(None)
        hidden = [d / data.HELDOUT for d in dirs]
        if Path(args.data).exists():
            hidden.append(Path(args.data))  # the raw set holds the held-out labels
    return audit.install(root, readable, hidden)


def _failed(hook: audit.Audit | None, reason: str) -> int:
    """A refusal is the reason whatever the candidate did next: it names the attempt."""
    if hook is not None and hook.refusals:
        reason = hook.refusals[0]
    print(reason, file=sys.stderr, flush=True)
    return 1


def _recipe(args: argparse.Namespace) -> fidelity.Fidelity:
    return fidelity.resolve(args.fidelity, args.budget, epochs=args.epochs,
                            batch_size=args.batch_size,
                            lr=args.lr, image_size=args.image_size,
                            train_per_class=args.train_per_class,
                            val_per_class=args.val_per_class)


def prepare(args: argparse.Namespace, root: Path, snapshot: guard.Snapshot) -> dict:
    """Download (for cifar10) and decode the data into the cache; model.py is not read."""
    recipe = _recipe(args)
    if recipe.synthetic:
        return {"prepare": "ok", "data": "synthetic", "fidelity": recipe.name}
    loaded = data.load(args.data, args.cache_dir)
    if not loaded.from_cache or public.find(args.data, args.cache_dir) is None:
        # the trainer's share, validation carved out: beside <cache>/heldout, not in it
        public.write(data.cache_root(args.cache_dir), args.data, loaded.splits, loaded.origin)
    return {"prepare": "ok", "data": loaded.origin, "from_cache": loaded.from_cache,
            "fidelity": recipe.name, "harness": HARNESS_VERSION}


def check(args: argparse.Namespace, root: Path, snapshot: guard.Snapshot) -> dict:
    """Build, one training step and one inference on a dummy batch; count parameters."""
    recipe = _recipe(args)
    runtime = device.select("cpu" if args.device == "auto" else args.device)
    size = recipe.image_size or (synthetic.SIZE if recipe.synthetic else 32)
    torch.manual_seed(args.seed)
    module = gene.load(args.model or root / "model.py")
    model = gene.build(module, CHECK_CLASSES, CHECK_CHANNELS).to(runtime.device)
    opt = gene.optimizer(module, model, recipe.lr, recipe.weight_decay)
    tampered = snapshot.restore()
    measure.check_optimizer(opt, model)
    dummy = torch.randn(CHECK_BATCH, CHECK_CHANNELS, size, size, device=runtime.device)
    targets = torch.arange(CHECK_BATCH, device=runtime.device) % CHECK_CLASSES
    try:
        model.train()
        for _ in range(CHECK_STEPS):
            loss = F.cross_entropy(model(dummy), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    except Exception as exc:
        raise ModelError(describe(exc, "training step on a dummy batch")) from exc
    tampered += snapshot.restore()
    try:
        measure.predict(model, [dummy], runtime, CHECK_CLASSES)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(describe(exc, "forward pass on a dummy batch")) from exc
    tampered += snapshot.restore()
    _exportable(model, size)
    params = measure.count_parameters(model)
    try:
        behaved = behaviour.fingerprint(model, params, tuple(dummy.shape), runtime.device)
    except Exception as exc:
        raise ModelError(describe(exc, "forward pass on the probe batch")) from exc
    tampered += snapshot.restore()
    return {"params": params, "check": "ok", "fingerprint": behaved, "device": runtime.label,
            "fidelity": recipe.name, "image_size": size, "harness": HARNESS_VERSION,
            "tampered": ",".join(tampered)}


def _exportable(model: torch.nn.Module, size: int) -> None:
    """The scorer's checks, on the freshly built model: a model it would refuse is
    invalid now, with the reason, not after a whole training run."""
    with tempfile.TemporaryDirectory(prefix="export-check-") as folder:
        export.save(model, CHECK_CHANNELS, size, CHECK_CLASSES, Path(folder))
        try:
            export.load(Path(folder), CHECK_CHANNELS, size, CHECK_CLASSES)
        except export.ScoreError as exc:
            raise ModelError(str(exc)) from exc


def evaluate(args: argparse.Namespace, root: Path, snapshot: guard.Snapshot) -> dict:
    """Train at the fidelity. With --artifacts (gitevo's route), export the trained model
    there for score.py and report only how training went; without, measure validation
    and test accuracy here too (for benches and direct runs: not protected)."""
    recipe = _recipe(args)
    # smoke's synthetic data is generated in-process: there is nothing to hide there
    if args.artifacts is None or recipe.synthetic:
        prepared = data.prepare(recipe, args.data, args.cache_dir)
        images, labels, names = prepared.train_x, prepared.train_y, prepared.classes
    else:
        prepared = None
        images, labels, names, _ = public.load(recipe, args.data, args.cache_dir)
    trained = _train(args, root, snapshot, recipe, images, labels, len(names))
    if args.artifacts is None:
        return _measured(args, recipe, trained, prepared)
    size = recipe.image_size or images.shape[1]
    export.save(trained.model, images.shape[-1], size, len(names), args.artifacts)
    trained.tampered += snapshot.restore()
    return {**_report(args, recipe, trained, len(labels), size),
            "params_counted_in_training": trained.params}


@dataclass
class _Trained:
    model: torch.nn.Module
    feeder: Feeder
    runtime: device.Runtime
    fit: engine.FitReport
    params: int
    tampered: list[str]
    curve_seconds: float = 0.0  # of fit.seconds, spent measuring the learning curve


def _train(args: argparse.Namespace, root: Path, snapshot: guard.Snapshot,
           recipe: fidelity.Fidelity, images, labels, classes: int) -> _Trained:
    runtime = device.select(args.device, args.deterministic)
    feeder = Feeder(runtime, recipe.image_size, *channel_stats(images))
    x, y = feeder.upload(images), feeder.upload(labels)
    gen = device.generator(runtime, args.seed)
    device.seed_everything(args.seed)

    module = gene.load(args.model or root / "model.py")
    model = gene.build(module, classes, images.shape[-1]).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = gene.optimizer(module, model, recipe.lr, recipe.weight_decay)
    tampered = snapshot.restore()
    measure.check_optimizer(opt, model)
    params = measure.count_parameters(model)
    points = None if args.progress is None else curve.Curve(
        args.progress, feeder, images, labels, recipe, runtime, classes)
    report = engine.fit(model, opt, feeder, x, y, recipe, runtime, gen, after_epoch=points)
    tampered += snapshot.restore()
    # lazily created parameters exist only after a forward pass: count again, keep the most
    params = max(params, measure.count_parameters(model))
    return _Trained(model, feeder, runtime, report, params, tampered,
                    points.seconds if points else 0.0)


def _report(args: argparse.Namespace, recipe: fidelity.Fidelity, trained: _Trained,
            images: int, size: int) -> dict:
    """How training went: the trainer's own account, which the scorer does not use."""
    fit = trained.fit
    print(f"trained {fit.epochs} epochs in {fit.seconds:.1f}s on {trained.runtime.label}; "
          "exported for the scorer", flush=True)
    return {"train_seconds": round(fit.seconds, 3), "epochs": fit.epochs,
            "fidelity": recipe.name, "device": trained.runtime.label, "seed": args.seed,
            "train_loss": fit.train_loss, "diverged": fit.diverged, "optimizer_steps": fit.steps,
            "images_per_second": round(fit.images / max(fit.seconds, 1e-9), 1),
            "train_images": images, "image_size": size, "batch_size": recipe.batch_size,
            "curve_seconds": round(trained.curve_seconds, 3), "harness": HARNESS_VERSION,
            "tampered": ",".join(sorted(set(trained.tampered)))[:1000]}


def _measured(args: argparse.Namespace, recipe: fidelity.Fidelity, trained: _Trained,
              prepared: data.Prepared) -> dict:
    model, feeder, runtime = trained.model, trained.feeder, trained.runtime
    classes = len(prepared.classes)
    val = _score(model, feeder, prepared.val_x, prepared.val_y, recipe, runtime, classes)
    test = _score(model, feeder, prepared.test_x, prepared.test_y, recipe, runtime, classes)
    size = recipe.image_size or prepared.train_x.shape[1]
    summary = _report(args, recipe, trained, len(prepared.train_y), size)
    summary.update(accuracy=val, test_accuracy=test, params=trained.params,
                   val_images=len(prepared.val_y), test_images=len(prepared.test_y),
                   data=prepared.origin)
    print(f"accuracy {val:.4f} (validation)  test {test:.4f}  params {trained.params}",
          flush=True)
    return summary


def _score(model: torch.nn.Module, feeder: Feeder, images, labels, recipe: fidelity.Fidelity,
           runtime: device.Runtime, classes: int) -> float:
    x = feeder.upload(images)  # the labels stay here, in numpy, away from the model
    predicted = measure.predict(model, feeder.inference(x, recipe.eval_batch_size), runtime,
                                classes)
    return measure.accuracy(predicted, labels)
