"""The journal of answered requests: segments, torn records, dead processes' folders, replay."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from inloop.serve import MajorityClass, create_service, register
from inloop.serve.archive import ArchivedRequest, ArchiveWriter, count_requests, get_request
from inloop.serve.journal import Journal, orphans, read_segment
from inloop.serve.policy import Policy, find_service_id
from inloop.serve.scoring import Score
from inloop.store.db import get_engine


def test_records_come_back_in_order_and_a_torn_last_record_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path).open()
    for i in range(3):
        journal.append(f"r{i}", ("record", i, "x" * 100))
    assert journal.path is not None
    segment = journal.path / "00000001.log"
    journal.close()  # three pending: the folder stays, for the next start
    assert [r[1] for r in read_segment(segment)] == [0, 1, 2]
    # The process died copying the third record: its last bytes never landed.
    data = bytearray(segment.read_bytes())
    third = data.rindex(b"x" * 100)
    data[third + 50 : third + 100] = bytes(50)
    segment.write_bytes(bytes(data))
    assert [r[1] for r in read_segment(segment)] == [0, 1]


def test_full_segments_go_once_their_requests_are_committed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=4096).open()
    assert journal.path is not None
    for i in range(40):
        journal.append(f"r{i}", ("record", i, "y" * 300))
    segments = len(list(journal.path.glob("*.log")))
    assert segments >= 4  # rotated, each record in one of them
    orphan_records = [r for s in sorted(journal.path.glob("*.log")) for r in read_segment(s)]
    assert [r[1] for r in orphan_records] == list(range(40))
    journal.committed([f"r{i}" for i in range(40)])
    # The current segment and a spare stay; every full one is gone.
    assert len(list(journal.path.glob("*.log"))) <= 2
    assert journal.pending == 0
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_a_record_larger_than_a_segment_gets_one_of_its_own(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=1024).open()
    journal.append("big", ("big", "z" * 10_000))
    journal.append("small", ("small", Fraction(1, 3)))  # not marshal's: pickled
    journal.close()
    [orphan] = orphans(tmp_path)
    assert list(orphan.records()) == [("big", "z" * 10_000), ("small", Fraction(1, 3))]
    orphan.remove()
    assert list(tmp_path.iterdir()) == []


_HOLDER = """
import sys, time
from inloop.serve.journal import Journal
journal = Journal(sys.argv[1]).open()
journal.append("r1", ("held",))
print(journal.path, flush=True)
time.sleep(120)
"""


def test_a_living_process_keeps_its_folder_and_a_killed_ones_is_taken(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        path = Path(holder.stdout.readline().strip())
        assert path.parent == tmp_path
        assert list(orphans(tmp_path)) == []  # its process lives
        holder.kill()
        holder.wait(10)
        [orphan] = orphans(tmp_path)
        assert orphan.path == path and [r[0] for r in orphan.records()] == ["held"]
        assert list(orphans(tmp_path)) == []  # this process holds it now
        orphan.remove()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not path.exists()


# --- the archive writer replays dead journals --------------------------------------------------


@pytest.fixture
def record(db_url: str) -> ArchivedRequest:
    """An answered request of a new service 'jrn' whose canary had not scored yet."""
    champion = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    canary = register(MajorityClass(["a", "b"], [1, 3]), name="m").ref
    policy = Policy(champion=champion, canary=canary, fallback={"label": "a"})
    create_service("jrn", policy, created_by="ana", reason="launch")
    with get_engine().connect() as conn:
        service_id = find_service_id(conn, "jrn")
    return ArchivedRequest(
        request_id="j1",
        service="jrn",
        service_id=service_id,
        revision=1,
        policy=policy,
        received_at=datetime.now(UTC),
        instances=[[1.0]],
        n_instances=1,
        model=champion,
        role="champion",
        fallback_used=False,
        predictions=["a"],
        latency_ms=0.4,
        scores=(Score(champion, "champion", "ok", ["a"], [[0.75, 0.25]], ["a", "b"], 0.1),),
    )


class Seen:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.done = threading.Event()

    def __call__(self, batch: Sequence[ArchivedRequest]) -> None:
        self.ids += [r.request_id for r in batch]
        self.done.set()


def test_a_new_writer_archives_what_a_dead_journal_holds_with_its_hooks(
    record: ArchivedRequest, tmp_path: Path
) -> None:
    dead = Journal(tmp_path / "journal").open()
    canary = record.policy.canary
    dead.append(record.request_id, record.journal_entry([(str(canary), "canary")]))
    stored = ArchivedRequest(**{**record.__dict__, "request_id": "j0"})
    dead.append("j0", stored.journal_entry())
    dead.close()  # as a killed process would leave it: pending, unlocked
    first = ArchiveWriter(get_engine()).start()
    first.put(stored)
    first.close()  # j0 was archived before the kill: not written twice

    seen = Seen()
    writer = ArchiveWriter(get_engine(), hooks=[seen], journal=Journal(tmp_path / "journal"))
    writer.start()
    try:
        assert seen.done.wait(30)
    finally:
        writer.close()
    assert seen.ids == ["j1"] and writer.recovered == 1
    view = get_request("jrn", "j1")
    assert view.inputs == [[1.0]] and view.predictions == ["a"]
    assert abs(view.received_at - record.received_at) < timedelta(milliseconds=1)
    assert view.scores[record.scores[0].model].probabilities == [[0.75, 0.25]]
    assert view.scores[str(canary)].status == "timeout"
    assert count_requests("jrn") == 2
    assert list((tmp_path / "journal").iterdir()) == []  # replayed, then the writer's own closed


def test_a_journal_record_whose_service_is_gone_is_skipped(
    record: ArchivedRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Journal(tmp_path / "journal").open()
    gone = ArchivedRequest(**{**record.__dict__, "request_id": "g1", "service_id": 999})
    dead.append("g1", gone.journal_entry())
    dead.append("j1", record.journal_entry())
    dead.close()
    writer = ArchiveWriter(get_engine(), journal=Journal(tmp_path / "journal")).start()
    writer.close()
    assert writer.recovered == 1 and count_requests("jrn") == 1
    assert "its service is gone" in caplog.text
