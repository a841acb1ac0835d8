"""Labeling part "rest": 20 annotators labeling through the REST API of a real server.

A real ``uvicorn`` process (2 workers) serves ``inloop.web``; 20 annotators,
each with their own token and HTTP connection (asyncio + httpx), do what the
labeling page does: ask ``/next`` for one item, answer it, until the queue is
empty. Reported per database: labels per second, and the checks that matter:
no item lost (every item has a label), none handed to two annotators.

The full run labels 2,000 items on PostgreSQL (127.0.0.1:5432, database
``test``, a schema made for the run and dropped after; ``INLOOP_BENCH_PG_URL``
points elsewhere) and on SQLite; ``--quick`` labels 300 on SQLite.

    python benchmarks/_labeling_rest.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _labeling_queue import _postgres
from rich.table import Table

ANNOTATORS = 20
WORKERS = 2
ITEMS = 2000
QUICK_ITEMS = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "inloop.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "INLOOP_DB_URL": url},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


async def _annotate_all(
    base: str, project: str, tokens: dict[str, str]
) -> tuple[dict[str, list[int]], list[str]]:
    import httpx

    handed: dict[str, list[int]] = {who: [] for who in tokens}
    errors: list[str] = []
    start = asyncio.Event()

    async def annotator(who: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            await start.wait()
            while True:
                response = await http.post(f"/api/projects/{project}/next", json={"n": 1})
                if response.status_code != 200:
                    errors.append(f"{who} next: {response.status_code} {response.text[:200]}")
                    return
                leases = response.json()["leases"]
                if not leases:
                    return
                for lease in leases:
                    item_id = lease["item"]["id"]
                    handed[who].append(item_id)
                    body = {"item_id": item_id, "label": "a", "seconds": 0.0}
                    answer = await http.post(f"/api/projects/{project}/annotations", json=body)
                    if answer.status_code != 201:
                        errors.append(f"{who} answer: {answer.status_code} {answer.text[:200]}")
                        return

    tasks = [asyncio.create_task(annotator(who, token)) for who, token in tokens.items()]
    await asyncio.sleep(0.2)  # every client is waiting at the start line
    start.set()
    await asyncio.gather(*tasks)
    return handed, errors


def _measure(database: str, url: str, n_items: int) -> dict[str, Any]:
    from inloop.label import add_items, create_project, current_labels, list_annotations
    from inloop.store.db import dispose_engines, get_engine
    from inloop.web.auth import create_user

    engine = get_engine(url)
    name = f"rest-{uuid.uuid4().hex[:8]}"
    create_project(name, ["a", "b"], engine=engine)
    add_items(
        name, [{"external_id": str(k), "text": f"item {k}"} for k in range(n_items)], engine=engine
    )
    tokens = {
        f"{name}-a{k:02d}": create_user(f"{name}-a{k:02d}", "annotator", engine=engine)
        for k in range(ANNOTATORS)
    }
    dispose_engines()
    with tempfile.TemporaryDirectory() as tmp:
        process, base = _start_server(url, Path(tmp) / "server.log")
        try:
            began = time.perf_counter()
            handed, errors = asyncio.run(_annotate_all(base, name, tokens))
            seconds = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=30)
    engine = get_engine(url)
    labels = current_labels(name, engine=engine)
    events = list_annotations(name, origins=["human"], engine=engine)
    per_item = Counter(e.item_id for e in events)
    times_handed = Counter(i for ids in handed.values() for i in ids)
    labeled = len(labels)
    result = {
        "database": database,
        "items": n_items,
        "annotators": ANNOTATORS,
        "workers": WORKERS,
        "seconds": seconds,
        "labels": len(events),
        "labels_per_second": len(events) / seconds if seconds else 0.0,
        "items_lost": n_items - labeled,
        "double_assigned": sum(1 for c in times_handed.values() if c > 1),
        "labeled_twice": sum(1 for c in per_item.values() if c > 1),
        "busiest_annotator": max(len(v) for v in handed.values()),
        "idlest_annotator": min(len(v) for v in handed.values()),
        "errors": errors[:5],
    }
    result["passed"] = (
        not errors
        and result["items_lost"] == 0
        and result["double_assigned"] == 0
        and result["labeled_twice"] == 0
    )
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Label ``ITEMS`` (2,000) on PostgreSQL and SQLite, or ``QUICK_ITEMS`` on SQLite."""
    from inloop.settings import reset_settings
    from inloop.store.db import dispose_engines

    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    n_items = QUICK_ITEMS if quick else ITEMS
    with tempfile.TemporaryDirectory() as home:
        saved = {k: os.environ.get(k) for k in ("INLOOP_HOME", "INLOOP_DB_URL")}
        os.environ["INLOOP_HOME"] = home
        os.environ.pop("INLOOP_DB_URL", None)
        reset_settings()
        try:
            if not quick:
                postgres = _postgres()
                if postgres is None:
                    skipped.append("postgresql: no server at 127.0.0.1:5432")
                else:
                    url, drop = postgres
                    try:
                        rows.append(_measure("postgresql", url, n_items))
                    finally:
                        drop()
            rows.append(_measure("sqlite", f"sqlite:///{home}/rest.db", n_items))
        finally:
            dispose_engines()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset_settings()
    return {
        "quick": quick,
        "annotators": ANNOTATORS,
        "workers": WORKERS,
        "rows": rows,
        "skipped": skipped,
        "passed": all(r["passed"] for r in rows),
    }


def table(result: dict[str, Any]) -> Table:
    """One row per database."""
    out = Table(
        title=f"REST labeling: {ANNOTATORS} concurrent annotators, uvicorn with "
        f"{result['workers']} workers"
    )
    for column in (
        "database",
        "items",
        "seconds",
        "labels/s",
        "items lost",
        "double-assigned",
        "labeled twice",
        "per annotator",
        "passed",
    ):
        out.add_column(column, justify="left" if column == "database" else "right")
    for row in result["rows"]:
        out.add_row(
            row["database"],
            str(row["items"]),
            f"{row['seconds']:.1f}",
            f"{row['labels_per_second']:.0f}",
            str(row["items_lost"]),
            str(row["double_assigned"]),
            str(row["labeled_twice"]),
            f"{row['idlest_annotator']}-{row['busiest_annotator']}",
            "yes" if row["passed"] else "NO",
        )
    return out


if __name__ == "__main__":
    import json

    from rich.console import Console

    outcome = run(quick="--quick" in sys.argv)
    Console().print(table(outcome))
    print(json.dumps(outcome, indent=2))
