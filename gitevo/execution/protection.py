"""What confines a candidate here, said plainly: recorded in every fitness note, warned
about at the start of a run when a protection is missing, and required by
`[sandbox] require` when a run must not start without it."""

from __future__ import annotations

from gitevo.config import Sandbox
from gitevo.execution import floor
from gitevo.execution.sandbox import SandboxUnavailable, mode

PROTECTIONS = ("filesystem", "network")
FIX = ("install bubblewrap (`sudo apt-get install bubblewrap`, or ./run.sh demo, which tries), "
       "or run on Linux >= 5.13 with Landlock enabled; `gitevo doctor` says what is missing")


def protection(settings: Sandbox) -> dict[str, object]:
    """The isolation that holds for a candidate's commands with these settings here."""
    try:
        kind = mode(settings)[0]
    except SandboxUnavailable:
        kind = "unavailable"
    abi = floor.kernel_abi() if settings.landlock and kind != "unavailable" else 0
    if settings.network == "allow":
        network = "allowed"
    elif kind in ("bwrap", "unshare"):
        network = "denied"
    else:
        network = "tcp denied (Landlock)" if abi >= 4 else "open"
    return {"isolation": kind, "landlock": abi, "filesystem": kind == "bwrap" or abi >= 1,
            "network": network}


def missing(settings: Sandbox) -> list[str]:
    """The protections that do not hold here: "filesystem", "network"."""
    found = protection(settings)
    out = [] if found["filesystem"] else ["filesystem"]
    if settings.network == "deny" and found["network"] == "open":
        out.append("network")
    return out


def summary(found: dict[str, object]) -> str:
    """One phrase for a note's isolation: "bwrap, network denied"."""
    parts = [str(found.get("isolation", "?"))]
    if found.get("landlock"):
        parts.append(f"Landlock ABI {found['landlock']}")
    parts.append(f"network {found.get('network', '?')}")
    if not found.get("filesystem"):
        parts.append("filesystem UNPROTECTED")
    return ", ".join(parts)


def warning(settings: Sandbox) -> str | None:
    """The line that says what is not protected and how to fix it, or None; raises
    SandboxUnavailable for what `[sandbox] require` asks and this machine lacks."""
    gaps = missing(settings)
    if not gaps:
        return None
    what = {"filesystem": "candidates can write outside their worktree (.git, the Python "
                          "environment, the dataset cache) and read held-out data",
            "network": "candidates can reach the network"}
    line = "; ".join(what[g] for g in gaps) + f": {FIX}"
    required = [g for g in gaps if g in settings.require]
    if required:
        raise SandboxUnavailable(f"sandbox.require: {', '.join(required)} protection is not "
                                 f"available here ({line})")
    return f"evaluations are not fully isolated: {line}"
