"""Gene blocks: boundaries, byte-exact replacement, and what changed between two versions."""

from __future__ import annotations

import pytest

from gitevo.variation.genome import (
    Block,
    GenomeError,
    blocks,
    changed_blocks,
    differing_blocks,
    get_block,
    replace_block,
    same_import,
    split_lines,
)

SOURCE = '''"""A gene file."""

import torch
from torch import nn

WIDTH = 32  # module-level constant


# a comment between blocks belongs to the module
@torch.no_grad()
@staticmethod
def init_weights(m):
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight)


class Net(nn.Module):
    """A tiny net."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, WIDTH, 3, padding=1)

    # comment inside the class body
    def forward(self, x):
        return self.conv(x)


async def fetch():
    return 1
'''


def test_blocks_are_top_level_defs_in_order_with_decorators():
    found = blocks(SOURCE, "model.py")
    assert [(b.name, b.kind) for b in found] == [
        ("init_weights", "function"), ("Net", "class"), ("fetch", "function")]
    init, net, fetch = found
    lines = split_lines(SOURCE)
    assert lines[init.start] == "@torch.no_grad()\n"
    assert lines[init.start - 1] == "# a comment between blocks belongs to the module\n"
    assert init.text.endswith("kaiming_normal_(m.weight)\n")
    assert lines[net.start] == "class Net(nn.Module):\n"
    assert net.text.endswith("        return self.conv(x)\n")
    assert "# comment inside the class body" in net.text
    assert fetch.end == len(lines)
    assert all(b.text == "".join(lines[b.start:b.end]) for b in found)
    assert net.key == "model.py::Net"


def test_block_is_a_frozen_record():
    block = get_block(SOURCE, "Net", "model.py")
    assert isinstance(block, Block)
    with pytest.raises(AttributeError):
        block.name = "Other"  # type: ignore[misc]


def test_syntax_error_names_path_and_line():
    with pytest.raises(GenomeError, match=r"model\.py:2: syntax error"):
        blocks("x = 1\ndef broken(:\n    pass\n", "model.py")


def test_missing_block_is_an_error():
    with pytest.raises(GenomeError, match="no top-level block Missing in model.py"):
        get_block(SOURCE, "Missing", "model.py")


def test_nested_defs_are_not_blocks():
    assert "forward" not in [b.name for b in blocks(SOURCE)]
    with pytest.raises(GenomeError):
        get_block(SOURCE, "forward")


def test_replace_block_keeps_every_other_byte():
    new_net = "class Net(nn.Module):\n    pass\n"
    out = replace_block(SOURCE, "Net", new_net)
    net = get_block(SOURCE, "Net")
    lines = split_lines(SOURCE)
    assert out == "".join(lines[:net.start]) + new_net + "".join(lines[net.end:])
    assert get_block(out, "Net").text == new_net
    assert changed_blocks(SOURCE, out) == {"Net"}


@pytest.mark.parametrize("new_text", ["def fetch():\n    return 2\n", "def fetch():\n    return 2"])
def test_replace_block_with_or_without_trailing_newline(new_text):
    out = replace_block(SOURCE, "fetch", new_text)
    assert out.endswith("def fetch():\n    return 2\n")
    assert out.startswith(SOURCE[:SOURCE.index("async def fetch")])


def test_replace_last_block_of_file_without_final_newline():
    source = "import math\n\n\ndef f(x):\n    return x"
    assert replace_block(source, "f", "def f(x):\n    return -x\n") == \
        "import math\n\n\ndef f(x):\n    return -x"


def test_replace_block_keeps_crlf_line_endings():
    source = SOURCE.replace("\n", "\r\n")
    out = replace_block(source, "fetch", "def fetch():\n    return 2\n")
    expected = source.replace("async def fetch():\r\n    return 1", "def fetch():\r\n    return 2")
    assert out == expected
    assert "\n" not in out.replace("\r\n", "")


def test_changed_blocks_reports_blocks_and_module():
    edited = SOURCE.replace("return self.conv(x)", "return self.conv(x).relu()")
    assert changed_blocks(SOURCE, edited) == {"Net"}
    assert changed_blocks(SOURCE, edited.replace("WIDTH = 32", "WIDTH = 64")) == {"Net", "<module>"}
    assert changed_blocks(SOURCE, SOURCE.replace("import torch\n", "import torch\nimport os\n")) \
        == {"<module>"}
    assert changed_blocks(SOURCE, SOURCE) == set()


def test_changed_blocks_added_removed_and_reordered():
    added = SOURCE + "\n\ndef extra():\n    pass\n"
    assert changed_blocks(SOURCE, added) == {"extra"}
    assert changed_blocks(added, SOURCE) == {"extra"}
    a = "def f():\n    pass\n\n\ndef g():\n    pass\n"
    b = "def g():\n    pass\n\n\ndef f():\n    pass\n"
    assert changed_blocks(a, b) == {"<module>"}


def test_blank_lines_between_blocks_do_not_count():
    spaced = SOURCE.replace("\n\nclass Net", "\n\n\n\nclass Net")
    assert changed_blocks(SOURCE, spaced) == set()


def test_changed_blocks_decorator_counts_as_the_block():
    edited = SOURCE.replace("@staticmethod\n", "")
    assert changed_blocks(SOURCE, edited) == {"init_weights"}


def test_differing_blocks_in_first_sources_order():
    other = SOURCE.replace("return 1", "return 2").replace("kaiming_normal_", "xavier_normal_")
    other += "\n\ndef only_in_b():\n    pass\n"
    assert differing_blocks(SOURCE, other) == ["init_weights", "fetch"]
    assert differing_blocks(SOURCE, SOURCE) == []


@pytest.mark.parametrize(("old", "new", "same"), [
    # what import runs is the same: function and method bodies, docstrings, comments
    ("return self.conv(x)", "return self.conv(x) * 2", True),
    ("super().__init__()\n", "super().__init__()\n        self.extra = nn.ReLU()\n", True),
    ("return 1", "return await other()", True),
    ("async def fetch():\n", 'async def fetch():\n    """Fetch one."""\n', True),
    ("# comment inside the class body", "# another comment", True),
    # what import runs differs: decorators, defaults, class bodies, module statements
    ("@staticmethod\n", "", False),
    ("def forward(self, x):", "def forward(self, x=print('hi')):", False),
    ("def forward(self, x):", "def forward(self, x: open('f')):", False),
    ("class Net(nn.Module):", "class Net(nn.Module, metaclass=Meta):", False),
    ('"""A tiny net."""', '"""A tiny net, wider."""', False),  # a class body runs, all of it
    ('    """A tiny net."""\n', '    """A tiny net."""\n    SIZE = 3\n', False),
    ("async def fetch", "def fetch", False),
    ("WIDTH = 32", "WIDTH = 64", False),
    ("return 1", "return (", False),  # does not parse: no claim either way
])
def test_same_import_ignores_only_what_import_does_not_run(old, new, same):
    assert old in SOURCE
    assert same_import(SOURCE, SOURCE.replace(old, new, 1)) is same
