"""Labeling benchmarks: active learning, consensus and the label audit.

Each part lives in ``benchmarks/_labeling_<part>.py`` with ``run(quick)`` and
``table(result)``; this script runs the parts asked for, prints their tables and
writes everything to ``benchmarks/results/labeling.json``::

    python benchmarks/labeling.py            # every part, full size
    python benchmarks/labeling.py --quick    # smaller, for a quick look
    python benchmarks/labeling.py --only al,audit
    python benchmarks/labeling.py --only audit_large   # one part alone

Parts: ``al`` (learning curves on digits and batch selection from a pool of
1,000,000), ``consensus`` (Dawid-Skene against majority vote), ``audit``
(precision and recall of the label audit at 10 % and 20 % noise),
``audit_large`` (the audit's default model on 5,000 x 784 items against
cleanlab over a cross-validated logistic regression, in the same run), ``queue``
(20 concurrent annotators on SQLite and PostgreSQL, through the library) and
``rest`` (20 annotators labeling 2,000 items through the REST API of a real
uvicorn server on PostgreSQL).

A run of some parts (``--only``) replaces those parts in the JSON file and
keeps the others, each with the time it was measured (``measured_at``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import machine_info, pass_flags
from rich.console import Console

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "labeling.json"
PARTS = ("al", "consensus", "audit", "audit_large", "queue", "rest")


def _previous_report() -> dict[str, Any]:
    """The JSON file's parts as last written (none when it is missing or unreadable)."""
    try:
        previous = json.loads(RESULTS_PATH.read_text())
    except (OSError, ValueError):
        previous = {}
    parts = previous.get("parts") if isinstance(previous, dict) else None
    if not isinstance(parts, dict):
        return {"parts": {}, "seconds": {}, "measured_at": {}}
    created = previous.get("created_at")
    return {
        "parts": parts,
        "seconds": dict(previous.get("seconds") or {}),
        # Files written before parts kept their own time: each part as of the whole run.
        "measured_at": {part: created for part in parts} | dict(previous.get("measured_at") or {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a quick look")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    wanted = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    console = Console(width=max(120, Console().width))
    report = _previous_report()
    report.update(
        benchmark="labeling",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_info(),
        quick=args.quick,
    )
    for part in wanted:
        module = importlib.import_module(f"_labeling_{part}")
        console.print(f"[bold]{part}[/bold] ...")
        started = time.perf_counter()
        result = module.run(quick=args.quick)
        report["seconds"][part] = round(time.perf_counter() - started, 2)
        report["parts"][part] = result
        report["measured_at"][part] = datetime.now(UTC).isoformat(timespec="seconds")
        console.print(module.table(result))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"Wrote {RESULTS_PATH.relative_to(HERE.parent)}")
    flags = pass_flags({part: report["parts"][part] for part in wanted})
    return 1 if args.strict and not all(flags) else 0


if __name__ == "__main__":
    sys.exit(main())
