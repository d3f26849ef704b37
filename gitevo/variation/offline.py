"""Offline operators: random AST-located edits and block crossover, the unguided baseline.

A mutation rewrites one top-level block with 1..max_edits small edits. Each edit is found
through the AST (so it hits a real literal, name or operator, never text inside a string or
comment) and applied as a replacement of that token's exact character span, so the rest of
the block keeps its formatting and comments and the diff reads like a person's.

Edit kinds, drawn uniformly among those that have candidates in the block:

- number: int and float literals, with range sense. Kernel sizes (a conv's kernel_size, or an
  odd value bound to a name such as `kernel`/`dw_s`, also through the file's own classes'
  signatures) step by 2, so odd stays odd and >= 1, and a conv's literal padding moves by
  half the step, which keeps its output size (a 1x1 conv gains `padding=`). Other ints
  scale or step and stay positive, a multiple of 8 or 4 staying a multiple of it; an
  int >= 8 (a width) changes at every occurrence in the block at once, `groups=` of the
  same value included, so layers stay compatible. Floats in (0, 1) stay in (0, 1) (dropout,
  momentum, ratios, learning rates); other floats scale by 0.5..2. Nothing non-zero
  becomes zero.
  Skipped, because they are bookkeeping rather than design: zeros and bools, subscripts,
  dict keys, dimensions (`dim=`, `.view(...)`, `torch.cat(..., 1)`), padding, groups,
  class and image-channel counts, ints inside arithmetic (`(k - 1) // 2`, `3 * cin`), and
  default values that every call in the file overrides (changing them changes nothing).
- activation: nn.ReLU <-> nn.SiLU <-> nn.GELU ..., F.relu <-> F.silu ..., torch.sigmoid <->
  torch.tanh, only to a function whose signature accepts the call's arguments (no GELU for
  `ReLU(inplace=True)`).
- pooling: max <-> average pooling, plain and adaptive, module and functional.
- function: math.sin/cos/tanh/atan and their numpy and torch forms, swapped among themselves.
- operator: + <-> - and * <-> / in arithmetic that has no int literal operand and no
  sequence operand; * becomes / only before a non-zero float literal, so a swap never
  introduces a division by something that can be zero.

Everything is drawn from the caller's random.Random, so a seed reproduces a mutation.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gitevo.variation import genome

_ATTEMPTS = 8

Span = tuple[int, int]


class OperatorError(ValueError):
    """An operator that cannot produce a child from these parents."""


@dataclass(frozen=True)
class _Candidate:
    kind: str
    spans: tuple[Span, ...]
    # draws the replacement text for each span, and a few words saying what changed
    make: Callable[[random.Random], tuple[tuple[str, ...], str]]


# --------------------------------------------------------------------- knowledge tables

_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
         "groups", "bias")
_POOL = ("kernel_size", "stride", "padding")
_KNOWN_PARAMS: dict[str, tuple[str, ...]] = {
    **{f"Conv{d}d": _CONV for d in (1, 2, 3)},
    **{f"ConvTranspose{d}d": _CONV[:5] + ("output_padding", "groups") for d in (1, 2, 3)},
    **{f"{kind}Pool{d}d": _POOL for kind in ("Max", "Avg") for d in (1, 2, 3)},
    **{f"{kind}_pool{d}d": ("input",) + _POOL for kind in ("max", "avg") for d in (1, 2, 3)},
    **{f"BatchNorm{d}d": ("num_features", "eps", "momentum") for d in (1, 2, 3)},
    **{name: ("p", "inplace") for name in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d")},
    "dropout": ("input", "p"),
    "Linear": ("in_features", "out_features", "bias"),
    "LayerNorm": ("normalized_shape", "eps"),
    "GroupNorm": ("num_groups", "num_channels", "eps"),
    "SGD": ("params", "lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "Adam": ("params", "lr", "betas", "eps", "weight_decay"),
    "AdamW": ("params", "lr", "betas", "eps", "weight_decay"),
}

# whose values are structure (shapes, dimensions, wiring), not design choices
_SKIP_NAMES = {
    "dim", "dims", "axis", "axes", "start_dim", "end_dim", "keepdim", "groups", "num_groups",
    "padding", "output_padding", "dilation", "output_size", "seed", "num_classes",
    "n_classes", "class_num", "classes", "img_channels", "in_chans", "input",
}
# methods and functions whose positional ints are dimensions or shapes
_DIM_CALLS = {
    "view", "reshape", "permute", "transpose", "flatten", "unflatten", "unsqueeze", "squeeze",
    "size", "mean", "sum", "prod", "max", "min", "amax", "amin", "argmax", "argmin", "cat",
    "concat", "concatenate", "stack", "split", "chunk", "softmax", "log_softmax", "narrow",
    "select", "expand", "repeat", "flip", "roll", "std", "var", "norm", "gather",
    "index_select", "movedim", "topk", "cumsum", "randn", "rand", "zeros", "ones", "empty",
    "full", "arange", "manual_seed", "seed",
}
_KERNEL_NAME = re.compile(r"kernel|dw_s|^k$|^ks$|^ksize$|^k_|_k$")
# a small input-channel count (3 for RGB) belongs to the data, not to the design
_INPUT_CHANNELS = re.compile(r"^(in_?(channels|chans|ch|planes|features)|cin|c_in|inp)$")

# swap groups per namespace: name -> its parameters after the tensor (or none), so a swap
# only happens when the call's arguments fit the new function
_INPLACE = ("inplace",)
_GROUPS: dict[str, list[tuple[str, dict[str, tuple[str, ...]]]]] = {
    "nn": [
        ("activation", {"ReLU": _INPLACE, "ReLU6": _INPLACE, "SiLU": _INPLACE,
                        "Hardswish": _INPLACE, "Mish": _INPLACE, "GELU": ("approximate",),
                        "ELU": ("alpha", "inplace"),
                        "LeakyReLU": ("negative_slope", "inplace")}),
        ("activation", {"Sigmoid": (), "Hardsigmoid": _INPLACE}),
        *[("pooling", {f"MaxPool{d}d": _POOL + ("dilation", "return_indices", "ceil_mode"),
                       f"AvgPool{d}d": _POOL + ("ceil_mode", "count_include_pad")})
          for d in (1, 2, 3)],
        *[("pooling", {f"AdaptiveAvgPool{d}d": ("output_size",),
                       f"AdaptiveMaxPool{d}d": ("output_size", "return_indices")})
          for d in (1, 2, 3)],
    ],
    "F": [
        ("activation", {"relu": ("input", "inplace"), "relu6": ("input", "inplace"),
                        "silu": ("input", "inplace"), "hardswish": ("input", "inplace"),
                        "mish": ("input", "inplace"), "gelu": ("input", "approximate"),
                        "elu": ("input", "alpha", "inplace"),
                        "leaky_relu": ("input", "negative_slope", "inplace")}),
        *[("pooling", {f"max_pool{d}d": ("input",) + _POOL + ("dilation", "ceil_mode"),
                       f"avg_pool{d}d": ("input",) + _POOL + ("ceil_mode",)})
          for d in (1, 2, 3)],
        *[("pooling", {f"adaptive_avg_pool{d}d": ("input", "output_size"),
                       f"adaptive_max_pool{d}d": ("input", "output_size")})
          for d in (1, 2, 3)],
    ],
    "torch": [
        ("activation", {"relu": ("input",), "selu": ("input",)}),
        ("activation", {"sigmoid": ("input",), "tanh": ("input",)}),
        ("function", {"sin": ("input",), "cos": ("input",)}),
    ],
    "math": [("function", {"sin": ("x",), "cos": ("x",), "tanh": ("x",), "atan": ("x",)})],
    "np": [("function", {"sin": ("x",), "cos": ("x",), "tanh": ("x",), "arctan": ("x",)})],
}
# how a module is spelled, before the file's own imports are read
_DEFAULT_ALIASES = {"nn": "nn", "torch.nn": "nn", "F": "F", "torch.nn.functional": "F",
                    "torch": "torch", "math": "math", "np": "np", "numpy": "np"}
_OPERATORS: dict[type, tuple[str, str]] = {
    ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*")}
_SEQUENCES = (ast.List, ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.JoinedStr)


# ----------------------------------------------------------------------- source helpers


class _Text:
    """Maps AST (line, UTF-8 byte column) positions to character offsets in a text."""

    def __init__(self, text: str):
        self.lines = genome.split_lines(text)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        if line.isascii():
            return self.starts[lineno - 1] + col
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="ignore"))

    def span(self, node: ast.AST) -> Span:
        return (self.offset(node.lineno, node.col_offset),
                self.offset(node.end_lineno, node.end_col_offset))


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Names the file binds to torch, torch.nn, torch.nn.functional, math and numpy."""
    aliases = dict(_DEFAULT_ALIASES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in _DEFAULT_ALIASES and a.asname:
                    aliases[a.asname] = _DEFAULT_ALIASES[a.name]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in _DEFAULT_ALIASES:
                    aliases[a.asname or a.name] = _DEFAULT_ALIASES[full]
    return aliases


def _signatures(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Positional parameter names of the file's own functions and classes (self dropped)."""
    sigs = dict(_KNOWN_PARAMS)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sigs[node.name] = tuple(a.arg for a in node.args.posonlyargs + node.args.args)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args.posonlyargs + item.args.args
                    sigs[node.name] = tuple(a.arg for a in args[1:])
    return sigs


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _subtree_ids(nodes: Iterable[ast.AST | None]) -> set[int]:
    return {id(n) for node in nodes if node is not None for n in ast.walk(node)}


# -------------------------------------------------------------------- number literals


@dataclass
class _Site:
    """Where a literal sits: the name it is bound to, and the call it is an argument of."""

    name: str = ""  # parameter, keyword or variable name, "" if none
    call: ast.Call | None = None
    direct: bool = True  # not inside a tuple or list
    skip: bool = False


def _call_site(node: ast.AST, call: ast.Call, sigs: dict[str, tuple[str, ...]]) -> _Site:
    callee = _callee(call) or ""
    if node in call.args:
        if callee in _DIM_CALLS:
            return _Site(skip=True)
        index = call.args.index(node)
        params = sigs.get(callee, ())
        if any(isinstance(a, ast.Starred) for a in call.args[:index + 1]):
            return _Site(name=callee, call=call)
        return _Site(name=params[index] if index < len(params) else callee, call=call)
    return _Site(name=callee)


def _default_site(node: ast.AST, args: ast.arguments) -> _Site:
    positional = args.posonlyargs + args.args
    for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults,
                            strict=True):
        if default is node:
            return _Site(name=arg.arg)
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if default is node:
            return _Site(name=arg.arg)
    return _Site()


def _target_name(target: ast.AST) -> str:
    if isinstance(target, ast.Name):
        return target.id
    return target.attr if isinstance(target, ast.Attribute) else ""


def _site(const: ast.Constant, parents: dict[int, ast.AST],
          sigs: dict[str, tuple[str, ...]]) -> _Site:
    """Climb from a literal through signs and tuples to whatever gives it meaning."""
    node, direct = const, True
    parent = parents.get(id(node))
    while isinstance(parent, (ast.UnaryOp, ast.Tuple, ast.List)):
        direct = direct and isinstance(parent, ast.UnaryOp)
        node, parent = parent, parents.get(id(parent))
    if isinstance(parent, ast.BinOp) and isinstance(const.value, int):
        return _Site(skip=True)  # integer arithmetic is bookkeeping: (k - 1) // 2, 3 * cin
    if isinstance(parent, ast.keyword):
        call = parents.get(id(parent))
        site = _Site(name=parent.arg or "", call=call if isinstance(call, ast.Call) else None)
    elif isinstance(parent, ast.Call):
        site = _call_site(node, parent, sigs)
    elif isinstance(parent, ast.arguments):
        site = _default_site(node, parent)
    elif isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        site = _Site(name=_target_name(targets[0]))
    else:
        site = _Site()
    site.direct = direct
    site.skip = site.skip or site.name in _SKIP_NAMES
    return site


def _numbers(tree: ast.AST) -> list[ast.Constant]:
    """Non-zero int and float literals outside subscripts and dict keys."""
    hidden = _subtree_ids(s.slice for s in ast.walk(tree) if isinstance(s, ast.Subscript))
    hidden |= _subtree_ids(k for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in hidden:
            value = node.value
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0:
                out.append(node)
    return out


def _is_conv(call: ast.Call | None) -> bool:
    return call is not None and (_callee(call) or "").startswith("Conv")


def _is_kernel(const: ast.Constant, site: _Site) -> bool:
    """A kernel size: odd ones anywhere by name, even ones only as a conv's kernel."""
    value = const.value
    if not (isinstance(value, int) and _KERNEL_NAME.search(site.name)):
        return False
    return value % 2 == 1 or _is_conv(site.call)


def _format_float(value: float) -> str:
    return repr(float(f"{value:.2g}"))


def new_float(value: float, rng: random.Random) -> str:
    """A nearby float literal: (0, 1) stays in (0, 1), others scale by 0.5..2; never 0."""
    unit = 0 < value < 1
    for _ in range(32):
        factor = 2 ** rng.uniform(-1, 1)
        # scale the distance to the nearer end of (0, 1), so 0.9 moves like 0.1 does
        candidate = 1 - (1 - value) * factor if unit and value > 0.5 else value * factor
        text = _format_float(candidate)
        new = float(text)
        if new != value and new != 0 and (not unit or 0 < new < 1):
            return text
    return _format_float(value / 2 if unit else value * 2)


def new_int(value: int, rng: random.Random) -> int:
    """A nearby positive int; a multiple of 8 (or 4) stays a multiple of it."""
    unit = 8 if value % 8 == 0 else 4 if value % 4 == 0 else 1
    if rng.random() < 0.5:
        new = value + unit * rng.choice((-2, -1, 1, 2))
    else:
        new = round(value * rng.choice((0.5, 0.75, 1.25, 1.5, 2.0)) / unit) * unit
    new = max(new, unit)
    return new if new != value else value + unit


def new_kernel(value: int, rng: random.Random, padding: int | None = None) -> int:
    """A nearby kernel size of the same parity (so odd stays odd), at least 1.

    With `padding` (the conv's literal padding) the step keeps padding + (new - old) / 2,
    the padding that leaves the output size unchanged, non-negative.
    """
    low = 1 if value % 2 else 2
    steps = [s for s in (-4, -2, -2, 2, 2, 4) if value + s >= low]
    if padding is not None:
        steps = [s for s in steps if padding + s // 2 >= 0]
    return value + rng.choice(steps)


def _literal_int(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _argument(call: ast.Call, name: str, sigs: dict[str, tuple[str, ...]]) -> ast.AST | None:
    """The node passed for parameter `name`, by keyword or by position; None if absent."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    params = sigs.get(_callee(call) or "", ())
    if name in params and params.index(name) < len(call.args):
        return call.args[params.index(name)]
    return None


def _can_add_padding(const: ast.Constant, call: ast.Call) -> bool:
    """Whether `, padding=N` can follow the kernel size argument without breaking the call."""
    if any(k.arg is None for k in call.keywords):
        return False
    if any(k.value is const for k in call.keywords):
        return True
    return bool(call.args) and call.args[-1] is const and \
        not any(isinstance(a, ast.Starred) for a in call.args)


def _padding_plan(const: ast.Constant, site: _Site,
                  sigs: dict[str, tuple[str, ...]]) -> tuple[int | None, ast.AST | None, bool]:
    """How a conv's padding follows its kernel: (old padding, its literal node, may insert).

    Old padding None means the padding is an expression (or dilated): leave it alone.
    """
    call = site.call
    if not (_is_conv(call) and site.direct):
        return None, None, False
    dilation = _argument(call, "dilation", sigs)
    if dilation is not None and _literal_int(dilation) != 1:
        return None, None, False
    node = _argument(call, "padding", sigs)
    if node is None:
        return 0, None, _can_add_padding(const, call)
    padding = _literal_int(node)
    return (padding, node, False) if padding is not None else (None, None, False)


def _kernel_candidate(const: ast.Constant, site: _Site, text: _Text,
                      sigs: dict[str, tuple[str, ...]]) -> _Candidate:
    old = const.value
    padding, pad_node, may_insert = _padding_plan(const, site, sigs)
    if pad_node is None and not may_insert:
        padding = None  # nothing to keep in step with
    spans = (text.span(const),) + ((text.span(pad_node),) if pad_node is not None else ())

    def make(rng: random.Random) -> tuple[tuple[str, ...], str]:
        new = new_kernel(old, rng, padding)
        label = f"{site.name} {old}->{new}"
        if padding is None:
            return (str(new),), label
        pad = padding + (new - old) // 2
        if pad_node is not None:
            return (str(new), str(pad)), f"{label} (padding {padding}->{pad})"
        if pad:
            return (f"{new}, padding={pad}",), f"{label} (padding {pad})"
        return (str(new),), label

    return _Candidate("number", spans, make)


def _value_candidate(consts: list[ast.Constant], label: str, text: _Text) -> _Candidate:
    old = consts[0].value

    def make(rng: random.Random) -> tuple[tuple[str, ...], str]:
        new = new_float(old, rng) if isinstance(old, float) else str(new_int(old, rng))
        words = f"{label} {old}->{new}".strip()
        return tuple(new for _ in consts), words + (f" (x{len(consts)})" if len(consts) > 1 else "")

    return _Candidate("number", tuple(text.span(c) for c in consts), make)


def _label(site: _Site) -> str:
    # one-letter parameter names ("p" of Dropout) say less than the callee's name
    if len(site.name) <= 1 and site.call is not None:
        return _callee(site.call) or site.name
    return site.name


def _init_args(node: ast.stmt) -> tuple[ast.arguments | None, int]:
    """The arguments a call of this top-level def binds, and how many leading ones it skips."""
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return item.args, 1
        return None, 0
    return (node.args, 0) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
        else (None, 0)


def _dead_defaults(module: ast.Module, block: ast.Module) -> set[int]:
    """Default values that no call in the file uses, because every call passes the argument.

    Mutating those changes nothing the fitness can see (the caller decides the value),
    so they are no candidates.
    """
    node = block.body[0]
    args, skip = _init_args(node)
    calls = [c for c in ast.walk(module) if isinstance(c, ast.Call)
             and isinstance(c.func, ast.Name) and c.func.id == node.name]
    if args is None or not calls:
        return set()
    params = [a.arg for a in (args.posonlyargs + args.args)[skip:]]
    covered = set(params) | {a.arg for a in args.kwonlyargs}
    for call in calls:
        if any(isinstance(a, ast.Starred) for a in call.args) or \
                any(k.arg is None for k in call.keywords):
            return set()
        covered &= set(params[:len(call.args)]) | {k.arg for k in call.keywords}
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                     strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    return _subtree_ids(default for arg, default in pairs if arg.arg in covered)


def _number_candidates(tree: ast.AST, text: _Text, parents: dict[int, ast.AST],
                       sigs: dict[str, tuple[str, ...]], dead: set[int]) -> list[_Candidate]:
    out, widths, followers = [], {}, {}
    for const in _numbers(tree):
        site = _site(const, parents, sigs)
        is_width = type(const.value) is int and const.value >= 8
        if id(const) in dead or (type(const.value) is int and not is_width
                                 and _INPUT_CHANNELS.match(site.name)):
            continue
        if site.skip:
            if is_width and site.name in ("groups", "num_groups"):
                # groups=64 beside 64 channels is depthwise: it must follow the width
                followers.setdefault(const.value, []).append(const)
            continue
        if _is_kernel(const, site):
            out.append(_kernel_candidate(const, site, text, sigs))
        elif is_width:
            widths.setdefault(const.value, []).append(const)  # a width: change it everywhere
        else:
            out.append(_value_candidate([const], _label(site), text))
    for value, consts in widths.items():
        consts = sorted(consts + followers.get(value, []), key=text.span)
        label = "width" if len(consts) > 1 else _label(_site(consts[0], parents, sigs))
        out.append(_value_candidate(consts, label, text))
    return out


# ------------------------------------------------------------------ name swaps, operators


def _fits(params: tuple[str, ...], target: tuple[str, ...], call: ast.Call | None) -> bool:
    """Whether every call of `params`' function stays valid for `target`'s."""
    if call is None:  # a bare reference: someone calls it later with unknown arguments
        return target[:len(params)] == params
    if any(isinstance(a, ast.Starred) for a in call.args) or \
            any(k.arg is None for k in call.keywords):
        return False
    n = len(call.args)
    return n <= len(target) and target[:n] == params[:n] and \
        all(k.arg in target for k in call.keywords)


def _swap_candidate(node: ast.Attribute, call: ast.Call | None, namespace: str,
                    text: _Text) -> _Candidate | None:
    for kind, group in _GROUPS.get(namespace, []):
        if node.attr not in group:
            continue
        params = group[node.attr]
        targets = [name for name, sig in group.items()
                   if name != node.attr and _fits(params, sig, call)]
        if not targets:
            return None
        end = text.offset(node.end_lineno, node.end_col_offset)
        old = node.attr

        def make(rng: random.Random, targets=targets, old=old) -> tuple[tuple[str, ...], str]:
            new = rng.choice(targets)
            return (new,), f"{old}->{new}"

        return _Candidate(kind, ((end - len(old), end),), make)
    return None


def _swap_candidates(tree: ast.AST, text: _Text, parents: dict[int, ast.AST],
                     aliases: dict[str, str]) -> list[_Candidate]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        namespace = aliases.get(_dotted(node.value) or "")
        if namespace is None:
            continue
        parent = parents.get(id(node))
        call = parent if isinstance(parent, ast.Call) and parent.func is node else None
        candidate = _swap_candidate(node, call, namespace, text)
        if candidate:
            out.append(candidate)
    return out


def _operator_span(node: ast.BinOp, text: _Text, source: str, symbol: str) -> Span | None:
    """The operator's character span: the gap between the operands, comments skipped."""
    start = text.offset(node.left.end_lineno, node.left.end_col_offset)
    end = text.offset(node.right.lineno, node.right.col_offset)
    i = start
    while i < end:
        if source[i] == "#":
            i = source.find("\n", i, end)
            if i < 0:
                return None
        elif source[i] == symbol:
            return (i, i + 1)
        i += 1
    return None


def _nonzero_literal(node: ast.AST) -> bool:
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is float and node.value != 0


def _swappable(node: ast.BinOp) -> bool:
    operands = (node.left, node.right)
    if any(isinstance(o, _SEQUENCES) or (isinstance(o, ast.Constant) and
                                          not isinstance(o.value, float)) for o in operands):
        return False  # concatenation, repetition, or integer bookkeeping
    # `0.2 * x` -> `0.2 / x` divides by zero wherever x is 0; divide only by a literal
    return not isinstance(node.op, ast.Mult) or _nonzero_literal(node.right)


def _operator_candidates(tree: ast.AST, text: _Text, source: str) -> list[_Candidate]:
    hidden = _subtree_ids(s.slice for s in ast.walk(tree) if isinstance(s, ast.Subscript))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.BinOp) or type(node.op) not in _OPERATORS or \
                id(node) in hidden or not _swappable(node):
            continue
        old, new = _OPERATORS[type(node.op)]
        span = _operator_span(node, text, source, old)
        if span:
            out.append(_Candidate("operator", (span,),
                                  lambda rng, old=old, new=new: ((new,), f"{old} -> {new}")))
    return out


# --------------------------------------------------------------------------- operators


def _block(source: str, name: str) -> genome.Block:
    try:
        return genome.get_block(source, name)
    except genome.GenomeError as exc:
        raise OperatorError(str(exc)) from exc


def _candidates(source: str, block: genome.Block) -> list[_Candidate]:
    module = genome.parse(source)
    tree = genome.parse(block.text)
    text, parents = _Text(block.text), _parents(tree)
    dead = _dead_defaults(module, tree)
    found = _number_candidates(tree, text, parents, _signatures(module), dead)
    found += _swap_candidates(tree, text, parents, _aliases(module))
    found += _operator_candidates(tree, text, block.text)
    return sorted(found, key=lambda c: c.spans)


def _overlaps(candidate: _Candidate, taken: list[Span]) -> bool:
    return any(a < d and c < b for a, b in candidate.spans for c, d in taken)


def _edit_once(text: str, candidates: list[_Candidate], rng: random.Random,
               max_edits: int) -> tuple[str, str]:
    """Apply 1..max_edits non-overlapping random edits to the block text."""
    taken: list[Span] = []
    replacements: list[tuple[Span, str]] = []
    words = []
    for _ in range(rng.randint(1, max_edits)):
        free = [c for c in candidates if not _overlaps(c, taken)]
        if not free:
            break
        kind = rng.choice(sorted({c.kind for c in free}))
        chosen = rng.choice([c for c in free if c.kind == kind])
        texts, summary = chosen.make(rng)
        taken.extend(chosen.spans)
        replacements.extend(zip(chosen.spans, texts, strict=True))
        words.append(summary)
    for (start, end), new in sorted(replacements, reverse=True):
        text = text[:start] + new + text[end:]
    return text, "; ".join(words)


def _parses(source: str) -> bool:
    try:
        genome.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def mutate(source: str, block_name: str, rng: random.Random,
           max_edits: int = 3) -> tuple[str, str]:
    """Rewrite block `block_name` with 1..max_edits random edits; (new source, summary)."""
    if max_edits < 1:
        raise ValueError("max_edits must be at least 1")
    block = _block(source, block_name)
    candidates = _candidates(source, block)
    if not candidates:
        raise OperatorError(f"block {block_name} has nothing to mutate")
    for _ in range(_ATTEMPTS):
        text, summary = _edit_once(block.text, candidates, rng, max_edits)
        new_source = genome.replace_block(source, block_name, text)
        if new_source != source and _parses(new_source):
            return new_source, summary
    raise OperatorError(f"block {block_name}: no parsable mutation in {_ATTEMPTS} attempts")


def mutable_blocks(source: str) -> list[str]:
    """Names of the blocks that mutate() can change."""
    return [b.name for b in genome.blocks(source) if _candidates(source, b)]


def crossover(source_a: str, source_b: str, block_name: str) -> tuple[str, str]:
    """Parent a's source with block `block_name` taken from parent b."""
    mine, theirs = _block(source_a, block_name), _block(source_b, block_name)
    if mine.text == theirs.text:
        raise OperatorError(f"block {block_name} is identical in both parents")
    return genome.replace_block(source_a, block_name, theirs.text), \
        f"take {block_name} from other parent"
