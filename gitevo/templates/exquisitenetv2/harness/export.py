"""The trained model as data: what the trainer hands to the scorer.

The trainer exports the trained model with torch.export (a graph of ATen operators) and
writes it as three plain files: the graph as JSON, every tensor it uses in an .npz
(no pickles), and a small manifest. The scorer reads them back without unpickling
anything (torch.export.load would unpickle), refuses a graph that calls anything but
deterministic, side-effect-free ATen operators, counts the parameters from the tensors
the graph really uses, and runs the graph itself: no candidate Python runs there.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.reasons import ModelError

FORMAT = "gitevo-exported-graph-1"
MANIFEST, PROGRAM, TENSORS = "manifest.json", "program.json", "tensors.npz"
# operators whose result depends on a random draw: a model must not rebuild weights from a
# seed, or answer by chance, where it is scored
RANDOM = ("rand", "normal", "bernoulli", "uniform", "multinomial", "poisson", "exponential",
          "geometric", "cauchy", "log_normal", "rrelu")
# operators with a training flag, and where it sits: it must be False in a scored graph
TRAINING_FLAG = {"batch_norm": 5, "dropout": 2, "feature_dropout": 2, "alpha_dropout": 2,
                 "feature_alpha_dropout": 2, "instance_norm": 5}
# operators that make a tensor from nothing: one of fixed shape may hold weights the
# graph computes for itself (a formula of arange, say), so its elements are counted
FACTORIES = ("full", "zeros", "ones", "empty", "arange", "linspace", "logspace", "eye",
             "scalar_tensor", "lift_fresh_copy")
# numbers written into operator arguments: the seed's graph holds about 190 (strides,
# epsilons); thousands would be weights kept out of the tensors the count sees
MAX_LITERALS = 2000
# batch-norm running statistics (input, weight, bias, mean, var, ...) are not parameters
STATISTICS = {"batch_norm": (3, 4), "_native_batch_norm_legit_no_training": (3, 4)}
EXPORT_HINT = ("the scorer runs the trained model as a torch.export graph, so forward must "
               "be traceable: no Python branching on tensor values, no .item() or numpy "
               "inside forward, no random operators at inference")


class ScoreError(ValueError):
    """The artifacts cannot be scored; the message says what the candidate must change."""


# ---- the trainer's side ----------------------------------------------------------------------

def save(model: nn.Module, channels: int, size: int, classes: int, folder: Path) -> None:
    """Export `model` (trained) for inputs [N, channels, size, size] into `folder`."""
    from torch._export.serde.serialize import serialize

    model = model.to("cpu").float().eval()
    example = torch.zeros(2, channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        graph = serialize(program).exported_program
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ModelError(f"exporting the trained model failed ({reason}); {EXPORT_HINT}"
                         ) from exc
    tensors = {name: _array(value) for name, value in
               {**program.state_dict, **program.constants}.items()
               if isinstance(value, torch.Tensor)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROGRAM).write_bytes(graph)
    with open(folder / TENSORS, "wb") as handle:
        np.savez(handle, **{f"t{i}": a for i, a in enumerate(tensors.values())})
    manifest = {"format": FORMAT, "input": [channels, size, size], "classes": classes,
                "tensors": list(tensors), "torch": torch.__version__.split("+")[0]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu").contiguous().numpy()


# ---- the scorer's side -----------------------------------------------------------------------

def warm() -> None:
    """Import what `load` needs, ahead of it: a scorer started alongside the trainer does
    it while the trainer trains (about a second of torch's lazy imports)."""
    import torch._export.serde.serialize  # noqa: F401
    import torch.export._trace  # noqa: F401


def load(folder: Path, channels: int, size: int, classes: int) -> torch.export.ExportedProgram:
    """The exported program in `folder`, checked; a ScoreError says what is wrong."""
    from torch._export.serde.schema import ExportedProgram as Serialized
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass

    manifest = _manifest(folder, channels, size, classes)
    try:
        with np.load(folder / TENSORS, allow_pickle=False) as stored:
            arrays = [stored[f"t{i}"] for i in range(len(manifest["tensors"]))]
        serialized = _bytes_to_dataclass(Serialized, (folder / PROGRAM).read_bytes())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ScoreError(f"the exported model cannot be read ({type(exc).__name__}: "
                         f"{exc})") from exc
    named = dict(zip(manifest["tensors"], (torch.from_numpy(a) for a in arrays), strict=True))
    signature = serialized.graph_module.signature
    params, buffers = _parameter_names(signature), _buffer_names(signature)
    state = {k: nn.Parameter(v, requires_grad=False) if k in params else v
             for k, v in named.items() if k in params | buffers}
    constants = {k: v for k, v in named.items() if k not in state}
    example = ((torch.zeros(2, channels, size, size),), {})
    try:
        program = ExportedProgramDeserializer().deserialize(serialized, state, constants,
                                                            example)
    except Exception as exc:
        raise ScoreError(f"the exported model is not a valid torch.export program "
                         f"({' '.join(str(exc).split())[:200]})") from exc
    check(program)
    return program


def _manifest(folder: Path, channels: int, size: int, classes: int) -> dict:
    for name in (MANIFEST, PROGRAM, TENSORS):
        if not (folder / name).is_file():
            raise ScoreError(f"no {name} in the artifacts: the trainer exports the trained "
                             "model there (harness/export.py)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ScoreError(f"{MANIFEST} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ScoreError(f"{MANIFEST}: not a {FORMAT} export")
    if manifest.get("input") != [channels, size, size] or manifest.get("classes") != classes:
        raise ScoreError(f"{MANIFEST}: exported for input {manifest.get('input')} and "
                         f"{manifest.get('classes')} classes, scored with "
                         f"{[channels, size, size]} and {classes}")
    names = manifest.get("tensors")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ScoreError(f"{MANIFEST}: 'tensors' must list the tensors' names")
    return manifest


def _parameter_names(signature) -> set[str]:
    return {spec.parameter.parameter_name for spec in signature.input_specs
            if spec.type == "parameter"}


def _buffer_names(signature) -> set[str]:
    return {spec.buffer.buffer_name for spec in signature.input_specs if spec.type == "buffer"}


def check(program: torch.export.ExportedProgram) -> None:
    """Refuse what an honest trained classifier never needs at inference."""
    signature = program.graph_signature
    if signature.buffers_to_mutate or signature.user_inputs_to_mutate:
        raise ScoreError("the exported model changes its own state when it runs (a buffer "
                         "updated in forward); export it in eval mode")
    if len(signature.user_inputs) != 1 or len(signature.user_outputs) != 1:
        raise ScoreError("the exported model must take one image batch and return one "
                         "tensor of logits")
    literals = 0
    for node in program.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_function":
            raise ScoreError(f"the exported graph holds a {node.op} node ({node.target}); "
                             f"only operator calls are scored")
        _check_call(node)
        literals += _literals((node.args, node.kwargs))
    if literals > MAX_LITERALS:
        raise ScoreError(f"the exported graph writes {literals} numbers into its operators' "
                         f"arguments (at most {MAX_LITERALS}); weights belong in parameters, "
                         "where the parameter count sees them")


def _literals(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, list | tuple):
        return sum(_literals(v) for v in value)
    if isinstance(value, dict):
        return sum(_literals(v) for v in value.values())
    return 0


HARMLESS_MUTATION = frozenset({"detach_"})


def _check_call(node: torch.fx.Node) -> None:
    target = node.target
    if target is operator.getitem:
        return
    if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
        raise ScoreError(f"the exported graph calls {target}, which is not an ATen "
                         "operator; only ATen operators are scored")
    name = target._schema.name.split("::")[-1]
    # detach_ marks a tensor as outside autograd and changes no value: logsumexp's
    # decomposition calls it on the maximum it subtracts, so a plain op must pass
    if target._schema.is_mutable and name not in HARMLESS_MUTATION:
        raise ScoreError(f"the exported graph calls aten.{name}, which changes its inputs "
                         "in place; the scored model must be free of side effects")
    if any(word in name for word in RANDOM):
        raise ScoreError(f"the exported graph calls aten.{name}, a random operator: the "
                         "scored model must give the same answer every time (no weights "
                         "drawn from a seed, no sampling at inference)")
    flag = TRAINING_FLAG.get(name)
    if flag is not None and len(node.args) > flag and node.args[flag] is not False:
        raise ScoreError(f"the exported graph calls aten.{name} in training mode; the "
                         "trainer exports the model after model.eval()")


def count(program: torch.export.ExportedProgram) -> int:
    """Parameters: every element of every tensor the graph uses (weights, buffers and
    constants alike), except batch-norm running statistics."""
    signature = program.graph_signature
    lifted = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
              **signature.inputs_to_lifted_tensor_constants}
    values = {**program.state_dict, **program.constants}
    counted = 0
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in lifted:
            continue
        uses = [(user, i) for user in node.users for i, arg in enumerate(user.args)
                if arg is node]
        if uses and all(_is_statistic(user, i) for user, i in uses):
            continue
        if uses:
            counted += int(values[lifted[node.name]].numel())
    return counted + _made(program)


def _made(program: torch.export.ExportedProgram) -> int:
    """Elements of the fixed-shape tensors the graph makes for itself."""
    made = 0
    for node in program.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if target._schema.name.split("::")[-1] not in FACTORIES:
            continue
        value = node.meta.get("val")
        shape = getattr(value, "shape", None)
        if shape is not None and all(isinstance(d, int) for d in shape):
            made += math.prod(shape)
    return made


def _is_statistic(user: torch.fx.Node, position: int) -> bool:
    target = user.target
    if not isinstance(target, torch._ops.OpOverload):
        return False
    return position in STATISTICS.get(target._schema.name.split("::")[-1], ())
