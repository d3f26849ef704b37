"""Training-step throughput of the ExquisiteNetV2 harness against a bare PyTorch loop.

Both train the template's seed model with its own get_optimizer, on the same images
(the JPEG CIFAR-10 copy, decoded once through the harness's cache), at the same batch
size, in the same process, in interleaved rounds so drifting machine load hits both.

* bare: batches are views into one pre-shuffled, pre-normalised float tensor; the
  loop is zero_grad, forward, cross-entropy, backward, step. Nothing else.
* harness: `harness.engine.fit` at the demo recipe, as train.py runs it: uint8
  indexing, float conversion, flip/shift/colour-jitter augmentation, normalisation,
  channels_last, the learning-rate schedule and on-device loss accumulation.

The ratio harness / bare is the cost of everything the harness adds (target >= 0.95 on
CPU). A second harness figure without augmentation separates batching from augmenting.
On a shared machine other processes slow random rounds down; the headline ratio is the
median of the per-round ratios (each round runs both loops back to back), and every
round is printed as well.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/exquisitenetv2_throughput.py --data /tmp/cifar10-jpeg
    python bench/exquisitenetv2_throughput.py --data /tmp/cifar10-jpeg --steps 40 --rounds 12
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"
sys.path.insert(0, str(TEMPLATE))
sys.dont_write_bytecode = True  # keep the template directory free of __pycache__

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from harness import data, device, engine, fidelity  # noqa: E402
from harness.batches import Feeder, channel_stats  # noqa: E402


def load_seed_model():
    spec = importlib.util.spec_from_file_location("seed_model", TEMPLATE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh(genes, runtime: device.Runtime, lr: float, wd: float):
    torch.manual_seed(0)
    model = genes.ExquisiteNetV2(10, 3).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, genes.get_optimizer(model, lr, wd)


def bare_rate(model, opt, inputs: torch.Tensor, labels: torch.Tensor, batch: int,
              runtime: device.Runtime) -> float:
    """Images per second of the minimal loop over ready-made batches."""
    steps = inputs.shape[0] // batch
    batches = [(inputs[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
               for i in range(steps)]
    model.train()
    _sync(runtime)
    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    _sync(runtime)
    return steps * batch / (time.perf_counter() - start)


def harness_rate(model, opt, feeder: Feeder, x: torch.Tensor, y: torch.Tensor,
                 recipe: fidelity.Fidelity, runtime: device.Runtime) -> float:
    gen = device.generator(runtime, 0)
    report = engine.fit(model, opt, feeder, x, y, recipe, runtime, gen, log=lambda line: None)
    return report.images / report.seconds


def _sync(runtime: device.Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/cifar10-jpeg", help="CIFAR-10 copy (any layout)")
    p.add_argument("--steps", type=int, default=25, help="training steps per measurement")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu", help="cpu (the target) or cuda")
    args = p.parse_args()

    runtime = device.select(args.device)
    images = args.steps * args.batch_size
    recipe = dataclasses.replace(fidelity.resolve("demo"), epochs=1, batch_size=args.batch_size,
                                 warmup_epochs=0.0, train_per_class=-(-images // 10))
    plain = dataclasses.replace(recipe, flip=False, translate=0.0, jitter=0.0)
    prepared = data.prepare(recipe, args.data)
    feeder = Feeder(runtime, None, *channel_stats(prepared.train_x))
    x, y = feeder.upload(prepared.train_x), feeder.upload(prepared.train_y)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    ready = feeder.to_input(x[order.to(x.device)])  # the bare loop's data: all prepared
    ready_y = y[order.to(y.device)]

    genes = load_seed_model()
    model, opt = fresh(genes, runtime, recipe.lr, recipe.weight_decay)
    few = 5 * args.batch_size  # warm-up: kernels chosen, allocator primed, for both loops
    harness_rate(model, opt, feeder, x[:few], y[:few], recipe, runtime)
    bare_rate(model, opt, ready[:few], ready_y[:few], args.batch_size, runtime)

    bare, full, no_aug = [], [], []
    for _ in range(args.rounds):
        bare.append(bare_rate(model, opt, ready, ready_y, args.batch_size, runtime))
        full.append(harness_rate(model, opt, feeder, x, y, recipe, runtime))
        no_aug.append(harness_rate(model, opt, feeder, x, y, plain, runtime))

    print(f"device {runtime.label}, {torch.get_num_threads()} threads, batch "
          f"{args.batch_size}, {images} images x {args.rounds} interleaved rounds")
    for name, rates in (("bare loop", bare), ("harness (demo recipe)", full),
                        ("harness, no augmentation", no_aug)):
        print(f"  {name:26s} best {max(rates):7.1f}  median {statistics.median(rates):7.1f}"
              " img/s   rounds: " + " ".join(f"{r:.0f}" for r in rates))
    # each round measures both loops back to back, so a round's ratio sees (nearly) the
    # same machine load twice; the median over rounds is the headline, robust to the
    # rounds where other processes stole the CPU from one loop but not the other
    paired = [f / b for f, b in zip(full, bare, strict=True)]
    ratio = statistics.median(paired)
    print(f"  ratio harness/bare: median of rounds {ratio:.3f}  best/best "
          f"{max(full) / max(bare):.3f}  per round: " + " ".join(f"{r:.3f}" for r in paired))
    plain_ratio = statistics.median([p / b for p, b in zip(no_aug, bare, strict=True)])
    print(f"  ratio without augmentation: median of rounds {plain_ratio:.3f}")
    print(f"  target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}")

if __name__ == "__main__":
    main()
