"""The archive writer on SQLite and PostgreSQL: batching under load, flush, bad settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from inloop.serve import MajorityClass, create_service, register
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


def _batch_sizes(records: list[ArchivedRequest], linger_s: float, gap_s: float) -> list[int]:
    """Put ``records`` ``gap_s`` apart on a writer lingering ``linger_s``; its batches' sizes."""
    batches = Batches()
    writer = ArchiveWriter(get_engine(), hooks=[batches], linger_s=linger_s).start()
    try:
        for record in records:
            assert writer.put(record)
            time.sleep(gap_s)
        assert batches.done.wait(10), batches.sizes
    finally:
        writer.close()
    return batches.sizes


def test_requests_put_close_together_are_written_in_one_transaction(
    records: list[ArchivedRequest],
) -> None:
    sizes = _batch_sizes(records, linger_s=1.0, gap_s=0.005)
    # One transaction (two if the writer woke between two puts) instead of twenty.
    assert sum(sizes) == 20 and len(sizes) <= 2, sizes
    assert count_requests("arc") == 20


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


@pytest.mark.parametrize("options", [{"linger_s": -0.1}, {"max_batch": 0}])
def test_bad_writer_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ServeError, match=r"max_batch >= 1 and linger_s >= 0"):
        ArchiveWriter(get_engine("sqlite://"), **options)  # type: ignore[arg-type]
