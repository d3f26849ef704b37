"""Which GPUs this machine's evaluations may use, and which one each running job holds.

Detection asks CUDA_VISIBLE_DEVICES and nvidia-smi, never torch: importing torch costs
seconds and gigabytes, and gitevo itself needs no GPU.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
from collections.abc import Sequence


def detect_gpus() -> tuple[str, ...]:
    """The device ids evaluations may use: CUDA_VISIBLE_DEVICES when it is set (a user's
    or scheduler's choice wins, and "" means none), else every GPU nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()  # a driver that does not answer: evaluate on the CPU
    return tuple(line.strip() for line in out.splitlines() if line.strip().isdigit())


def resolve_gpus(setting: str | Sequence[str]) -> tuple[str, ...]:
    """gitevo.toml's `gpus`: "auto" or an explicit list of ids."""
    return detect_gpus() if setting == "auto" else tuple(str(g) for g in setting)


class GpuPool:
    """Hands each starting job a device with a free place (`per_gpu` places per device)."""

    def __init__(self, devices: Sequence[str], per_gpu: int = 1):
        self.places: queue.Queue[str] = queue.Queue()
        # round-robin order, so two jobs share a device only when every device has one
        for _ in range(max(1, per_gpu)):
            for device in devices:
                self.places.put(device)
        self.size = self.places.qsize()

    def take(self) -> str:
        return self.places.get()

    def give_back(self, device: str) -> None:
        self.places.put(device)
