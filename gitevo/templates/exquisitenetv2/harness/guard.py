"""Keep the candidate's code from changing what the harness measures.

model.py runs in this process, so it could reassign harness functions, torch methods
or builtins, or write its own metrics file. The defences, in order:

* this module is imported before model.py and snapshots the namespaces that the
  measurement path relies on; `Snapshot.restore` puts back every entry the candidate
  replaced, and deletes what it added where an addition could shadow something;
* measuring code calls methods of `torch._C.TensorBase` and `numpy.ndarray`, which are
  C types whose attributes cannot be reassigned, with `__torch_function__` disabled;
* the metrics file is written last, atomically, and the process then ends with
  `os._exit`, so no atexit handler or finaliser of the candidate runs afterwards;
* a candidate that leaves threads or child processes running (which could rewrite the
  file after the harness wrote it) fails instead of getting a score: see `leftovers`.

Out of scope: code that deliberately reads the dataset's labels from disk or from
memory. Stopping that takes a sandbox with no access to the data files, which is the
evaluator's job, not something an in-process harness can promise.
"""

from __future__ import annotations

import builtins
import io
import json
import json.encoder
import os
import sys
import threading
import time
import types

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (see below)
import torch.nn.functional as F
from torch import nn

# torch._dynamo rebinds torch.manual_seed when first imported, which the first optimizer
# does. Importing it here, before the snapshot, keeps torch's own change from being
# reported as the candidate's; the import cost would be paid by the optimizer anyway.

# C-level entry points the measuring code calls; these objects cannot be patched in place.
TENSOR_BASE = torch._C.TensorBase
TENSOR = torch.Tensor
PARAMETER = nn.Parameter
MODULE = nn.Module
NDARRAY = np.ndarray
NO_TORCH_FUNCTION = torch._C.DisableTorchFunction
OBJECT_GETATTR = object.__getattribute__
DICT_VALUES = dict.values
OPEN = io.open
REPLACE = os.replace
DUMPS = json.dumps
EXIT = os._exit
CLOCK = time.perf_counter
THREADS = threading.enumerate
MAIN_THREAD = threading.main_thread()

_THIRD_PARTY = (builtins, json, json.encoder, os, os.path, time, np, torch, F, torch.optim,
                nn.init)
_CLASSES = (torch.Tensor, nn.Module, nn.Parameter, torch.optim.Optimizer)
_CACHES = frozenset({"__slotnames__"})


class Snapshot:
    """The namespaces as they were before the candidate's code was imported."""

    def __init__(self, harness_modules: list[types.ModuleType]):
        self._own = {mod: dict(vars(mod)) for mod in harness_modules}
        self._shared = {mod: dict(vars(mod)) for mod in _THIRD_PARTY}
        self._classes = {cls: dict(vars(cls)) for cls in _CLASSES}

    def restore(self) -> list[str]:
        """Undo the candidate's changes; returns the names it had touched."""
        touched: list[str] = []
        for mod, saved in self._own.items():
            touched += _restore_namespace(mod.__name__, vars(mod), saved, drop_added=True)
        for mod, saved in self._shared.items():
            touched += _restore_namespace(mod.__name__, vars(mod), saved, drop_added=False)
        for cls, saved in self._classes.items():
            touched += _restore_class(cls, saved)
        return touched


def _restore_namespace(label: str, current: dict, saved: dict, drop_added: bool) -> list[str]:
    touched = [name for name, value in saved.items() if current.get(name, _MISSING) is not value]
    for name in touched:
        current[name] = saved[name]
    # a name added to a module can shadow a builtin inside it; added submodules are
    # lazy imports of the library itself and must stay
    added = [name for name in current if name not in saved]
    if not drop_added:
        shadowing = current is not vars(builtins)
        added = [name for name in added if shadowing and name in vars(builtins)]
    for name in added:
        del current[name]
    return [f"{label}.{name}" for name in touched + added]


def _restore_class(cls: type, saved: dict) -> list[str]:
    touched = []
    current = dict(vars(cls))
    for name, value in saved.items():
        if current.get(name, _MISSING) is not value:
            setattr(cls, name, value)
            touched.append(name)
    for name in current:
        # an added attribute that hides an inherited one (Tensor.argmax lives on TensorBase);
        # copyreg's cache of slot names is written by copying and exporting, not by a cheat
        if name in _CACHES:
            continue
        if name not in saved and any(name in vars(base) for base in cls.__mro__[1:]):
            delattr(cls, name)
            touched.append(name)
    return [f"{cls.__module__}.{cls.__qualname__}.{name}" for name in touched]


class _Missing:
    pass


_MISSING = _Missing()


def harness_modules() -> list[types.ModuleType]:
    """Every module of this package that is loaded now."""
    return [mod for name, mod in sorted(sys.modules.items())
            if mod is not None and (name == "harness" or name.startswith("harness."))]


def leftovers() -> list[str]:
    """Threads and child processes still running besides the harness's own main thread."""
    found = [f"thread {t.name!r}" for t in THREADS() if t is not MAIN_THREAD and t.is_alive()]
    return found + [f"process {pid}" for pid in _child_pids()]


def _child_pids() -> list[int]:
    # Linux lists each thread's children in /proc; elsewhere this check is skipped
    pids: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with OPEN(f"/proc/self/task/{task}/children") as handle:
                pids += [int(pid) for pid in handle.read().split()]
    except OSError:
        return []
    return pids
