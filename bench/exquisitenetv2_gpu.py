"""Paper-fidelity training speed on a GPU: the harness against decoding JPEGs every epoch.

Three pipelines train the template's seed model at the paper recipe's input (32x32
images bilinearly upsampled to 224x224, batch 64, flip, shift and colour jitter), all
with bfloat16 autocast and channels_last:

* harness: the uint8 images live on the GPU; a batch is an index into them, augmented,
  upsampled and normalised there (`harness.engine.fit`, as train.py runs it);
* baseline: what the original code did: torchvision ImageFolder over the JPEG files,
  every image decoded, resized and augmented with PIL in DataLoader worker processes,
  every epoch, then copied to the GPU;
* compute bound: the same training step on one fixed, ready-made batch (no data work),
  the ceiling for any input pipeline.

It prints images/s and the epoch time for the 40,000-image training part, the time to
score the 20,000 validation and test images, and what a full paper-fidelity training
costs: the plateau schedule needs at least 65 epochs (13 cuts of 0.7 from 0.1 to below
0.001, each after 5 flat epochs) and the harness stops at 400, so both bounds are
printed; `--full` runs `train.py --fidelity paper` and reports its real wall time.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/exquisitenetv2_gpu.py --data /tmp/cifar10-jpeg
    python bench/exquisitenetv2_gpu.py --data /tmp/cifar10-jpeg --full --full-timeout 3000

Without a GPU it says so and exits 0. `--allow-cpu` runs the same code on the CPU (use
small --image-size and --steps) to check that it works, not to measure anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"
sys.path.insert(0, str(TEMPLATE))
sys.dont_write_bytecode = True

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from harness import data, device, engine, fidelity, formats, measure  # noqa: E402
from harness.batches import Feeder, channel_stats  # noqa: E402

TRAIN_IMAGES = 40_000  # the paper recipe's training part: 80% of CIFAR-10's training set
SCORED_IMAGES = 20_000  # validation (10,000) and test (10,000)
MIN_EPOCHS, MAX_EPOCHS = 65, fidelity.FIDELITIES["paper"].epochs


def load_genes():
    spec = importlib.util.spec_from_file_location("seed_model", TEMPLATE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_model(genes, runtime: device.Runtime, recipe: fidelity.Fidelity):
    torch.manual_seed(0)
    model = genes.ExquisiteNetV2(10, 3).to(runtime.device, memory_format=torch.channels_last)
    return model, genes.get_optimizer(model, recipe.lr, recipe.weight_decay)


def sync(runtime: device.Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()


def harness_rate(genes, runtime, recipe, prepared, steps: int, warmup: int) -> tuple[float,
                                                                                     float]:
    """(training images/s, seconds to score SCORED_IMAGES) through the harness."""
    model, opt = fresh_model(genes, runtime, recipe)
    feeder = Feeder(runtime, recipe.image_size, *channel_stats(prepared.train_x))
    x, y = feeder.upload(prepared.train_x), feeder.upload(prepared.train_y)
    gen = device.generator(runtime, 0)
    quiet = lambda line: None  # noqa: E731
    size = recipe.batch_size
    engine.fit(model, opt, feeder, x[:warmup * size], y[:warmup * size], recipe, runtime, gen,
               log=quiet)
    report = engine.fit(model, opt, feeder, x[:steps * size], y[:steps * size], recipe,
                        runtime, gen, log=quiet)
    val = feeder.upload(prepared.val_x)
    sync(runtime)
    start = time.perf_counter()
    measure.predict(model, feeder.inference(val, recipe.eval_batch_size), runtime, 10)
    sync(runtime)
    per_image = (time.perf_counter() - start) / val.shape[0]
    return report.images / report.seconds, per_image * SCORED_IMAGES


def baseline_rate(genes, runtime, recipe, folder: Path, steps: int, warmup: int,
                  workers: int, mean: list[float], std: list[float]) -> float:
    """Training images/s when every image is decoded and augmented in DataLoader workers."""
    from torchvision import datasets
    from torchvision import transforms as T

    size = recipe.image_size or 32
    pipeline = T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
        T.ColorJitter(recipe.jitter, recipe.jitter, recipe.jitter),
        T.RandomAffine(0, translate=(recipe.translate, recipe.translate)),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(folder / "train"), transform=pipeline),
        batch_size=recipe.batch_size, shuffle=True, num_workers=workers, drop_last=True,
        pin_memory=runtime.device.type == "cuda")
    def on_device():
        for x, y in loader:
            x = x.to(runtime.device, non_blocking=True)
            yield x.contiguous(memory_format=torch.channels_last), y.to(runtime.device,
                                                                         non_blocking=True)

    batches = on_device()
    rate = timed_rate(genes, runtime, recipe, lambda: next(batches), steps, warmup)
    batches.close()  # stops the worker processes now, not at interpreter exit
    return rate


def compute_bound_rate(genes, runtime, recipe, steps: int, warmup: int) -> float:
    size = recipe.image_size or 32
    x = torch.randn(recipe.batch_size, 3, size, size, device=runtime.device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (recipe.batch_size,), device=runtime.device)
    return timed_rate(genes, runtime, recipe, lambda: (x, y), steps, warmup)


def timed_rate(genes, runtime, recipe, next_batch, steps: int, warmup: int) -> float:
    """Training images/s of a fresh seed model over `steps` batches after `warmup`."""
    model, opt = fresh_model(genes, runtime, recipe)
    scaler = runtime.grad_scaler()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(runtime)
            start = time.perf_counter()
        x, y = next_batch()
        with runtime.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sync(runtime)
    return steps * recipe.batch_size / (time.perf_counter() - start)


def full_run(data_dir: str, timeout: float) -> None:
    """The real thing: train.py at paper fidelity, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", "--fidelity", "paper", "--data",
                               data_dir, "--metrics", str(out)], cwd=TEMPLATE, timeout=timeout,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"full paper run failed after {wall:.0f}s (exit {proc.returncode})")
            return
        m = json.loads(out.read_text())
    print(f"full paper run: {wall / 60:.1f} min wall, {m['epochs']} epochs, "
          f"accuracy {m['accuracy']:.4f} (validation), test {m['test_accuracy']:.4f}, "
          f"{m['images_per_second']:.0f} img/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/cifar10-jpeg", help="the JPEG image-folder copy")
    p.add_argument("--steps", type=int, default=200, help="timed training steps")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=64, help="64 as the original; GE used 192")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="DataLoader workers of the baseline")
    p.add_argument("--full", action="store_true", help="also run a full paper training")
    p.add_argument("--full-timeout", type=float, default=3600.0)
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU to test the code")
    args = p.parse_args()

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("exquisitenetv2_gpu: needs a CUDA GPU (none here); nothing measured")
        return
    runtime = device.select("auto")
    recipe = dataclasses.replace(fidelity.resolve("paper"), batch_size=args.batch_size,
                                 image_size=args.image_size, warmup_epochs=0.0, epochs=1)
    layout = formats.detect(Path(args.data))
    if layout.kind != "folder":
        sys.exit("the baseline needs the image-folder layout (train/<class>/*.jpg)")
    prepared = data.prepare(recipe, args.data)
    mean, std = channel_stats(prepared.train_x)
    genes = load_genes()

    print(f"device {runtime.label}, amp {runtime.amp_dtype}, batch {recipe.batch_size}, "
          f"input {args.image_size}x{args.image_size}, {args.steps} timed steps")
    rates = {}
    rates["harness"], score_s = harness_rate(genes, runtime, recipe, prepared, args.steps,
                                             args.warmup)
    rates["baseline"] = baseline_rate(genes, runtime, recipe, layout.root, args.steps,
                                      args.warmup, args.workers, mean, std)
    rates["compute bound"] = compute_bound_rate(genes, runtime, recipe, args.steps,
                                                args.warmup)
    for name, rate in rates.items():
        print(f"  {name:14s} {rate:9.0f} img/s   epoch ({TRAIN_IMAGES} images) "
              f"{TRAIN_IMAGES / rate:7.1f}s")
    print(f"  harness / baseline {rates['harness'] / rates['baseline']:.2f}x;  harness / "
          f"compute bound {rates['harness'] / rates['compute bound']:.2f}")
    print(f"  scoring validation + test ({SCORED_IMAGES} images): {score_s:.1f}s")
    epoch_s = TRAIN_IMAGES / rates["harness"]
    print(f"  full paper training (harness): {MIN_EPOCHS} epochs (the schedule's minimum) "
          f"{(MIN_EPOCHS * epoch_s + score_s) / 60:.1f} min ... {MAX_EPOCHS} epochs (cap) "
          f"{(MAX_EPOCHS * epoch_s + score_s) / 60:.1f} min; the baseline loader: "
          f"{MIN_EPOCHS * TRAIN_IMAGES / rates['baseline'] / 60:.1f} ... "
          f"{MAX_EPOCHS * TRAIN_IMAGES / rates['baseline'] / 60:.1f} min")
    if args.full:
        full_run(args.data, args.full_timeout)


if __name__ == "__main__":
    main()
