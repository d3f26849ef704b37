"""The plain text of a run in progress: one line per event worth reading, and a
generation's summary. The plain renderer prints them; the live display shows them too.
"""

from __future__ import annotations

from typing import Any

from gitevo.core.events import Event


def line(event: Event) -> str | None:
    """The plain-text line of an event, or None for the ones only counters need."""
    f = event.fields
    if event.kind in ("notice", "budget_spent"):
        return f["message"]
    if event.kind == "plan":
        if f["resumed"]:
            return (f"generation {f['generation']}: resuming its saved plan "
                    f"({f['to_propose']} of {f['offspring']} still to propose)")
        ops = ", ".join(f"{n} {op}" for op, n in sorted(f["operators"].items()))
        return f"generation {f['generation']}: {f['offspring']} offspring ({ops})"
    if event.kind == "committed" and f["turns"]:  # an offline child is not news yet
        turns = "" if f["turns"] == 1 else f", {f['turns']} turns"
        return f"{f['id']}: committed {f['commit'][:10]} ({f['operator']}, {f['template']}{turns})"
    if event.kind == "rejected":
        return f"{f['id']}: rejected ({f['reason']})"
    if event.kind == "screened":
        how = "screened out" if f["status"] == "screened" else f"stopped ({f['status']})"
        return f"{f['id']}: {how} at rung {f['rung']}"
    if event.kind == "promoted":
        early = " (early: enough siblings were in to place it)" if f["early"] else ""
        return f"{f['id']}: promoted from rung {f['rung']}{early}"
    if event.kind == "evaluation_finished":
        error = f" ({f['error']})" if f["error"] else ""
        return (f"{f['id']}: {f['status']} {objectives(f['objectives'])}{error} "
                f"[{f['seconds']:.1f} s]")
    return None


def _early(rung: dict[str, Any]) -> str:
    early = rung.get("promoted_early", 0)
    return f" ({early} early)" if early else ""


def objectives(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.6g}" for k, v in values.items())


def summary_lines(s: dict[str, Any]) -> list[str]:
    """A generation's summary as text: best per objective, validity, LLM use, time split."""
    best = ", ".join(f"{name} {_value(value)}{_delta(s['best_delta'].get(name))}"
                     for name, value in s["best"].items())
    head = (f"generation {s['generation']}: best {best}; hv {s['hypervolume']:.6g}"
            f"{_delta(s['hypervolume_delta'])}")
    if s["generation"] > 0:
        head += f"; {s['valid']}/{s['offspring']} valid ({s['valid_rate']:.0%})"
        if s["statuses"].get("stopped"):
            head += f", {s['statuses']['stopped']} stopped early"
    out = [head]
    if s["rejected"]:
        out.append("  rejected: " + ", ".join(f"{k} {n}" for k, n in s["rejected"].items()))
    llm = s["llm"]
    if llm["calls"]:
        out.append(f"  LLM: {llm['calls']} calls ({llm['failed']} failed), "
                   f"{llm['tokens']:,} tokens, ${llm['cost']:.4f}")
    if s["time"]:
        out.append("  time: " + time_split(s["time"]))
    out += [f"  {rung_line(r)}" for r in s["cascade"]]
    return out


def rung_line(r: dict[str, Any]) -> str:
    """One screening rung of a generation: what it spent and whom it let through."""
    rho = r.get("spearman_next")
    rho = "" if rho is None else f", rank correlation with the next rung {rho:+.2f}"
    return (f"rung {r['rung']} ({r['fidelity']}): {r['scored']}/{r['evaluated']} scored, "
            f"{r['promoted']} promoted{_early(r)}, {r['screened']} screened, "
            f"{r['training_seconds']:.1f} s training{rho}")


def time_split(t: dict[str, float]) -> str:
    return (f"{t['wall']:.1f} s = LLM {t['llm']:.1f} s, validation {t['validate']:.1f} s, "
            f"training {t['fitness']:.1f} s, other {t['other']:.1f} s")


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _delta(value: float | None) -> str:
    return "" if value is None else f" ({value:+.4g})"
