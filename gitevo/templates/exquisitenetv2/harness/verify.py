"""Compare a fresh fitness measurement with the one recorded in gitevo's note.

Used by .github/workflows/verify-best.yml:

    python -m harness.verify --note note.json --metrics metrics.json --tolerance 0.02

Exit 0 when the fresh validation accuracy is at most `tolerance` (absolute, as a
fraction) below the note's; 1 when it falls further, or the note is not an `ok` one. A
note measured at another fidelity cannot be compared: that prints a warning and passes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def compare(note: dict, fresh: dict, tolerance: float) -> tuple[bool, str]:
    """(passed, one-line explanation)."""
    if note.get("status") != "ok":
        return False, f"the note's status is {note.get('status')!r}, not 'ok'"
    claimed = (note.get("objectives") or {}).get("accuracy")
    if claimed is None:
        claimed = (note.get("metrics") or {}).get("accuracy")
    measured = fresh.get("accuracy")
    if not isinstance(claimed, int | float) or not isinstance(measured, int | float):
        return False, "accuracy missing from the note or from the fresh metrics"
    noted_fidelity, fresh_fidelity = note.get("fidelity"), fresh.get("fidelity")
    if noted_fidelity != fresh_fidelity:
        return True, (f"::warning::note measured at fidelity {noted_fidelity!r}, this run at "
                      f"{fresh_fidelity!r}: accuracies not compared "
                      f"(note {claimed:.4f}, now {measured:.4f})")
    drop = claimed - measured
    verdict = (f"accuracy {measured:.4f} vs note {claimed:.4f} at fidelity {fresh_fidelity} "
               f"(drop {drop:+.4f}, tolerance {tolerance:.4f})")
    if drop > tolerance:
        return False, "FAILED: " + verdict
    return True, "ok: " + verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--note", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)
    try:
        note = json.loads(args.note.read_text(encoding="utf-8"))
        fresh = json.loads(args.metrics.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the note or the metrics: {exc}", file=sys.stderr)
        return 1
    passed, message = compare(note, fresh, args.tolerance)
    print(message)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
