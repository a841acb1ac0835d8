"""inloop's flow runtime against Metaflow's local runtime: same flows, same machine, same run.

The flows in ``benchmarks/flows/`` are written once, for Metaflow. For inloop
this script rewrites only their ``from metaflow import ...`` line to
``from inloop import ...`` (into ``benchmarks/.work/``): that a flow runs after
that one change is the compatibility claim being measured alongside speed.

Metaflow is installed into its own virtual environment,
``benchmarks/.venv-metaflow``, the first time this runs; it is never a
dependency of inloop. Every run uses ``--max-workers 2`` and a fresh temporary
folder for its state (``INLOOP_HOME`` for inloop, the local datastore for
Metaflow).

Cases:

* ``foreach``: a foreach over 1,000 trivial tasks and a join (target: 30x faster);
* ``linear``: five trivial steps in a line, in a state folder that already holds
  a run, so the database exists (target: 3x faster);
* ``linear-fresh``: the same flow's first run in a fresh state folder (a new
  ``INLOOP_HOME``: the run creates the database; target: 2x faster);
* ``array``: a 100 MiB numpy array stored by one step and loaded by the next
  (target: 5x faster, peak RSS of the largest process under 2x the array);
  plus a run that stores the array twice, whose artifact folder must hold it once.

Times are end-to-end wall times of the flow command, best of ``--repeats``
runs (a side stops repeating a case once it has spent a minute on it). Every
run gets a fresh temporary state folder; a warm case first runs the flow there
once, untimed. The
table is printed and everything is written to ``benchmarks/results/flows.json``.

    python benchmarks/flows.py            # the full comparison (about 3 minutes)
    python benchmarks/flows.py --quick    # one run per case
    python benchmarks/flows.py --side inloop --only linear,array
    python benchmarks/flows.py --only linear-fresh      # one case alone, both sides
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import machine_info
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
FLOWS_DIR = HERE / "flows"
WORK_DIR = HERE / ".work"
RESULTS_PATH = HERE / "results" / "flows.json"
METAFLOW_VENV = HERE / ".venv-metaflow"
MEASURE = HERE / "_measure.py"

MIB = 1024 * 1024
ARRAY_MB = 100
RUN_ARGS = ["run", "--max-workers", "2", "--max-num-splits", "1000"]
REPEAT_BUDGET_S = 60.0  # stop repeating a case on one side once it has taken this long
RUN_TIMEOUT_S = 900.0
SIDES = ("metaflow", "inloop")
IMPORT_LINE = re.compile(r"^from metaflow import (?P<names>.+)$", re.MULTILINE)

console = Console(width=max(100, Console().width))


@dataclass(frozen=True)
class Case:
    """One timed comparison: a flow file, its arguments and the speed-up inloop must reach."""

    name: str
    flow_file: str
    flow_class: str
    description: str
    target_ratio: float
    args: tuple[str, ...] = ()
    sample_memory: bool = False
    warm: bool = False  # run once, untimed, in the same state folder first


CASES = (
    Case("foreach", "foreach_flow.py", "ForeachFlow", "foreach, 1,000 tasks + join", 30),
    Case("linear", "linear_flow.py", "LinearFlow", "linear, 5 steps", 3, warm=True),
    Case(
        "linear-fresh", "linear_flow.py", "LinearFlow",
        "linear, 5 steps, first run in a fresh home", 2,
    ),
    Case(
        "array", "array_flow.py", "ArrayFlow",
        f"{ARRAY_MB} MiB array, store + load", 5,
        sample_memory=True,
    ),
)  # fmt: skip
# Extra single runs of the array flow: a baseline without the array, and the array stored twice.
BASELINE = Case("array-baseline", "array_flow.py", "ArrayFlow", "no array", 0, ("--mb", "0"), True)
TWICE = Case("array-twice", "array_flow.py", "ArrayFlow", "stored twice", 0, ("--copies", "2"))


@dataclass
class RunResult:
    """What one run of a flow command measured."""

    seconds: float
    returncode: int
    peak_rss_bytes: int
    sampled_peak_rss_bytes: int | None
    artifact_bytes: int
    timed_out: bool = False
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass
class SideResult:
    """All runs of one case on one side."""

    runs: list[RunResult] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        failed = [run for run in self.runs if not run.ok]
        if not failed:
            return None
        run = failed[0]
        what = "timed out" if run.timed_out else f"exited with {run.returncode}"
        return f"{what}; log ends with:\n{run.log_tail}"

    @property
    def best(self) -> RunResult | None:
        good = [run for run in self.runs if run.ok]
        return min(good, key=lambda run: run.seconds) if good else None


# --- the two runtimes ----------------------------------------------------------------------------


class Side:
    """How to run a flow file with one runtime."""

    name: str
    python: Path

    def flow_path(self, case: Case) -> Path:
        raise NotImplementedError

    def command(self, case: Case) -> list[str]:
        raise NotImplementedError

    def env(self, state: Path) -> dict[str, str]:
        raise NotImplementedError

    def artifact_dir(self, state: Path, case: Case) -> Path:
        raise NotImplementedError


def _base_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INLOOP_", "METAFLOW_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["USERNAME"] = "bench"
    return env


class MetaflowSide(Side):
    """Metaflow's local runtime, from its own virtual environment."""

    name = "metaflow"
    python = METAFLOW_VENV / "bin" / "python"

    def flow_path(self, case: Case) -> Path:
        return FLOWS_DIR / case.flow_file

    def command(self, case: Case) -> list[str]:
        # --no-pylint: Metaflow would otherwise lint the file first when pylint is installed.
        return [str(self.python), str(self.flow_path(case)), "--no-pylint", *RUN_ARGS, *case.args]

    def env(self, state: Path) -> dict[str, str]:
        env = _base_env()
        env.update(
            METAFLOW_HOME=str(state / "config"),
            METAFLOW_DEFAULT_DATASTORE="local",
            METAFLOW_DEFAULT_METADATA="local",
            METAFLOW_DATASTORE_SYSROOT_LOCAL=str(state / "datastore"),
        )
        return env

    def artifact_dir(self, state: Path, case: Case) -> Path:
        return state / "datastore" / ".metaflow" / case.flow_class / "data"


class InloopSide(Side):
    """inloop's runtime, from the interpreter running this benchmark."""

    name = "inloop"
    python = Path(sys.executable)

    def flow_path(self, case: Case) -> Path:
        return WORK_DIR / case.flow_file

    def command(self, case: Case) -> list[str]:
        return [str(self.python), str(self.flow_path(case)), *RUN_ARGS, *case.args]

    def env(self, state: Path) -> dict[str, str]:
        env = _base_env()
        env["INLOOP_HOME"] = str(state / "home")
        return env

    def artifact_dir(self, state: Path, case: Case) -> Path:
        return state / "home" / "artifacts"


def ensure_metaflow() -> None:
    """Create benchmarks/.venv-metaflow with Metaflow and numpy unless it already works."""
    python = MetaflowSide.python
    check = [str(python), "-c", "import metaflow, numpy"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    console.print(f"Installing Metaflow into {METAFLOW_VENV} (once) ...")
    subprocess.run([sys.executable, "-m", "venv", str(METAFLOW_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "metaflow", "numpy"], check=True)


def write_inloop_flows() -> None:
    """Copy each Metaflow flow into .work/, changing only its import line."""
    WORK_DIR.mkdir(exist_ok=True)
    for source in sorted(FLOWS_DIR.glob("*.py")):
        text = source.read_text()
        converted, count = IMPORT_LINE.subn(r"from inloop import \g<names>", text)
        if count != 1:
            raise SystemExit(f"{source}: expected one 'from metaflow import' line, found {count}")
        (WORK_DIR / source.name).write_text(converted)


# --- measuring ------------------------------------------------------------------------------------


def folder_bytes(path: Path) -> int:
    """Total size of the regular files under path (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def run_once(side: Side, case: Case) -> RunResult:
    """Run the case's flow once in a fresh state folder, through the measuring wrapper.

    A warm case runs the flow there once before, untimed (a failure then shows
    in the timed run).
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{side.name}-") as tmp:
        state = Path(tmp)
        result_path, log_path = state / "result.json", state / "log.txt"
        if case.warm:
            subprocess.run(side.command(case), env=side.env(state), cwd=state, capture_output=True)
        wrapper = [
            sys.executable, str(MEASURE), str(result_path), str(log_path), str(RUN_TIMEOUT_S),
            "1" if case.sample_memory else "0", "--", *side.command(case),
        ]  # fmt: skip
        subprocess.run(wrapper, env=side.env(state), cwd=state, check=True)
        measured = json.loads(result_path.read_text())
        log = log_path.read_text(errors="replace").splitlines()
        return RunResult(
            seconds=measured["seconds"],
            returncode=measured["returncode"],
            timed_out=measured["timed_out"],
            peak_rss_bytes=measured["peak_rss_bytes"],
            sampled_peak_rss_bytes=measured["sampled_peak_rss_bytes"],
            artifact_bytes=folder_bytes(side.artifact_dir(state, case)),
            log_tail="\n".join(log[-25:]),
        )


def run_case(side: Side, case: Case, repeats: int) -> SideResult:
    """Best-of-N runs of one case; stops early on a failure or once the time budget is spent."""
    result = SideResult()
    spent = 0.0
    for _ in range(repeats):
        run = run_once(side, case)
        result.runs.append(run)
        spent += run.seconds
        status = f"{run.seconds:.2f} s" if run.ok else "FAILED"
        print(f"  {side.name:<8} {case.name:<15} {status}", flush=True)
        if not run.ok or spent >= REPEAT_BUDGET_S:
            break
    return result


# --- reporting ------------------------------------------------------------------------------------


def _version(python: Path, module: str) -> str | None:
    code = f"import {module}; print({module}.__version__)"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def versions() -> dict[str, str | None]:
    return {
        "inloop": _version(InloopSide.python, "inloop"),
        "metaflow": _version(MetaflowSide.python, "metaflow"),
        "numpy_inloop_env": _version(InloopSide.python, "numpy"),
        "numpy_metaflow_env": _version(MetaflowSide.python, "numpy"),
    }


def _ratio(results: dict[str, SideResult]) -> float | None:
    mf, il = results.get("metaflow"), results.get("inloop")
    if mf is None or il is None or mf.best is None or il.best is None:
        return None
    return mf.best.seconds / il.best.seconds


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _verdict(ok: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]NO[/]", None: "-"}[ok]


def _largest(result: SideResult | None, attr: str) -> int | None:
    """The largest value of a RunResult field over the successful runs (None if there are none)."""
    if result is None:
        return None
    values = [getattr(run, attr) for run in result.runs if run.ok]
    values = [value for value in values if value is not None]
    return max(values) if values else None


def speed_report(timed: dict[str, dict[str, SideResult]]) -> list[dict[str, Any]]:
    """Print the timing table; return one JSON entry per case."""
    table = Table(title="Flows: Metaflow local runtime vs inloop (--max-workers 2)")
    for column in ("case", "metaflow s", "inloop s", "ratio", "target", "pass"):
        table.add_column(column, justify="left" if column == "case" else "right")
    entries: list[dict[str, Any]] = []
    for case in CASES:
        if case.name not in timed:
            continue
        results = timed[case.name]
        ratio = _ratio(results)
        met = None if ratio is None else ratio >= case.target_ratio
        mf, il = results.get("metaflow"), results.get("inloop")
        table.add_row(
            case.description,
            _fmt(mf.best.seconds if mf and mf.best else None, ".2f"),
            _fmt(il.best.seconds if il and il.best else None, ".3f"),
            _fmt(ratio, ".1f", "x"),
            f">= {case.target_ratio:g}x",
            _verdict(met),
        )
        entries.append(
            {
                "case": case.name,
                "description": case.description,
                "target": f">= {case.target_ratio:g}x",
                "ratio": ratio,
                "passed": met,
                **{name: _side_json(result) for name, result in results.items()},
            }
        )
    console.print(table)
    return entries


def memory_report(
    array: dict[str, SideResult], extra: dict[str, dict[str, SideResult]]
) -> list[dict[str, Any]]:
    """Print peak memory and stored size of the array case; return one JSON entry per measure."""
    array_bytes = ARRAY_MB * MIB
    baseline, twice = extra.get(BASELINE.name, {}), extra.get(TWICE.name, {})
    raw = {
        "peak": {s: _largest(array.get(s), "peak_rss_bytes") for s in SIDES},
        "sampled": {s: _largest(array.get(s), "sampled_peak_rss_bytes") for s in SIDES},
        "baseline": {s: _largest(baseline.get(s), "peak_rss_bytes") for s in SIDES},
        "once": {s: _largest(array.get(s), "artifact_bytes") for s in SIDES},
        "twice": {s: _largest(twice.get(s), "artifact_bytes") for s in SIDES},
    }

    def relative(name: str, minus: str | None = None) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for side in SIDES:
            value = raw[name][side]
            offset = raw[minus][side] if minus else 0
            out[side] = None if value is None or offset is None else (value - offset) / array_bytes
        return out

    # (measure, values relative to the array, target text, inloop passes when below this limit)
    rows: list[tuple[str, dict[str, float | None], str, float | None]] = [
        ("peak RSS / array", relative("peak"), "< 2x", 2.0),
        # Rough: the largest process of the two runs need not be the same one.
        ("peak RSS above no-array run / array", relative("peak", "baseline"), "", None),
        ("stored bytes, array once / array", relative("once"), "", None),
        ("stored bytes, array twice / array", relative("twice"), "stored once", 1.5),
    ]
    table = Table(title=f"Artifacts: a {ARRAY_MB} MiB numpy array (largest process of a run)")
    for column in ("measure", "metaflow", "inloop", "target", "pass"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    entries: list[dict[str, Any]] = []
    for label, values, target, limit in rows:
        inloop_value = values["inloop"]
        met = None if limit is None or inloop_value is None else inloop_value < limit
        table.add_row(
            label,
            _fmt(values["metaflow"], ".2f", "x"),
            _fmt(inloop_value, ".2f", "x"),
            target,
            _verdict(met) if limit is not None else "",
        )
        entries.append({"measure": label, **values, "target": target or None, "passed": met})
    console.print(table)
    console.print(
        "Peak RSS in MiB, getrusage / sampled with psutil (no-array run): "
        + "; ".join(
            f"{side} {_fmt(_mib(raw['peak'][side]), '.0f')} / "
            f"{_fmt(_mib(raw['sampled'][side]), '.0f')} "
            f"({_fmt(_mib(raw['baseline'][side]), '.0f')})"
            for side in SIDES
        )
    )
    entries.append({"measure": "raw bytes", "array_bytes": array_bytes, **raw})
    return entries


def report(
    timed: dict[str, dict[str, SideResult]],
    extra: dict[str, dict[str, SideResult]],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Print the tables and build the JSON document."""
    cases = speed_report(timed)
    memory = memory_report(timed["array"], extra) if "array" in timed else []
    verdicts = [entry["passed"] for entry in (*cases, *memory) if entry.get("target")]
    return {
        "benchmark": "flows",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "options": options,
        "cases": cases,
        "array_memory_and_space": memory,
        "extra_runs": {
            name: {side: _side_json(result) for side, result in by_side.items()}
            for name, by_side in extra.items()
        },
        "all_targets_met": all(verdict is True for verdict in verdicts),
    }


def keep_other_cases(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the cases this run skipped (``--only``) copied from the JSON file.

    A copied case keeps the ``measured_at`` time of its own run, and the
    verdict covers every case in the file.
    """
    try:
        previous = json.loads(RESULTS_PATH.read_text())
    except (OSError, ValueError):
        return document
    run = {entry["case"] for entry in document["cases"]}
    for entry in document["cases"]:
        entry["measured_at"] = document["created_at"]
    kept = [
        {"measured_at": previous.get("created_at"), **entry}
        for entry in previous.get("cases", [])
        if isinstance(entry, dict) and entry.get("case") not in run
    ]
    order = {case.name: i for i, case in enumerate(CASES)}
    document["cases"] = sorted(
        [*document["cases"], *kept], key=lambda entry: order.get(entry["case"], len(order))
    )
    if not document["array_memory_and_space"] and "array" not in run:
        document["array_memory_and_space"] = previous.get("array_memory_and_space", [])
        document["extra_runs"] = previous.get("extra_runs", document["extra_runs"])
    verdicts = [
        entry.get("passed")
        for entry in (*document["cases"], *document["array_memory_and_space"])
        if entry.get("target")
    ]
    document["all_targets_met"] = all(verdict is True for verdict in verdicts)
    return document


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _side_json(result: SideResult) -> dict[str, Any]:
    best = result.best
    return {
        "best_s": best.seconds if best else None,
        "runs_s": [run.seconds for run in result.runs],
        "peak_rss_bytes": [run.peak_rss_bytes for run in result.runs],
        "sampled_peak_rss_bytes": [run.sampled_peak_rss_bytes for run in result.runs],
        "artifact_bytes": [run.artifact_bytes for run in result.runs],
        "error": result.error,
    }


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per case (same as -r 1)")
    parser.add_argument("-r", "--repeats", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument(
        "--only",
        "--case",
        default=",".join(case.name for case in CASES),
        help="comma-separated cases to run (default: all of foreach,linear,linear-fresh,array)",
    )
    parser.add_argument(
        "--side", choices=("both", *SIDES), default="both", help="run one runtime only"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    valid = {case.name for case in CASES}
    args.cases = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - valid)
    if unknown:
        parser.error(
            f"--only/--case: unknown case(s) {', '.join(unknown)}; choose from {sorted(valid)}"
        )
    if args.repeats < 1:
        parser.error(f"--repeats must be an int >= 1. Got {args.repeats}.")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides: list[Side] = []
    if args.side in ("both", "metaflow"):
        ensure_metaflow()
        sides.append(MetaflowSide())
    if args.side in ("both", "inloop"):
        write_inloop_flows()
        sides.append(InloopSide())

    # One untimed run per side warms bytecode caches and the page cache.
    warm = next(case for case in CASES if case.name == "linear")
    for side in sides:
        run_once(side, warm)

    timed: dict[str, dict[str, SideResult]] = {}
    extra: dict[str, dict[str, SideResult]] = {}
    failed = False
    for case in CASES:
        if case.name not in args.cases:
            continue
        timed[case.name] = {side.name: run_case(side, case, args.repeats) for side in sides}
        if case.name == "array":
            for single in (BASELINE, TWICE):
                extra[single.name] = {side.name: run_case(side, single, 1) for side in sides}
    for by_side in (*timed.values(), *extra.values()):
        for name, result in by_side.items():
            if result.error:
                failed = True
                console.print(f"[red]{name} failed[/]: {result.error}")

    options = {
        "repeats": args.repeats,
        "cases": args.cases,
        "sides": [side.name for side in sides],
        "run_args": RUN_ARGS,
        "repeat_budget_s": REPEAT_BUDGET_S,
    }
    document = keep_other_cases(report(timed, extra, options))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"Wrote {RESULTS_PATH.relative_to(HERE.parent)}")
    if failed:
        return 1
    return 1 if args.strict and not document["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
