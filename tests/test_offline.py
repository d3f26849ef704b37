"""Offline operators: random AST edits and block crossover on realistic gene files."""

from __future__ import annotations

import ast
import random

import pytest

from gitevo.variation.genome import changed_blocks, get_block
from gitevo.variation.offline import OperatorError, crossover, mutable_blocks, mutate
from gitevo.variation.patch import apply_diff, make_diff

MODEL = '''"""A small CIFAR-style network: the gene file."""

import torch
import torch.nn.functional as F
from torch import nn


def get_optimizer(model, lr=0.1, momentum=0.9, weight_decay=5e-4):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                           weight_decay=weight_decay, nesterov=True)


class SE(nn.Module):
    """Squeeze-and-excitation with a bottleneck ratio."""

    def __init__(self, channels, ratio=0.25):
        super().__init__()
        hidden = max(8, int(channels * ratio))
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w[:, :, None, None]


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)  # same padding
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.se = SE(cout, 0.25)

    def forward(self, x):
        return self.se(self.act(self.bn(self.conv(x))))


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            ConvBlock(3, 32),
            nn.MaxPool2d(2),
            ConvBlock(32, 64),
            nn.Conv2d(64, 64, kernel_size=5, padding=2, groups=64),
            nn.AdaptiveAvgPool2d(1),
        )
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.head(self.dropout(x))
'''

TOY = '''import math


def predict(x):
    return 1.5 * math.sin(2.0 * x) + 0.3 * x


def constant():
    return "nothing numeric here"
'''


def _calls(source: str, block: str, callee: str) -> list[ast.Call]:
    tree = ast.parse(get_block(source, block).text)
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == callee]


def _floats(source: str, block: str) -> list[float]:
    tree = ast.parse(get_block(source, block).text)
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and type(n.value) is float]


def test_mutable_blocks():
    assert mutable_blocks(MODEL) == ["get_optimizer", "SE", "ConvBlock", "Net"]
    assert mutable_blocks(TOY) == ["predict"]


def test_same_seed_same_mutation_different_seeds_differ():
    first = mutate(MODEL, "Net", random.Random(7))
    assert mutate(MODEL, "Net", random.Random(7)) == first
    outputs = {mutate(MODEL, "Net", random.Random(seed))[0] for seed in range(6)}
    assert len(outputs) >= 4


@pytest.mark.parametrize("source", [MODEL, TOY])
def test_mutations_parse_change_only_their_block_and_round_trip(source):
    names = mutable_blocks(source)
    for seed in range(200):
        rng = random.Random(seed)
        name = names[seed % len(names)]
        new, summary = mutate(source, name, rng)
        ast.parse(new)
        assert new != source and summary
        assert changed_blocks(source, new) == {name}
        diff = make_diff("model.py", source, new)
        assert apply_diff(diff, {"model.py": source}, {"model.py"}) == {"model.py": new}


def test_kernel_sizes_stay_odd_and_padding_keeps_the_output_size():
    seen = set()
    for seed in range(120):
        new, _ = mutate(MODEL, "ConvBlock", random.Random(seed), max_edits=3)
        [conv] = _calls(new, "ConvBlock", "Conv2d")
        kernel = conv.args[2].value
        padding = {k.arg: k.value.value for k in conv.keywords}["padding"]
        assert kernel >= 1 and kernel % 2 == 1
        assert padding == (kernel - 1) // 2
        seen.add(kernel)
    assert len(seen) >= 3


def test_keyword_kernel_size_stays_odd():
    for seed in range(120):
        new, _ = mutate(MODEL, "Net", random.Random(seed))
        for conv in _calls(new, "Net", "Conv2d"):
            sizes = {k.arg: k.value.value for k in conv.keywords}
            assert sizes["kernel_size"] % 2 == 1
            assert sizes["padding"] == (sizes["kernel_size"] - 1) // 2


def test_unit_interval_floats_stay_in_unit_interval():
    assert all(0 < v < 1 for v in _floats(MODEL, "get_optimizer") + _floats(MODEL, "Net"))
    for seed in range(150):
        for block in ("get_optimizer", "Net"):
            new, _ = mutate(MODEL, block, random.Random(seed))
            assert all(0 < v < 1 for v in _floats(new, block)), new


def _ints(source: str, block: str) -> list[int]:
    tree = ast.parse(get_block(source, block).text)
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is int]


def test_widths_change_together_and_stay_multiples_of_eight():
    # 64 appears five times in Net, groups=64 included: a consistent width change moves all
    assert _ints(MODEL, "Net").count(64) == 5
    found = 0
    for seed in range(100):
        new, summary = mutate(MODEL, "Net", random.Random(seed), max_edits=1)
        if not summary.startswith("width 64->"):
            continue
        width = int(summary.removeprefix("width 64->").split()[0])
        assert summary.endswith("(x5)")
        assert width % 8 == 0 and width > 0
        ints = _ints(new, "Net")
        assert 64 not in ints and ints.count(width) == 5 + _ints(MODEL, "Net").count(width)
        found += 1
    assert found


def _activations(source: str, block: str) -> list[str]:
    tree = ast.parse(get_block(source, block).text)
    names = {"ReLU", "ReLU6", "SiLU", "Hardswish", "Mish", "ELU", "GELU", "LeakyReLU"}
    return [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in names]


def test_activation_swaps_keep_the_call_valid():
    swaps = set()
    for seed in range(150):
        new, _ = mutate(MODEL, "ConvBlock", random.Random(seed))
        [act] = _activations(new, "ConvBlock")
        # nn.GELU takes no `inplace`, so ReLU(inplace=True) never becomes it
        assert act != "GELU"
        swaps.add(act)
    assert len(swaps) >= 4


def test_toy_function_changes_structure():
    summaries = {mutate(TOY, "predict", random.Random(seed))[1] for seed in range(60)}
    joined = " ".join(summaries)
    assert "sin->" in joined  # math function swaps
    assert "+ -> -" in joined or "* -> /" in joined  # operator swaps
    assert "1.5->" in joined  # constants


def test_swaps_never_divide_by_a_variable():
    source = TOY.replace("0.3 * x", "x * 0.3")
    for seed in range(100):
        new, _ = mutate(source, "predict", random.Random(seed))
        for node in ast.walk(ast.parse(new)):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                assert isinstance(node.right, ast.Constant), new


def test_ints_inside_indexing_dims_and_arithmetic_are_left_alone():
    for seed in range(100):
        new, _ = mutate(MODEL, "SE", random.Random(seed))
        text = get_block(new, "SE").text
        assert "dim=(2, 3)" in text and "w[:, :, None, None]" in text
        assert "max(8, " in text or "max(" not in text


def test_nothing_to_mutate():
    with pytest.raises(OperatorError, match="block constant has nothing to mutate"):
        mutate(TOY, "constant", random.Random(0))


def test_missing_block_is_an_operator_error():
    with pytest.raises(OperatorError, match="no top-level block Nope"):
        mutate(MODEL, "Nope", random.Random(0))


def test_crossover_takes_the_block_from_the_other_parent():
    other, _ = mutate(MODEL, "SE", random.Random(3))
    other, _ = mutate(other, "Net", random.Random(4))
    child, summary = crossover(MODEL, other, "SE")
    assert summary == "take SE from other parent"
    assert get_block(child, "SE").text == get_block(other, "SE").text
    assert changed_blocks(MODEL, child) == {"SE"}
    assert get_block(child, "Net").text == get_block(MODEL, "Net").text


def test_crossover_refuses_identical_or_missing_blocks():
    with pytest.raises(OperatorError, match="identical"):
        crossover(MODEL, MODEL, "SE")
    with pytest.raises(OperatorError):
        crossover(MODEL, TOY, "SE")
