"""Labeling part "queue": 20 annotators sharing one lease queue, on SQLite and PostgreSQL.

Each annotator is a thread calling the library directly (``next_items`` then
``annotate``, one item at a time, like the labeling page), until the queue is
empty. Reported per database: leases handed out and labels recorded per
second, and the checks that matter: no item lost, none labeled twice.

PostgreSQL is the server at 127.0.0.1:5432, database ``test`` (user ``PGUSER``,
``postgres`` or ``root``), in a schema created for the run and dropped after;
``INLOOP_BENCH_PG_URL`` points elsewhere. Without a server that row is skipped.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from typing import Any

from rich.table import Table

ANNOTATORS = 20


def _postgres() -> tuple[str, Any] | None:
    """A URL confined to a new schema, and a callback dropping it; None without a server."""
    url = os.environ.get("INLOOP_BENCH_PG_URL")
    if url:
        return url, lambda: None
    try:
        import psycopg
    except ImportError:
        return None
    for user in dict.fromkeys(u for u in (os.environ.get("PGUSER"), "postgres", "root") if u):
        try:
            admin = psycopg.connect(
                host="127.0.0.1", dbname="test", user=user, autocommit=True, connect_timeout=3
            )
        except psycopg.Error:
            continue
        schema = f"inloop_bench_{uuid.uuid4().hex[:10]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')

        def drop(admin: Any = admin, schema: str = schema) -> None:
            from inloop.store.db import dispose_engines

            dispose_engines()
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.close()

        return (
            f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
            drop,
        )
    return None


def _measure(url: str, n_items: int, overlap: int) -> dict[str, Any]:
    from inloop.label.annotations import annotate, list_annotations
    from inloop.label.items import add_items
    from inloop.label.projects import create_project
    from inloop.label.queue import next_items, queue_stats
    from inloop.store.db import get_engine

    engine = get_engine(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    create_project(name, ["a", "b"], overlap=overlap, engine=engine)
    add_items(
        name, [{"external_id": str(k), "text": f"item {k}"} for k in range(n_items)], engine=engine
    )
    handed = Counter[str]()
    errors: list[BaseException] = []
    start_line = threading.Barrier(ANNOTATORS + 1)

    def annotator(who: str) -> None:
        try:
            start_line.wait()
            while True:
                leases = next_items(name, who, engine=engine)
                if not leases:
                    if queue_stats(name, engine=engine).labels_needed == 0:
                        return
                    time.sleep(0.005)
                    continue
                handed[who] += len(leases)
                for lease in leases:
                    annotate(name, lease.item_id, who, "a", seconds=0.0, engine=engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=annotator, args=(f"t{k}",)) for k in range(ANNOTATORS)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    events = [e for e in list_annotations(name, engine=engine) if e.label is not None]
    per_item = Counter(e.item_id for e in events)
    per_pair = Counter((e.item_id, e.annotator) for e in events)
    ok = (
        not errors
        and len(per_item) == n_items
        and set(per_item.values()) == {overlap}
        and max(per_pair.values()) == 1
    )
    return {
        "items": n_items,
        "overlap": overlap,
        "annotators": ANNOTATORS,
        "seconds": round(seconds, 3),
        "leases_per_second": round(sum(handed.values()) / seconds, 1),
        "labels_per_second": round(len(events) / seconds, 1),
        "items_lost": n_items - len(per_item),
        "labeled_twice_by_one_person": sum(1 for v in per_pair.values() if v > 1),
        "errors": [repr(e) for e in errors[:3]],
        "passed": ok,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """20 annotator threads labeling the whole queue, on each database, overlap 1 and 2."""
    n_items = 300 if quick else 2000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        sqlite_url = f"sqlite:///{folder}/bench.db"
        results["sqlite"] = {f"overlap_{k}": _measure(sqlite_url, n_items, k) for k in (1, 2)}
    pg = _postgres()
    if pg is None:
        results["postgresql"] = {"skipped": "no PostgreSQL server at 127.0.0.1:5432"}
    else:
        url, drop = pg
        try:
            results["postgresql"] = {f"overlap_{k}": _measure(url, n_items, k) for k in (1, 2)}
        finally:
            drop()
    return results


def table(result: dict[str, Any]) -> Table:
    """One row per database and overlap."""
    out = Table(title=f"Lease queue: {ANNOTATORS} concurrent annotators (library calls)")
    for column in (
        "database",
        "overlap",
        "items",
        "s",
        "leases/s",
        "labels/s",
        "lost",
        "twice by one",
        "ok",
    ):
        out.add_column(column, justify="right" if column not in ("database", "ok") else "left")
    for database, runs in result.items():
        if "skipped" in runs:
            out.add_row(database, "-", "-", "-", "-", "-", "-", "-", runs["skipped"])
            continue
        for row in runs.values():
            out.add_row(
                database,
                str(row["overlap"]),
                str(row["items"]),
                f"{row['seconds']:.2f}",
                f"{row['leases_per_second']:.0f}",
                f"{row['labels_per_second']:.0f}",
                str(row["items_lost"]),
                str(row["labeled_twice_by_one_person"]),
                "yes" if row["passed"] else "NO",
            )
    return out


if __name__ == "__main__":
    import json
    import sys

    from rich.console import Console

    outcome = run(quick="--quick" in sys.argv)
    Console().print(table(outcome))
    print(json.dumps(outcome, indent=2))
