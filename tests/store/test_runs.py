"""RunStore against SQLite and PostgreSQL: runs, tags, tasks, artifacts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from inloop.errors import StoreError
from inloop.store.db import get_engine
from inloop.store.runs import ArtifactRecord, RunRecord, RunStore, TaskRecord

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> RunStore:
    return RunStore(get_engine(db_url))


@pytest.fixture
def select_count(store: RunStore) -> Iterator[list[str]]:
    """SELECT statements the store's engine sends while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def task(run_id: int, task_id: int, step: str = "train", **changes: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "task_id": task_id,
        "step_name": step,
        "status": "succeeded",
        "attempt": 0,
        "foreach_stack": [{"step": "start", "var": "xs", "index": task_id, "num_splits": 3}],
        "input_task_ids": [0],
        "transition": {"type": "linear", "next": ["join"]},
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=2),
        "stdout_key": "a" * 64,
        "stderr_key": None,
        "error": None,
        "cloned_from": None,
    }
    values.update(changes)
    return TaskRecord(**values)


def artifact(run_id: int, task_id: int, name: str, key: str = "k" * 64) -> ArtifactRecord:
    return ArtifactRecord(run_id, task_id, name, key, 42)


# -- runs -----------------------------------------------------------------------------------


def test_create_and_get_run(store: RunStore) -> None:
    before = datetime.now(UTC)
    run = store.create_run(
        "TrainFlow",
        "ana",
        tags=["baseline", "user:ana"],
        system_tags=["user:ana", "runtime:local"],
        parameters={"alpha": 0.5, "layers": [1, 2], "name": "x"},
        executor="dask",
        host="box",
    )
    assert run.run_id == 1
    assert run.status == "running" and run.finished_at is None and run.error is None
    assert before <= run.created_at <= datetime.now(UTC)
    assert run.created_at.tzinfo == UTC and run.heartbeat_at == run.created_at
    assert run.tags == {"baseline"}  # a tag given as both stays a system tag
    assert run.system_tags == {"user:ana", "runtime:local"}
    assert run.all_tags == {"baseline", "user:ana", "runtime:local"}
    assert store.get_run(run.run_id) == run
    assert store.get_run(run.run_id, "TrainFlow") == run
    assert store.get_run(run.run_id, "OtherFlow") is None
    assert store.get_run(999) is None


def test_run_defaults(store: RunStore) -> None:
    import socket

    run = store.create_run("F", "bob")
    assert run.parameters == {} and run.tags == frozenset() and run.system_tags == frozenset()
    assert run.executor == "local" and run.host == socket.gethostname()
    assert run.origin_run_id is None
    resumed = store.create_run("F", "bob", origin_run_id=run.run_id)
    assert store.get_run(resumed.run_id) == resumed
    assert resumed.origin_run_id == run.run_id


def test_run_ids_increase(store: RunStore) -> None:
    ids = [store.create_run("F", "ana").run_id for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_parameters_must_be_json(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"\['blob'\].*JSON"):
        store.create_run("F", "ana", parameters={"ok": 1, "blob": object()})
    assert store.list_runs() == []


@pytest.mark.parametrize("bad", ["", None, "x" * 256])
def test_flow_name_is_checked(store: RunStore, bad: Any) -> None:
    with pytest.raises(StoreError, match="flow name"):
        store.create_run(bad, "ana")


def test_finish_run(store: RunStore) -> None:
    run = store.create_run("F", "ana")
    store.finish_run(run.run_id, "failed", error="ValueError: boom")
    done = store.get_run(run.run_id)
    assert done is not None
    assert done.status == "failed" and done.error == "ValueError: boom"
    assert done.finished_at is not None and done.finished_at >= run.created_at


@pytest.mark.parametrize("status", ["running", "done", "SUCCEEDED"])
def test_finish_run_rejects_bad_status(store: RunStore, status: str) -> None:
    run = store.create_run("F", "ana")
    with pytest.raises(StoreError, match=f"'{status}'.*'succeeded' or 'failed'"):
        store.finish_run(run.run_id, status)
    assert store.get_run(run.run_id).status == "running"  # type: ignore[union-attr]


def test_missing_run_is_an_error_for_writes(store: RunStore) -> None:
    with pytest.raises(StoreError, match="No run with id 41"):
        store.finish_run(41, "succeeded")
    with pytest.raises(StoreError, match="No run with id 41"):
        store.heartbeat(41)
    with pytest.raises(StoreError, match="No run with id 41"):
        store.add_tags(41, ["x"])


def test_heartbeat_moves_forward(store: RunStore) -> None:
    run = store.create_run("F", "ana")
    time.sleep(0.01)
    store.heartbeat(run.run_id)
    later = store.get_run(run.run_id)
    assert later is not None and later.heartbeat_at > run.heartbeat_at
    assert later.created_at == run.created_at


# -- listing --------------------------------------------------------------------------------


def test_list_runs_filters_and_orders(store: RunStore) -> None:
    a1 = store.create_run("A", "ana", tags=["x", "y"], system_tags=["user:ana"])
    b1 = store.create_run("B", "bob", tags=["x"], system_tags=["user:bob"])
    a2 = store.create_run("A", "bob", tags=["y"], system_tags=["user:bob"])
    store.finish_run(a1.run_id, "succeeded")

    assert [r.run_id for r in store.list_runs()] == [a2.run_id, b1.run_id, a1.run_id]
    assert [r.run_id for r in store.list_runs("A")] == [a2.run_id, a1.run_id]
    assert [r.run_id for r in store.list_runs(tags=["x"])] == [b1.run_id, a1.run_id]
    assert [r.run_id for r in store.list_runs(tags=["x", "y"])] == [a1.run_id]
    assert [r.run_id for r in store.list_runs(tags=["user:bob", "y"])] == [a2.run_id]
    assert [r.run_id for r in store.list_runs("B", tags=["y"])] == []
    assert [r.run_id for r in store.list_runs(status="succeeded")] == [a1.run_id]
    assert [r.run_id for r in store.list_runs(status="running", limit=1)] == [a2.run_id]
    assert store.list_runs(limit=0) == []
    listed = store.list_runs("A")[1]
    assert listed.status == "succeeded"
    assert listed.tags == {"x", "y"} and listed.system_tags == {"user:ana"}
    assert store.list_flows() == ["A", "B"]


def test_list_runs_checks_arguments(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"'done'.*running, succeeded, failed"):
        store.list_runs(status="done")
    with pytest.raises(StoreError, match="limit"):
        store.list_runs(limit=-1)
    with pytest.raises(StoreError, match=r"not the string 'x'.*\['x'\]"):
        store.list_runs(tags="x")


def test_tags_of_many_runs_are_read_in_one_query(store: RunStore, select_count: list[str]) -> None:
    for i in range(30):
        store.create_run("F", "ana", tags=[f"t{i}", "all"], system_tags=["user:ana"])
    select_count.clear()
    listed = store.list_runs("F", tags=["all"], limit=20)
    assert len(listed) == 20
    assert listed[0].tags == {"t29", "all"} and listed[-1].tags == {"t10", "all"}
    assert len(select_count) == 2  # the runs, then all their tags


# -- tags -----------------------------------------------------------------------------------


def test_add_and_remove_tags(store: RunStore) -> None:
    run = store.create_run("F", "ana", tags=["a"], system_tags=["user:ana"])
    store.add_tags(run.run_id, ["b", "a", "user:ana", "b"])
    got = store.get_run(run.run_id)
    assert got is not None and got.tags == {"a", "b"} and got.system_tags == {"user:ana"}
    store.remove_tags(run.run_id, ["a", "never-there"])
    got = store.get_run(run.run_id)
    assert got is not None and got.tags == {"b"}
    store.remove_tags(run.run_id, [])


def test_system_tags_cannot_be_removed(store: RunStore) -> None:
    run = store.create_run("F", "ana", tags=["a"], system_tags=["user:ana"])
    with pytest.raises(StoreError, match=r"\['user:ana'\].*system tags"):
        store.remove_tags(run.run_id, ["a", "user:ana"])
    got = store.get_run(run.run_id)
    assert got is not None and got.all_tags == {"a", "user:ana"}  # nothing changed


@pytest.mark.parametrize("bad", ["", "   ", "t" * 256, 7])
def test_invalid_tags_are_rejected(store: RunStore, bad: Any) -> None:
    run = store.create_run("F", "ana")
    with pytest.raises(StoreError, match="non-empty string of at most 255"):
        store.add_tags(run.run_id, [bad])
    with pytest.raises(StoreError, match="Invalid tag"):
        store.create_run("F", "ana", tags=[bad])


# -- tasks and artifacts --------------------------------------------------------------------


def test_write_and_read_tasks(store: RunStore) -> None:
    run = store.create_run("F", "ana")
    rid = run.run_id
    written = [
        task(rid, 0, "start", foreach_stack=[], input_task_ids=[], transition=None),
        task(rid, 2, cloned_from={"run_id": 7, "task_id": 2}, error="Traceback ..."),
        task(rid, 1, status="running", finished_at=None, stdout_key=None),
    ]
    store.write_tasks(written, [artifact(rid, 0, "xs"), artifact(rid, 2, "model", "m" * 64)])
    got = store.get_tasks(rid)
    assert [t.task_id for t in got] == [0, 1, 2]
    assert got == sorted(written, key=lambda t: t.task_id)
    assert got[0].transition is None and got[0].foreach_stack == []
    assert got[1].started_at.tzinfo == UTC
    assert store.get_tasks(rid, "train") == got[1:]
    assert store.get_tasks(rid, "nope") == []
    assert store.get_task(rid, 2) == written[1]
    assert store.get_task(rid, 5) is None
    assert store.get_tasks(rid + 1) == []


def test_write_tasks_upserts(store: RunStore) -> None:
    rid = store.create_run("F", "ana").run_id
    store.write_tasks([task(rid, 1, status="running", finished_at=None)], [])
    store.write_tasks(
        [task(rid, 1, status="failed", attempt=1, error="boom")],
        [artifact(rid, 1, "x", "1" * 64)],
    )
    store.write_tasks([], [artifact(rid, 1, "x", "2" * 64), artifact(rid, 1, "y")])
    got = store.get_task(rid, 1)
    assert got is not None
    assert (got.status, got.attempt, got.error) == ("failed", 1, "boom")
    refs = store.get_artifacts(rid)
    assert refs[1]["x"].key == "2" * 64 and set(refs[1]) == {"x", "y"}


def test_write_tasks_is_all_or_nothing(store: RunStore) -> None:
    rid = store.create_run("F", "ana").run_id
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        # The artifact's task is not in the batch nor the database.
        store.write_tasks([task(rid, 1)], [artifact(rid, 1, "ok"), artifact(rid, 99, "orphan")])
    assert store.get_tasks(rid) == [] and store.get_artifacts(rid) == {}


def test_write_tasks_rejects_unknown_status(store: RunStore) -> None:
    rid = store.create_run("F", "ana").run_id
    with pytest.raises(StoreError, match=r"'done'.*running, succeeded, failed"):
        store.write_tasks([task(rid, 1), task(rid, 2, status="done")], [])
    assert store.get_tasks(rid) == []


def test_get_artifacts(store: RunStore) -> None:
    rid = store.create_run("F", "ana").run_id
    other = store.create_run("F", "ana").run_id
    store.write_tasks(
        [task(rid, 1), task(rid, 2), task(rid, 3), task(other, 1)],
        [
            artifact(rid, 1, "a"),
            artifact(rid, 1, "b"),
            artifact(rid, 2, "a"),
            artifact(other, 1, "z"),
        ],
    )
    every = store.get_artifacts(rid)
    assert {tid: sorted(names) for tid, names in every.items()} == {1: ["a", "b"], 2: ["a"]}
    assert every[1]["b"] == ArtifactRecord(rid, 1, "b", "k" * 64, 42)
    some = store.get_artifacts(rid, [2, 3])
    assert set(some) == {2, 3} and some[3] == {} and set(some[2]) == {"a"}
    assert store.get_artifacts(rid, []) == {}


def test_get_artifacts_of_many_tasks(store: RunStore) -> None:
    rid = store.create_run("F", "ana").run_id
    n = 2_100  # more ids than one IN (...) list carries
    store.write_tasks([task(rid, i) for i in range(n)], [artifact(rid, i, "x") for i in range(n)])
    refs = store.get_artifacts(rid, range(n))
    assert len(refs) == n and all(set(v) == {"x"} for v in refs.values())


def test_write_tasks_in_one_large_batch_inserts_then_updates(store: RunStore) -> None:
    """1,000 tasks + 3,000 artifact rows in one batch, written three times: no duplicates.

    How fast that is belongs to the benchmarks, not to a timed unit test.
    """
    rid = store.create_run("F", "ana").run_id
    tasks = [task(rid, i) for i in range(1_000)]
    refs = [artifact(rid, i, name) for i in range(1_000) for name in ("a", "b", "c")]
    for _ in range(3):  # the first inserts, the others update
        store.write_tasks(tasks, refs)
    assert len(store.get_tasks(rid)) == 1_000
    every = store.get_artifacts(rid, range(1_000))
    assert len(every) == 1_000 and all(sorted(v) == ["a", "b", "c"] for v in every.values())


def test_concurrent_writers_on_one_sqlite_file(inloop_home: Any) -> None:
    url = f"sqlite:///{inloop_home / 'threads.db'}"
    store = RunStore(get_engine(url))
    errors: list[BaseException] = []
    ids: list[int] = []

    def work() -> None:
        try:
            for _ in range(10):
                run = store.create_run("F", "ana", tags=["t"])
                store.write_tasks([task(run.run_id, 0)], [artifact(run.run_id, 0, "x")])
                store.add_tags(run.run_id, ["u"])
                ids.append(run.run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(ids) == list(range(1, 41))
    assert len(store.list_runs(tags=["t", "u"])) == 40


def test_records_are_frozen(store: RunStore) -> None:
    run = store.create_run("F", "ana")
    with pytest.raises(AttributeError):
        run.status = "failed"  # type: ignore[misc]
    assert isinstance(run, RunRecord)


def test_default_engine_follows_settings(db_url: str) -> None:
    assert RunStore().engine is get_engine(db_url)


def test_engine_is_shared(store: RunStore) -> None:
    assert isinstance(store.engine, Engine)
    assert "RunStore(" in repr(store)
