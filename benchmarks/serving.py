"""Serving benchmarks: what inloop's rendezvous costs over the least a server can do.

Two servers, each under uvicorn in its own process (1 worker, loopback,
uvloop when installed, no access log), on the same digits champion:

- the *floor*: one FastAPI route calling the champion's ``predict_proba``,
  loaded as inloop loads it, so both make the same model call
  (``benchmarks/_serving_apps.py``);
- *inloop*: ``inloop.web.create_app(serving=True)`` — auth, the rendezvous
  (champion, a challenger and a canary score every request, all three
  logistic regressions, which inloop scores on its event loop; a
  MajorityClass fallback), the archive with the decoy on. Its predict requests, once their
  token is cached, are answered in front of FastAPI's routing
  (``inloop.web.serving.ArrivalStamp``); the floor's go through it.

A load generator in a third process (``benchmarks/_serving_load.py``) drives
them. The cases, each against the floor:

1. saturation: 32 connections back to back, requests/s, ratio inloop/floor
   (inloop's requests every model scored; it sheds some past saturation);
2. below saturation: open loop at 50 % of inloop's saturation rate, p50/p99
   (target: inloop adds <= 2 ms to p50 and <= 5 ms to p99). In each of its
   runs the two servers take turns in 1 s slices (0.1 s apart), so that the
   seconds-long stalls of a shared VM fall on both alike;
3. overload: open loop at 2x that rate: p50/p99, errors, answered share,
   fallback answers (no target; inloop must not crash; it sheds load: the
   fallback answers requests already past their deadline, and requests that
   reach it 4 deadlines behind are refused, 503 with Retry-After);
4. Redis Streams: the server on Redis with one model worker per core the
   server leaves free (``inloop serve worker``, one here on 2 cores), all on
   this machine, whose saturation is measured first; open loop at case 2's
   rate or half that saturation, whichever is lower, the floor, the
   in-process server and the Redis one taking turns as in case 2. Target:
   the latency Redis Streams adds over the floor is at most 3 ms more than
   case 2 allows in process, so <= 5 ms at p50 and <= 8 ms at p99; how much
   more than in-process it adds is reported beside it, and so is the CPU time
   per request of every process each set-up runs (the load generator's too);
   4b, for comparison only, does the same with 2 workers where that is more;
5. a hung champion (50 ms deadline): every request answered by the canary or
   fallback within deadline + 5 ms, none lost (the first ones at the
   deadline; once the champion's threads have been stuck for longer, it is
   skipped as busy and the canary answers at once). It starts once the
   archive has caught up with case 3's overload;
6. the archive holds every answered request of cases 2 and 5 (and the rest)
   with every model's score;
7. the journal's cost: inloop as in case 2 and a second inloop server with
   the journal off (``INLOOP_ARCHIVE_JOURNAL=false``: answered requests are
   not written to local disk before their answers leave, as before the
   journal) take turns at case 2's rate; p50/p99 and CPU time per request
   (server and archive writer) of each. Target: the journal adds <= 0.3 ms
   to p50.

Prints a table and writes ``benchmarks/results/serving.json``::

    python benchmarks/serving.py                 # full run, about 3 minutes
    python benchmarks/serving.py --quick         # smoke run, about 1 minute
    python benchmarks/serving.py --loop asyncio  # both servers on asyncio's own loop

On uvloop (the default when installed, as under ``inloop server``) a server
at full CPU accepts new connections slowly: in case 3 the load generator's
new connections wait in the listen queue for seconds, which is most of that
case's p99; on asyncio's loop they do not, but cases 2 and 4 run slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine_info, pass_flags
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "serving.json"
DEADLINE_MS = 50
REDIS_URL = os.environ.get("INLOOP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Sizes:
    """How long each case runs (seconds)."""

    saturation: float
    below: float
    overload: float
    hung: float
    generator: float


FULL = Sizes(saturation=8, below=6, overload=5, hung=5, generator=3)
QUICK = Sizes(saturation=3, below=2, overload=2, hung=3, generator=1.5)
#: Cases 2 and 4 run this many times (the servers taking turns in each run); medians compared.
REPEATS = 5


# --- setup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    home: Path
    token: str
    champion: str
    models: dict[str, tuple[str, ...]]  # service -> model refs every request scores
    fallback: str


def _setup(home: Path, suffix: str) -> Setup:
    """Fresh stores in ``home``: digits models, three services, an admin token."""
    os.environ["INLOOP_HOME"] = str(home)
    os.environ.pop("INLOOP_DB_URL", None)
    os.environ.pop("INLOOP_ARTIFACTS_URL", None)
    from _serving_models import CLASSES, hang
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from inloop.serve import create_service, majority_class_from, register
    from inloop.web.auth import create_user

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    champion = register(LogisticRegression(max_iter=2000).fit(X[:1200], y[:1200]), name="digits")
    challenger = register(
        LogisticRegression(C=0.1, max_iter=2000).fit(X[:1200], y[:1200]), name="digits"
    )
    canary = register(LogisticRegression(max_iter=2000).fit(X[:200], y[:200]), name="digits-old")
    fallback = register(majority_class_from(y[:1200]), name="digits-majority")
    hung = register(hang, name="digits-hung", classes=CLASSES)
    base = {
        "challengers": [challenger.ref],
        "canary": canary.ref,
        "fallback": fallback.ref,
        "decoy": True,
        "schedule": {"deadline_ms": DEADLINE_MS},
    }
    services: dict[str, dict[str, Any]] = {
        "bench": {"champion": champion.ref, **base},
        f"bench-redis-{suffix}": {"champion": champion.ref, **base},
        "bench-hung": {**base, "champion": hung.ref, "challengers": [champion.ref]},
    }
    models: dict[str, tuple[str, ...]] = {}
    for name, policy in services.items():
        create_service(name, policy, created_by="bench", reason="benchmark")
        challengers = [str(ref) for ref in policy["challengers"]]
        models[name] = (str(policy["champion"]), *challengers, str(policy["canary"]))
    token = create_user("bench", "admin")
    return Setup(home, token, champion.ref, models, fallback.ref)


# --- processes --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The event loop both servers run on: "auto" (uvloop when installed), "uvloop" or "asyncio".
LOOP = "auto"


def _loop_name() -> str:
    if LOOP != "auto":
        return LOOP
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: The process id of each running server (by base URL) and model worker (by "worker-N").
PIDS: dict[str, int] = {}


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/{pid}/stat`` after the command name (state first); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far; None if it is not here."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_total_s(pids: list[int]) -> float | None:
    """CPU seconds the processes ``pids`` have used so far; None if one of them is not here."""
    total = 0.0
    for pid in pids:
        used = _cpu_s(pid)
        if used is None:
            return None
        total += used
    return total


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (an inloop server's archive writer)."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _children_cpu_s() -> float:
    """CPU seconds used by this process's children that have ended (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _redis_pid() -> int | None:
    """The Redis server's process id, when it runs on this machine (for its CPU time)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        pid = int(client.info("server")["process_id"])
        client.close()
    except Exception:
        return None
    return pid if _cpu_s(pid) is not None else None


@contextmanager
def _server(factory: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``_serving_apps:{factory}`` under uvicorn in its own process; yield its base URL."""
    import httpx

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        f"_serving_apps:{factory}",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        _loop_name(),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{factory} did not start; see {log}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        PIDS[base] = process.pid
        yield base
    finally:
        PIDS.pop(base, None)
        _stop(process)


@contextmanager
def _workers(service: str, count: int, work: Path) -> Iterator[str]:
    """``count`` model worker processes for ``service``; yields how they were started."""
    env = {**os.environ, "INLOOP_STREAM_URL": REDIS_URL, "PYTHONPATH": str(HERE)}
    cli = Path(sys.executable).parent / "inloop"
    processes: list[subprocess.Popen[bytes]] = []
    via = "inloop serve worker"
    try:
        for i in range(count):
            log = work / f"worker-{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(cli), "serve", "worker", service], env=env, stdout=out, stderr=out
                )
            processes.append(process)
        time.sleep(3.0)
        if any(p.poll() is not None for p in processes):
            # The CLI is not there yet (or failed): run the library's worker directly.
            for p in processes:
                _stop(p)
            processes.clear()
            via = "run_worker (inloop serve worker exited: see worker-*.log)"
            for i in range(count):
                log = work / f"worker-fallback-{i}.log"
                with log.open("wb") as out:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, str(HERE / "_serving_apps.py"), "worker", service],
                            env=env,
                            stdout=out,
                            stderr=out,
                        )
                    )
        PIDS.update({f"worker-{i}": p.pid for i, p in enumerate(processes)})
        yield via
    finally:
        for i, p in enumerate(processes):
            PIDS.pop(f"worker-{i}", None)
            _stop(p)


def _load(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run the load generator in its own process on ``spec``; its result."""
    name = uuid.uuid4().hex[:8]
    spec_path, out_path = work / f"load-{name}.json", work / f"load-{name}-out.json"
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, str(HERE / "_serving_load.py"), str(spec_path), str(out_path)],
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


# --- statistics -------------------------------------------------------------------------------


def _summary(result: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
    """Counts and latency percentiles of one load run (latencies of answered requests)."""
    rows = result["rows"]
    answered = [r for r in rows if r[2] == 200]
    latencies = np.array([r[1] for r in answered], dtype=float)
    server = np.array([r[6] for r in answered if r[6] is not None], dtype=float)

    def pct(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 3) if len(values) else None

    out: dict[str, Any] = {
        "sent": len(rows),
        "answered": len(answered),
        "errors": len(rows) - len(answered),
        "statuses": {str(s): sum(1 for r in rows if r[2] == s) for s in {r[2] for r in rows}},
        "answered_share": round(len(answered) / len(rows), 4) if rows else None,
        "fallback_answers": sum(1 for r in answered if r[4]),
        # Answered with less than every model, because the server was behind (inloop sheds).
        "overloaded_answers": sum(1 for r in answered if r[7]),
        "roles": {str(k): sum(1 for r in answered if r[3] == k) for k in {r[3] for r in answered}},
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "max_ms": round(float(latencies.max()), 3) if len(latencies) else None,
        "server_p50_ms": pct(server, 50),
        "server_p99_ms": pct(server, 99),
        "connections": result.get("connections"),
    }
    if seconds is not None:
        out["requests_per_s"] = round(len(answered) / seconds, 1)
        full = len(answered) - out["overloaded_answers"]
        out["fully_served_per_s"] = round(full / seconds, 1)
    if "max_send_lag_ms" in result:
        out["max_send_lag_ms"] = result["max_send_lag_ms"]
    return out


def _ids(result: dict[str, Any]) -> list[str]:
    return [r[5] for r in result["rows"] if r[2] == 200 and r[5]]


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one server as one: median percentiles, summed counts, each run's p50/p99.

    On a 2-core machine shared with the load generator one run's p99 swings by
    milliseconds; the compared servers take turns, and the median of their
    runs is what the table compares.
    """

    def median(key: str) -> float | None:
        values = [run[key] for run in runs if run.get(key) is not None]
        return round(float(np.median(values)), 3) if values else None

    roles: dict[str, int] = {}
    for run in runs:
        for role, n in run["roles"].items():
            roles[role] = roles.get(role, 0) + n
    counts = ("sent", "answered", "errors", "fallback_answers", "overloaded_answers")
    return {
        **{key: sum(run[key] for run in runs) for key in counts},
        "roles": roles,
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max(run["max_ms"] for run in runs if run["max_ms"] is not None),
        "server_p50_ms": median("server_p50_ms"),
        "server_p99_ms": median("server_p99_ms"),
        "runs": [{"p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"]} for run in runs],
    }


def _archive_check(
    service: str, answered: set[str], models: tuple[str, ...], timeout_s: float
) -> dict[str, Any]:
    """Poll the archive until it holds every id of ``answered``, each with every model's score."""
    from sqlalchemy import func, select

    from inloop.serve.archive import count_requests
    from inloop.serve.tables import serve_requests, serve_scores, serve_services
    from inloop.store.db import get_engine

    engine = get_engine()
    started = time.monotonic()
    while True:
        with engine.connect() as conn:
            service_id = conn.execute(
                select(serve_services.c.service_id).where(serve_services.c.name == service)
            ).scalar_one()
            rows = conn.execute(
                select(
                    serve_requests.c.request_id,
                    serve_requests.c.role,
                    serve_requests.c.model,
                    func.count(serve_scores.c.model),
                )
                .select_from(
                    serve_requests.outerjoin(
                        serve_scores, serve_scores.c.request_id == serve_requests.c.request_id
                    )
                )
                .where(serve_requests.c.service_id == service_id)
                .group_by(
                    serve_requests.c.request_id, serve_requests.c.role, serve_requests.c.model
                )
            ).all()
            statuses: dict[str, int] = dict(
                conn.execute(
                    select(serve_scores.c.status, func.count())
                    .select_from(
                        serve_scores.join(
                            serve_requests,
                            serve_scores.c.request_id == serve_requests.c.request_id,
                        )
                    )
                    .where(serve_requests.c.service_id == service_id)
                    .group_by(serve_scores.c.status)
                ).all()
            )
        archived = {r[0] for r in rows}
        missing = answered - archived
        # Each request: a score per live model, plus the fallback's when it answered.
        incomplete = [
            r[0]
            for r in rows
            if r[3]
            != len(models) + (1 if r[1] == "fallback" and r[2] not in (None, *models) else 0)
        ]
        waited = time.monotonic() - started
        if (not missing and not incomplete) or waited > timeout_s:
            break
        time.sleep(0.25)
    return {
        "service": service,
        "answered_tracked": len(answered),
        "count_requests": count_requests(service),
        "missing": len(missing),
        "incomplete_scores": len(incomplete),
        "score_statuses": {str(k): int(v) for k, v in statuses.items()},
        "waited_s": round(waited, 2),
        "pass": not missing and not incomplete,
    }


# --- the run ----------------------------------------------------------------------------------


def run(quick: bool, work: Path, console: Console, diagnose: bool = False) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    suffix = uuid.uuid4().hex[:8]
    home = work / "home"
    setup = _setup(home, suffix)
    redis_service = f"bench-redis-{suffix}"
    body = {"instance": [0.5] * 64}
    auth = {"Authorization": f"Bearer {setup.token}"}
    env = {"INLOOP_HOME": str(home), "INLOOP_BENCH_CHAMPION": setup.champion}
    if diagnose:
        env["INLOOP_BENCH_DIAG"] = str(work / "diagnose.log")
    cases: dict[str, Any] = {}

    def spec(base: str, service: str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
        return {
            "url": f"{base}/v1/services/{service}/predict",
            "body": body,
            "headers": headers,
            "client": "raw",
            **kw,
        }

    def closed(base: str, service: str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
        result = _load(spec(base, service, headers, mode="closed", **kw), work)
        return _summary(result, result["seconds"]) | {"_ids": _ids(result)}

    def open_(base: str, service: str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
        result = _load(spec(base, service, headers, mode="open", **kw), work)
        return _summary(result) | {"_ids": _ids(result)}

    def turns(
        targets: list[tuple[str, str, dict[str, str]]], round_: int, **kw: Any
    ) -> list[dict[str, Any]]:
        """One open-loop run in which ``targets`` (base, service, headers) take turns in slices.

        Round by round, a different target takes the first slice. Summaries in
        ``targets``' order.
        """
        first = round_ % len(targets)
        order = targets[first:] + targets[:first]
        urls = [{"url": f"{b}/v1/services/{s}/predict", "headers": h} for b, s, h in order]
        result = _load({"targets": urls, "body": body, "client": "raw", "mode": "open", **kw}, work)
        summaries = [
            _summary({"rows": rows}) | {"_ids": _ids({"rows": rows})}
            for rows in result["rows_by_target"]
        ]
        return summaries[-first:] + summaries[:-first] if first else summaries

    tracked: dict[str, set[str]] = {"bench": set(), "bench-hung": set(), redis_service: set()}

    def keep(service: str, summary: dict[str, Any]) -> dict[str, Any]:
        tracked[service].update(summary.pop("_ids"))
        return summary

    with (
        _server("floor_app", env, work / "floor.log") as floor,
        _server("inloop_app", env, work / "inloop.log") as inloop,
    ):
        console.print("warm-up ...")
        for base, headers in ((floor, {}), (inloop, auth)):
            closed(base, "bench", headers, connections=4, duration=1.0, warmup=0.5)

        console.print("load generator: raw client vs httpx on the floor ...")
        gen = {
            client: closed(
                floor,
                "bench",
                {},
                connections=32,
                duration=sizes.generator,
                warmup=0.5,
                client=client,
            )
            for client in ("raw", "httpx")
        }
        for summary in gen.values():
            summary.pop("_ids")
        cases["generator"] = gen

        console.print("1. saturation ...")
        sat_floor = closed(floor, "bench", {}, connections=32, duration=sizes.saturation)
        sat_floor.pop("_ids")
        sat_inloop = keep(
            "bench", closed(inloop, "bench", auth, connections=32, duration=sizes.saturation)
        )
        # Requests every model scored: at saturation inloop sheds some (champion or fallback only).
        saturation = float(sat_inloop["fully_served_per_s"])
        cases["saturation"] = {
            "floor": sat_floor,
            "inloop": sat_inloop,
            "ratio": round(saturation / sat_floor["requests_per_s"], 3),
        }

        below_rate = round(0.5 * saturation, 1)
        console.print(f"2. below saturation, {below_rate} requests/s ...")
        floor_runs, inloop_runs = [], []
        for i in range(REPEATS):
            run_floor, run_inloop = turns(
                [(floor, "bench", {}), (inloop, "bench", auth)],
                i,
                rate=below_rate,
                duration=sizes.below,
            )
            run_floor.pop("_ids")
            floor_runs.append(run_floor)
            inloop_runs.append(keep("bench", run_inloop))
        below_floor, below_inloop = _medians(floor_runs), _medians(inloop_runs)
        added_p50 = round(below_inloop["p50_ms"] - below_floor["p50_ms"], 3)
        added_p99 = round(below_inloop["p99_ms"] - below_floor["p99_ms"], 3)
        cases["below"] = {
            "rate": below_rate,
            "floor": below_floor,
            "inloop": below_inloop,
            "added_p50_ms": added_p50,
            "added_p99_ms": added_p99,
            "p50": {"target_ms": 2.0, "pass": added_p50 <= 2.0},
            "p99": {"target_ms": 5.0, "pass": added_p99 <= 5.0},
        }

        over_rate = round(2 * saturation, 1)
        console.print(f"3. overload, {over_rate} requests/s ...")
        over_floor = open_(floor, "bench", {}, rate=over_rate, duration=sizes.overload)
        over_floor.pop("_ids")
        time.sleep(1.0)
        over_inloop = keep(
            "bench", open_(inloop, "bench", auth, rate=over_rate, duration=sizes.overload)
        )
        time.sleep(1.0)
        alive = closed(inloop, "bench", auth, connections=1, duration=0.5, warmup=0.0)
        keep("bench", alive)
        cases["overload"] = {
            "rate": over_rate,
            "floor": over_floor,
            "inloop": over_inloop,
            "inloop_alive_after": alive["answered"] > 0,
            "pass": alive["answered"] > 0,
        }

        # Case 5 is about a hung model, not about catching up after overload: it starts once
        # the archive holds every request so far, and after a quiet second.
        console.print("5. waiting for the archive to catch up ...")
        settled = _archive_check("bench", tracked["bench"], setup.models["bench"], 60.0)
        time.sleep(1.0)
        hung_rate = round(min(100.0, 0.25 * saturation), 1)
        console.print(f"5. hung champion, {hung_rate} requests/s ...")
        hung = keep(
            "bench-hung", open_(inloop, "bench-hung", auth, rate=hung_rate, duration=sizes.hung)
        )
        lost = hung["sent"] - hung["answered"]
        limit = DEADLINE_MS + 5
        cases["hung"] = {
            "rate": hung_rate,
            "deadline_ms": DEADLINE_MS,
            "archive_caught_up_after_s": settled["waited_s"],
            "inloop": hung,
            "lost": lost,
            "pass": lost == 0 and hung["max_ms"] is not None and hung["max_ms"] <= limit,
            "target": f"lost == 0 and max <= {limit} ms",
        }

        workers = _worker_count()
        console.print(f"4. Redis Streams, {workers} worker(s): saturation ...")
        try:
            streams = partial(
                _streams_case, floor, inloop, redis_service, env, auth, below_rate, sizes, work
            )
            cases["streams"] = streams(workers, closed, turns, keep)
            if workers != 2:
                # For comparison, not a target: two workers on this machine's cores.
                console.print("4b. Redis Streams, 2 workers: saturation ...")
                more = streams(2, closed, turns, keep)
                keys = ("rate", "saturation", "workers", "cpu_ms_per_request")
                diffs = [f"{name}_{q}_ms" for name in _DIFFS for q in _QS]
                runs = {name: _runs(more[name]) for name in ("floor", "in_process", "inloop")}
                cases["streams_2_workers"] = {key: more[key] for key in (*keys, *diffs)} | runs
            cases["streams"]["archive"] = _archive_check(
                redis_service, tracked[redis_service], setup.models[redis_service], 30.0
            )
        except Exception as exc:  # Redis down or workers missing: report, keep the other cases
            cases["streams"] = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
        finally:
            _drop_redis_keys(redis_service)

        console.print(f"7. the journal's cost, {below_rate} requests/s ...")
        cases["journal"] = _journal_case(inloop, env, auth, below_rate, sizes, work, turns, keep)

        console.print("6. archive ...")
        cases["archive"] = {
            service: _archive_check(service, tracked[service], setup.models[service], 30.0)
            for service in ("bench", "bench-hung")
        }
    return {"loop": _loop_name(), "rates": {"saturation_inloop": saturation}, "cases": cases}


def _worker_count() -> int:
    """Model workers for case 4: one per core the server leaves free (at least one).

    On a 2-core machine a second worker only adds a process competing for the
    cores the server, Redis and the load generator need: case 4b measures that.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def _runs(summary: dict[str, Any]) -> dict[str, Any]:
    """The percentiles of a :func:`_medians` summary, without its counts."""
    return {key: summary[key] for key in ("p50_ms", "p99_ms", "max_ms", "runs")}


#: Case 4's differences, name -> (server, minus server): Redis Streams over the floor (the
#: target), in-process over the floor, Redis Streams over in-process.
_DIFFS = {
    "added": ("inloop", "floor"),
    "in_process_added": ("in_process", "floor"),
    "more": ("inloop", "in_process"),
}
_QS = ("p50", "p99")
#: Which set-up's answered requests each of case 4's CPU measurements is divided by.
_CPU_OF = {"floor": "floor", "in_process": "in_process", "in_process_archive": "in_process"}
#: The processes of each set-up in case 4's CPU row (the generator is added to each).
_CPU_PARTS = {
    "floor": (("floor", "server"),),
    "in-process": (("in_process", "server"), ("in_process_archive", "archive")),
    "Redis path": (
        ("server", "server"),
        ("archive", "archive"),
        ("workers", "workers"),
        ("redis", "Redis"),
    ),
}
#: Case 4's targets: what case 2 allows in process over the floor, plus 3 ms.
STREAMS_TARGET_MS = {"p50": 2.0 + 3.0, "p99": 5.0 + 3.0}


def _streams_case(
    floor: str,
    inloop: str,
    service: str,
    env: dict[str, str],
    auth: dict[str, str],
    below_rate: float,
    sizes: Sizes,
    work: Path,
    workers: int,
    closed: Any,
    turns: Any,
    keep: Any,
) -> dict[str, Any]:
    """Case 4: Redis Streams with ``workers``, taking turns with the floor and in-process serving.

    The workers share this machine's cores with the server, so the rate is
    case 2's or half the Redis set-up's own saturation, whichever is lower.
    """
    redis_env = {**env, "INLOOP_BENCH_STREAM_URL": REDIS_URL}
    with (
        _workers(service, workers, work) as via,
        _server("inloop_app", redis_env, work / "inloop-redis.log") as streamed,
    ):
        # Wait until the workers answer (the champion, not the fallback).
        ready_by = time.monotonic() + 30
        while time.monotonic() < ready_by:
            probe = keep(
                service, closed(streamed, service, auth, connections=2, duration=1.0, warmup=0.0)
            )
            if probe["roles"].get("champion", 0) > 0.9 * probe["answered"] > 0:
                break
        saturation = keep(
            service, closed(streamed, service, auth, connections=32, duration=sizes.saturation / 2)
        )
        rate = min(below_rate, round(0.5 * float(saturation["fully_served_per_s"]), 1))
        print(f"4. Redis Streams, {rate} requests/s ...", flush=True)
        # CPU per request of every process each set-up runs, to show what the Redis path costs
        # this machine's two cores.
        who = {"floor": [floor], "in_process": [inloop], "server": [streamed]}
        who["workers"] = [name for name in PIDS if name.startswith("worker-")]
        pids = {key: [PIDS[name] for name in names] for key, names in who.items()}
        pids["in_process_archive"] = _children(PIDS[inloop])
        pids["archive"] = _children(PIDS[streamed])
        redis_pid = _redis_pid()
        if redis_pid is not None:
            pids["redis"] = [redis_pid]
        cpu_before = {key: _cpu_total_s(ps) for key, ps in pids.items()}
        generator_before = _children_cpu_s()
        floor_runs, local_runs, streamed_runs = [], [], []
        for i in range(REPEATS):
            floor_run, local_run, streamed_run = turns(
                [(floor, "bench", {}), (inloop, "bench", auth), (streamed, service, auth)],
                i,
                rate=rate,
                duration=sizes.below,
            )
            floor_run.pop("_ids")
            floor_runs.append(floor_run)
            local_runs.append(keep("bench", local_run))
            streamed_runs.append(keep(service, streamed_run))
        cpu_after = {key: _cpu_total_s(ps) for key, ps in pids.items()}
        generator_s = _children_cpu_s() - generator_before
    servers = {
        "floor": _medians(floor_runs),
        "in_process": _medians(local_runs),
        "inloop": _medians(streamed_runs),
    }
    diffs = {
        f"{name}_{q}_ms": round(servers[a][f"{q}_ms"] - servers[b][f"{q}_ms"], 3)
        for name, (a, b) in _DIFFS.items()
        for q in _QS
    }
    cpu_ms: dict[str, float | None] = {}
    for key, before in cpu_before.items():
        after = cpu_after[key]
        requests = servers[_CPU_OF.get(key, "inloop")]["answered"]
        if before is None or after is None:
            cpu_ms[key] = None  # a process ended, or is not on this machine
        else:
            cpu_ms[key] = round(1000.0 * (after - before) / max(requests, 1), 3)
    # One generator drives all three in turns; its cost per request is the same for each.
    sent = sum(server["sent"] for server in servers.values())
    cpu_ms["generator"] = round(1000.0 * generator_s / max(sent, 1), 3)
    return {
        "rate": rate,
        "saturation": saturation["fully_served_per_s"],
        "workers": workers,
        "workers_via": via,
        # CPU ms per answered request of each process: the floor; the in-process server and its
        # archive writer; the Redis path's server, its archive writer, the workers and Redis;
        # the load generator (per request sent, the same for all three).
        "cpu_ms_per_request": cpu_ms,
        **servers,
        **diffs,
        **{
            q: {"target_ms": limit, "pass": diffs[f"added_{q}_ms"] <= limit}
            for q, limit in STREAMS_TARGET_MS.items()
        },
    }


#: Case 7's target: what the journal may add to p50.
JOURNAL_TARGET_MS = 0.3


def _journal_case(
    inloop: str,
    env: dict[str, str],
    auth: dict[str, str],
    rate: float,
    sizes: Sizes,
    work: Path,
    turns: Any,
    keep: Any,
) -> dict[str, Any]:
    """Case 7: inloop with its journal against a second inloop server without, taking turns."""
    off_env = {**env, "INLOOP_ARCHIVE_JOURNAL": "false"}
    with _server("inloop_app", off_env, work / "inloop-no-journal.log") as off:
        turns([(inloop, "bench", auth), (off, "bench", auth)], 0, rate=rate, duration=1.0)
        pids = {"on": [PIDS[inloop], *_children(PIDS[inloop])]}
        pids["off"] = [PIDS[off], *_children(PIDS[off])]
        cpu_before = {key: _cpu_total_s(ps) for key, ps in pids.items()}
        on_runs, off_runs = [], []
        for i in range(REPEATS):
            on_run, off_run = turns(
                [(inloop, "bench", auth), (off, "bench", auth)], i, rate=rate, duration=sizes.below
            )
            on_runs.append(keep("bench", on_run))
            off_runs.append(keep("bench", off_run))
        cpu_after = {key: _cpu_total_s(ps) for key, ps in pids.items()}
    servers = {"journal": _medians(on_runs), "no_journal": _medians(off_runs)}
    cpu_ms: dict[str, float | None] = {}
    for key, name in (("on", "journal"), ("off", "no_journal")):
        before, after = cpu_before[key], cpu_after[key]
        answered = max(servers[name]["answered"], 1)
        cpu_ms[name] = (
            None
            if before is None or after is None
            else round(1000.0 * (after - before) / answered, 3)
        )
    added = {
        q: round(servers["journal"][f"{q}_ms"] - servers["no_journal"][f"{q}_ms"], 3) for q in _QS
    }
    return {
        "rate": rate,
        **servers,
        "added_p50_ms": added["p50"],
        "added_p99_ms": added["p99"],
        # CPU ms per answered request of the server and its archive writer, with and without.
        "cpu_ms_per_request": cpu_ms,
        "p50": {"target_ms": JOURNAL_TARGET_MS, "pass": added["p50"] <= JOURNAL_TARGET_MS},
    }


def _drop_redis_keys(service: str) -> None:
    try:
        import redis

        from inloop.serve.streams import job_key

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.delete(job_key("inloop:serve", service))
        client.close()
    except Exception:
        pass  # nothing to clean when Redis was never reached


# --- report -----------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _flag(ok: Any) -> str:
    return "-" if ok is None else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")


def table(result: dict[str, Any]) -> Table:
    """case | floor | inloop | difference/ratio | target | pass."""
    cases = result["cases"]
    out = Table(title="Serving: inloop against the floor (one uvicorn process each)")
    for column in ("case", "floor", "inloop", "difference / ratio", "target", "pass"):
        out.add_column(column)
    gen = cases.get("generator")
    if gen:
        out.add_row(
            "0. generator on floor, req/s (raw | httpx)",
            f"{gen['raw']['requests_per_s']}",
            f"httpx {gen['httpx']['requests_per_s']}",
            f"x{gen['httpx']['requests_per_s'] / gen['raw']['requests_per_s']:.2f}",
            "-",
            "-",
        )
    sat = cases.get("saturation")
    if sat:
        out.add_row(
            "1. saturation, req/s (32 conn)",
            f"{sat['floor']['requests_per_s']}",
            f"{sat['inloop']['fully_served_per_s']} fully served "
            f"(+{sat['inloop']['requests_per_s'] - sat['inloop']['fully_served_per_s']:.1f} shed)",
            f"x{sat['ratio']}",
            "-",
            "-",
        )
    below = cases.get("below")
    if below:
        for q, target in (("p50", 2.0), ("p99", 5.0)):
            out.add_row(
                f"2. {q} at {below['rate']} req/s",
                _ms(below["floor"][f"{q}_ms"]),
                _ms(below["inloop"][f"{q}_ms"]),
                f"{below[f'added_{q}_ms']:+.2f} ms",
                f"<= +{target:g} ms",
                _flag(below[q]["pass"]),
            )
    over = cases.get("overload")
    if over:
        for q in ("p50", "p99"):
            out.add_row(
                f"3. overload {q} at {over['rate']} req/s",
                _ms(over["floor"][f"{q}_ms"]),
                _ms(over["inloop"][f"{q}_ms"]),
                f"{over['inloop'][f'{q}_ms'] - over['floor'][f'{q}_ms']:+.1f} ms",
                "-",
                "-",
            )
        f, i = over["floor"], over["inloop"]
        out.add_row(
            "3. overload answered / errors (503 refused) / fallback",
            f"{f['answered_share']:.1%} / {f['errors']}",
            f"{i['answered_share']:.1%} / {i['errors']} ({i['statuses'].get('503', 0)})"
            f" / {i['fallback_answers']}",
            "-",
            "alive after",
            _flag(over["pass"]),
        )
    streams = cases.get("streams")
    if streams and "error" not in streams:
        _streams_rows(out, "4.", streams, targeted=True)
    elif streams:
        out.add_row("4. Redis Streams", "-", streams["error"][:60], "-", "-", _flag(False))
    if cases.get("streams_2_workers"):
        _streams_rows(out, "4b.", cases["streams_2_workers"], targeted=False)
    hung = cases.get("hung")
    if hung:
        h = hung["inloop"]
        out.add_row(
            f"5. hung champion at {hung['rate']} req/s: lost, p99, max",
            "-",
            f"{hung['lost']} lost, {_ms(h['p99_ms'])}, {_ms(h['max_ms'])}",
            f"{h['fallback_answers']} fallback, {h['roles']}",
            hung["target"],
            _flag(hung["pass"]),
        )
    journal = cases.get("journal")
    if journal:
        cpu = journal["cpu_ms_per_request"]
        for q in _QS:
            out.add_row(
                f"7. journal {q} at {journal['rate']} req/s (floor: inloop without it)",
                _ms(journal["no_journal"][f"{q}_ms"]),
                _ms(journal["journal"][f"{q}_ms"]),
                f"{journal[f'added_{q}_ms']:+.2f} ms",
                f"<= +{JOURNAL_TARGET_MS:g} ms" if q == "p50" else "-",
                _flag(journal["p50"]["pass"]) if q == "p50" else "-",
            )
        out.add_row(
            "7. journal: CPU per request, server + archive writer",
            _ms(cpu.get("no_journal")),
            _ms(cpu.get("journal")),
            "-",
            "-",
            "-",
        )
    for service, check in cases.get("archive", {}).items():
        out.add_row(
            f"6. archive '{service}'",
            "-",
            f"{check['count_requests']} archived, {check['answered_tracked']} tracked",
            f"{check['missing']} missing, {check['incomplete_scores']} incomplete",
            "complete",
            _flag(check["pass"]),
        )
    return out


def _streams_rows(out: Table, label: str, streams: dict[str, Any], *, targeted: bool) -> None:
    """Case 4's rows (4b's without a target): Redis Streams over the floor, p50 and p99.

    The difference column also gives in-process over the floor and Redis over in-process.
    """
    for q in _QS:
        out.add_row(
            f"{label} Redis Streams, {streams['workers']} worker(s), {q} at {streams['rate']} "
            "req/s",
            _ms(streams["floor"][f"{q}_ms"]),
            f"{_ms(streams['inloop'][f'{q}_ms'])} (in-process "
            f"{_ms(streams['in_process'][f'{q}_ms'])})",
            f"{streams[f'added_{q}_ms']:+.2f} ms (in-process "
            f"{streams[f'in_process_added_{q}_ms']:+.2f}; Redis over it "
            f"{streams[f'more_{q}_ms']:+.2f})",
            f"<= +{STREAMS_TARGET_MS[q]:g} ms" if targeted else "-",
            _flag(streams[q]["pass"]) if targeted else "-",
        )
    cpu = streams.get("cpu_ms_per_request")
    if cpu:
        cells = {name: _cpu_cell(cpu, parts) for name, parts in _CPU_PARTS.items()}
        out.add_row(
            f"{label} CPU per request, every process (load generator "
            f"{_ms(cpu.get('generator'))} included)",
            cells["floor"],
            f"in-process: {cells['in-process']}",
            f"Redis path: {cells['Redis path']}",
            "-",
            "-",
        )


def _cpu_cell(cpu: dict[str, float | None], parts: tuple[tuple[str, str], ...]) -> str:
    """One set-up's CPU per request: its processes, and their sum with the load generator."""
    values = [cpu.get(key) for key, _ in parts] + [cpu.get("generator")]
    shown = " + ".join(f"{label} {_ms(cpu.get(key))}" for key, label in parts)
    if any(value is None for value in values):
        return shown  # a process was not measured: no total
    return f"{shown} = {sum(v for v in values if v is not None):.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="log inloop's event-loop stalls (every thread's stack) and long GC pauses to "
        "diagnose.log in the kept scratch folder (adds a little overhead)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default=LOOP,
        help="the servers' event loop (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    args.keep = args.keep or args.diagnose
    globals()["LOOP"] = args.loop
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="inloop-bench-serving-"))
    started = time.perf_counter()
    try:
        result = run(args.quick, work, console, diagnose=args.diagnose)
    finally:
        if args.keep:
            console.print(f"Scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "serving",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        **result,
    }
    console.print(table(report))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"Wrote {RESULTS_PATH.relative_to(HERE.parent)} in {report['seconds']} s")
    flags = pass_flags(report["cases"])
    return 1 if args.strict and not all(flags) else 0


if __name__ == "__main__":
    sys.exit(main())
