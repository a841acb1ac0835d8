"""Labeling benchmarks: active learning, consensus and the label audit.

Each part lives in ``benchmarks/_labeling_<part>.py`` with ``run(quick)`` and
``table(result)``; this script runs the parts asked for, prints their tables and
writes everything to ``benchmarks/results/labeling.json``::

    python benchmarks/labeling.py            # every part, full size
    python benchmarks/labeling.py --quick    # smaller, for a quick look
    python benchmarks/labeling.py --only al,audit

Parts: ``al`` (learning curves on digits and batch selection from a pool of
1,000,000), ``consensus`` (Dawid-Skene against majority vote), ``audit``
(precision and recall of the label audit at 10 % and 20 % noise), ``queue``
(20 concurrent annotators on SQLite and PostgreSQL, through the library) and
``rest`` (20 annotators labeling 2,000 items through the REST API of a real
uvicorn server on PostgreSQL).
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
PARTS = ("al", "consensus", "audit", "queue", "rest")


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
    console = Console()
    report: dict[str, Any] = {
        "benchmark": "labeling",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "quick": args.quick,
        "parts": {},
        "seconds": {},
    }
    for part in wanted:
        module = importlib.import_module(f"_labeling_{part}")
        console.print(f"[bold]{part}[/bold] ...")
        started = time.perf_counter()
        result = module.run(quick=args.quick)
        report["seconds"][part] = round(time.perf_counter() - started, 2)
        report["parts"][part] = result
        console.print(module.table(result))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"Wrote {RESULTS_PATH.relative_to(HERE.parent)}")
    flags = pass_flags(report["parts"])
    return 1 if args.strict and not all(flags) else 0


if __name__ == "__main__":
    sys.exit(main())
