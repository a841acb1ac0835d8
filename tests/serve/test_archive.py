"""The archive writer on SQLite and PostgreSQL: batching under load, flush, bad settings."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from inloop.serve import MajorityClass, archive_process, create_service, register
from inloop.serve.archive import ArchivedRequest, ArchiveWriter, count_requests
from inloop.serve.models import ServeError
from inloop.serve.policy import Policy, find_service_id
from inloop.serve.scoring import Score
from inloop.store.db import get_engine


@pytest.fixture
def records(db_url: str) -> list[ArchivedRequest]:
    """Twenty answered requests of a new service 'arc', each with its champion's score."""
    ref = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    policy = Policy(champion=ref, fallback={"label": "a"})
    create_service("arc", policy, created_by="ana", reason="launch")
    with get_engine().connect() as conn:
        service_id = find_service_id(conn, "arc")
    return [
        ArchivedRequest(
            request_id=f"r{i}",
            service="arc",
            service_id=service_id,
            revision=1,
            policy=policy,
            received_at=datetime.now(UTC),
            instances=[[float(i)]],
            n_instances=1,
            model=ref,
            role="champion",
            fallback_used=False,
            predictions=["a"],
            latency_ms=0.5,
            scores=(Score(ref, "champion", "ok", predictions=["a"], latency_ms=0.1),),
        )
        for i in range(20)
    ]


class Batches:
    """A hook that records the size of every committed batch."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.done = threading.Event()

    def __call__(self, batch: Sequence[ArchivedRequest]) -> None:
        self.sizes.append(len(batch))
        if sum(self.sizes) >= 20:
            self.done.set()


def _batch_sizes(
    records: list[ArchivedRequest], linger_s: float, gap_s: float, chunk: int = 4
) -> list[int]:
    """Put ``records`` ``gap_s`` apart on a writer lingering ``linger_s``; its batches' sizes."""
    batches = Batches()
    writer = ArchiveWriter(get_engine(), hooks=[batches], linger_s=linger_s, chunk=chunk).start()
    try:
        for record in records:
            assert writer.put(record)
            time.sleep(gap_s)
        assert batches.done.wait(10), batches.sizes
    finally:
        writer.close()
    return batches.sizes


@pytest.mark.parametrize("chunk", [3, 100])
def test_requests_put_close_together_are_written_in_one_transaction(
    records: list[ArchivedRequest], chunk: int
) -> None:
    sizes = _batch_sizes(records, linger_s=1.0, gap_s=0.005, chunk=chunk)
    # One transaction (two if the writer woke between two puts) instead of twenty, however
    # many chunks it is sent in.
    assert sum(sizes) == 20 and len(sizes) <= 2, sizes
    assert count_requests("arc") == 20


def test_a_batch_that_fails_in_a_later_chunk_leaves_nothing_half_written(
    records: list[ArchivedRequest],
) -> None:
    writer = ArchiveWriter(get_engine(), chunk=3, retries=0, linger_s=1.0).start()
    writer.put(records[0])
    assert writer.flush()
    # One batch (the writer lingers) with r0 again in its third chunk: the database refuses
    # the whole transaction.
    for record in [*records[1:7], records[0], *records[7:10]]:
        writer.put(record)
    writer.close()
    assert count_requests("arc") == 1
    assert writer.stats() == {"queued": 0, "written": 1, "dropped": 10, "failed_batches": 1}


def test_without_lingering_each_request_is_written_as_it_comes(
    records: list[ArchivedRequest],
) -> None:
    sizes = _batch_sizes(records, linger_s=0.0, gap_s=0.02)
    assert sum(sizes) == 20 and len(sizes) >= 5, sizes


def test_flush_and_close_do_not_wait_for_the_linger(records: list[ArchivedRequest]) -> None:
    writer = ArchiveWriter(get_engine(), linger_s=60.0).start()
    for record in records[:3]:
        writer.put(record)
    started = time.monotonic()
    assert writer.flush(timeout=20)
    assert count_requests("arc") == 3
    writer.put(records[3])
    writer.close(timeout=20)
    # Both came back long before the 60 s linger: flush and close hurry the writer.
    assert time.monotonic() - started < 20
    assert count_requests("arc") == 4
    assert writer.stats()["written"] == 4


@pytest.mark.parametrize(
    "options", [{"linger_s": -0.1}, {"max_batch": 0}, {"chunk": 0}, {"pause_s": -1.0}]
)
def test_bad_writer_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ServeError, match=r"max_batch >= 1, chunk >= 1, linger_s >= 0 and "):
        ArchiveWriter(get_engine("sqlite://"), **options)  # type: ignore[arg-type]


def test_a_writer_process_writes_every_batch_and_hooks_see_it_committed(
    records: list[ArchivedRequest],
) -> None:
    seen: list[int] = []

    def hook(batch: Sequence[ArchivedRequest]) -> None:
        # Committed by the other process before the hook runs here.
        seen.append(count_requests("arc"))

    writer = ArchiveWriter(get_engine(), hooks=[hook], process=True).start()
    try:
        for record in records[:10]:
            writer.put(record)
        assert writer.flush(timeout=30)
        pid = writer.process_pid
        assert pid is not None and pid != os.getpid()
        for record in records[10:]:
            writer.put(record)
    finally:
        writer.close()
    assert writer.process_pid is None  # closed with the writer
    assert count_requests("arc") == 20 and seen[-1] == 20
    assert writer.stats() == {"queued": 0, "written": 20, "dropped": 0, "failed_batches": 0}


def _write_then_kill_the_process(writer: ArchiveWriter, record: ArchivedRequest) -> int:
    """Have ``writer``'s process write ``record``, then kill the process; its pid."""
    writer.put(record)
    assert writer.flush(timeout=30)
    pid = writer.process_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_writer_process_is_replaced_and_loses_nothing(
    records: list[ArchivedRequest],
) -> None:
    writer = ArchiveWriter(get_engine(), process=True).start()
    try:
        first = _write_then_kill_the_process(writer, records[0])
        for record in records[1:]:
            writer.put(record)
        assert writer.flush(timeout=30)
        assert writer.process_pid not in (None, first)
    finally:
        writer.close()
    assert count_requests("arc") == 20


def test_without_a_writer_process_the_thread_writes(
    records: list[ArchivedRequest],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A child that exits at once, as one whose interpreter cannot import inloop would.
    monkeypatch.setattr(archive_process, "_CHILD", "raise SystemExit(3)")
    writer = ArchiveWriter(get_engine(), process=True).start()
    try:
        for record in records:
            writer.put(record)
        assert writer.flush(timeout=30)
    finally:
        writer.close()
    assert count_requests("arc") == 20
    assert "the writer process did not start" in caplog.text and "exit code 3" in caplog.text


def test_a_batch_the_database_refuses_in_the_writer_process_is_dropped_not_half_written(
    records: list[ArchivedRequest],
) -> None:
    writer = ArchiveWriter(get_engine(), retries=1, linger_s=1.0, process=True).start()
    try:
        writer.put(records[0])
        assert writer.flush(timeout=30)
        for record in [*records[1:5], records[0]]:  # r0 again: the whole batch is refused
            writer.put(record)
    finally:
        writer.close(timeout=30)
    assert count_requests("arc") == 1
    assert writer.stats() == {"queued": 0, "written": 1, "dropped": 5, "failed_batches": 1}


def test_an_in_memory_database_cannot_have_a_writer_process() -> None:
    with pytest.raises(ServeError, match="in-memory SQLite database cannot be written from"):
        ArchiveWriter(get_engine("sqlite://"), process=True)


def test_a_batch_its_dead_writer_process_had_committed_is_not_written_twice(
    records: list[ArchivedRequest],
) -> None:
    writer = ArchiveWriter(get_engine(), linger_s=1.0, process=True).start()
    try:
        _write_then_kill_the_process(writer, records[0])
        # r0 is stored, as if the process had committed this batch and died before saying so.
        for record in records[:5]:
            writer.put(record)
        assert writer.flush(timeout=30)
    finally:
        writer.close()
    assert count_requests("arc") == 5
    assert writer.stats() == {"queued": 0, "written": 6, "dropped": 0, "failed_batches": 0}
