"""How long people wait for the everyday commands to start: ``inloop --help``,
``inloop label status PROJECT`` and ``inloop server`` until it answers.

Each case runs the installed ``inloop`` command (the console script beside this
interpreter) in a fresh process, ``--repeats`` times after one untimed run, and
reports the median wall time. The environment is this one without ``PYTHON*``
and ``INLOOP_*`` variables (so Python keeps its bytecode caches, as on a
user's machine), with ``INLOOP_HOME`` set to a home prepared once, untimed: a
labeling project of 300 feature items, 200 of them labeled by two annotators
(so ``status`` computes agreement and the server's model in the loop has work).

Cases and targets (issue 20):

* ``help``: ``inloop --help`` (target: median under 0.5 s);
* ``status``: ``inloop label status digits`` (target: median under 0.5 s);
* ``server``: ``inloop server --port P`` until ``GET /login`` first answers 200,
  from the moment the process is started (target: median within 1.5 s).

A flow's first run in a fresh home is timed against Metaflow in
``benchmarks/flows.py`` (case ``linear-fresh``). The table is printed and
everything is written to ``benchmarks/results/startup.json``::

    python benchmarks/startup.py              # every case, 7 runs each
    python benchmarks/startup.py --only server -r 3
    python benchmarks/startup.py --quick       # 3 runs each
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import machine_info
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "startup.json"
INLOOP = Path(sys.executable).with_name("inloop")
PROJECT = "digits"
SERVER_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0

console = Console(width=max(100, Console().width))

_SETUP = """
import numpy as np
from sklearn.datasets import load_digits
from inloop.label import annotate, create_project, get_items
from inloop.label.io import import_items

X, y = load_digits(return_X_y=True)
X, y = X[:300], y[:300]
create_project("{project}", [str(c) for c in range(10)], overlap=2)
import_items("{project}", X, ids=[str(i) for i in range(300)])
items = get_items("{project}")
for item in items[:200]:
    label = str(y[int(item.external_id)])
    annotate("{project}", item.item_id, "ana", label)
    other = label if int(item.external_id) % 7 else str((int(label) + 1) % 10)
    annotate("{project}", item.item_id, "bob", other)
"""


@dataclass(frozen=True)
class Case:
    """One start-up to time: how to run it once (returns seconds) and its target."""

    name: str
    description: str
    target_s: float
    run: Callable[[dict[str, str]], float]


def _env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INLOOP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["INLOOP_HOME"] = str(home)
    env["USERNAME"] = "bench"
    return env


def _timed_command(*args: str) -> Callable[[dict[str, str]], float]:
    def run(env: dict[str, str]) -> float:
        started = time.perf_counter()
        proc = subprocess.run(
            [str(INLOOP), *args], env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"inloop {' '.join(args)} exited {proc.returncode}:\n{tail}")
        return seconds

    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _server_until_answer(env: dict[str, str]) -> float:
    """Start ``inloop server``; seconds until ``GET /login`` answers 200. Stops it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/login"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(INLOOP), "server", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not _answers(url):
            if proc.poll() is not None:
                tail = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"inloop server exited {proc.returncode}:\n{tail}")
            if time.perf_counter() - started > SERVER_TIMEOUT_S:
                raise RuntimeError(f"inloop server did not answer {url} in {SERVER_TIMEOUT_S} s")
            time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


CASES = (
    Case("help", "inloop --help", 0.5, _timed_command("--help")),
    Case(
        "status", f"inloop label status {PROJECT}", 0.5,
        _timed_command("label", "status", PROJECT),
    ),
    Case("server", "inloop server, until GET /login answers", 1.5, _server_until_answer),
)  # fmt: skip


def prepare_home(home: Path) -> None:
    """The labeling project every case reads, made once through the Python API (untimed)."""
    env = _env(home)
    code = _SETUP.format(project=PROJECT)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)


def measure(case: Case, env: dict[str, str], repeats: int) -> dict[str, Any]:
    """One untimed run, then ``repeats`` timed ones; their times and median."""
    case.run(env)
    runs = []
    for _ in range(repeats):
        seconds = case.run(env)
        runs.append(seconds)
        print(f"  {case.name:<8} {seconds:.3f} s", flush=True)
    median = statistics.median(runs)
    return {
        "case": case.name,
        "description": case.description,
        "target": f"median < {case.target_s:g} s",
        "runs_s": runs,
        "median_s": median,
        "min_s": min(runs),
        "max_s": max(runs),
        "passed": median < case.target_s,
    }


def report(entries: list[dict[str, Any]]) -> None:
    table = Table(title="Start-up: the installed inloop command, median of runs (wall time)")
    for column in ("case", "median s", "min s", "max s", "target", "pass"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for entry in entries:
        table.add_row(
            entry["description"],
            f"{entry['median_s']:.3f}",
            f"{entry['min_s']:.3f}",
            f"{entry['max_s']:.3f}",
            entry["target"],
            "[green]yes[/]" if entry["passed"] else "[red]NO[/]",
        )
    console.print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-r", "--repeats", type=int, default=7, help="timed runs per case")
    parser.add_argument("--quick", action="store_true", help="3 timed runs per case")
    parser.add_argument(
        "--only",
        "--case",
        default=",".join(case.name for case in CASES),
        help="comma-separated cases to run (default: all of help,status,server)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    valid = [case.name for case in CASES]
    args.cases = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - set(valid))
    if unknown:
        parser.error(f"--only/--case: unknown case(s) {', '.join(unknown)}; choose from {valid}")
    if args.repeats < 1:
        parser.error(f"--repeats must be an int >= 1. Got {args.repeats}.")
    if args.quick:
        args.repeats = 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not INLOOP.exists():
        raise SystemExit(f"{INLOOP} not found: install inloop into this environment first.")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        home = Path(tmp) / "home"
        console.print(f"Preparing a home with project {PROJECT!r} (untimed) ...")
        prepare_home(home)
        env = _env(home)
        entries = [measure(case, env, args.repeats) for case in CASES if case.name in args.cases]
    report(entries)
    document = {
        "benchmark": "startup",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "options": {"repeats": args.repeats, "cases": args.cases},
        "cases": entries,
        "all_targets_met": all(entry["passed"] for entry in entries),
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"Wrote {RESULTS_PATH.relative_to(HERE.parent)}")
    return 1 if args.strict and not document["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
