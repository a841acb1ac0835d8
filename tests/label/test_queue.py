"""The lease queue: order, overlap, expiry, release, and many annotators at once."""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from inloop.label.annotations import annotate, list_annotations
from inloop.label.items import add_items, get_items
from inloop.label.projects import LabelError, LabelNotFoundError, create_project
from inloop.label.queue import (
    QueueStats,
    active_leases,
    next_items,
    queue_stats,
    release,
    set_priorities,
)
from inloop.label.tables import label_assignments
from inloop.store.db import begin_write, get_engine


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


def _project(engine: Engine, n: int, *, overlap: int = 1, name: str = "q") -> list[int]:
    create_project(name, ["a", "b"], overlap=overlap, engine=engine)
    items = [{"external_id": f"i{k}", "text": f"text {k}"} for k in range(n)]
    return add_items(name, items, engine=engine)


def _expire(engine: Engine, lease_id: int) -> None:
    """Move a lease's expiry into the past, as if its time-out had run out."""
    with begin_write(engine) as conn:
        conn.execute(
            update(label_assignments)
            .where(label_assignments.c.lease_id == lease_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


# -- single annotator -------------------------------------------------------------------------


def test_highest_priority_first_then_oldest(engine: Engine) -> None:
    create_project("q", ["a", "b"], engine=engine)
    ids = add_items(
        "q",
        [
            {"external_id": "low", "text": "", "priority": -1},
            {"external_id": "tie1", "text": "", "priority": 2},
            {"external_id": "high", "text": "", "priority": 9.5},
            {"external_id": "tie2", "text": "", "priority": 2},
        ],
        engine=engine,
    )
    leases = next_items("q", "ana", n=4, engine=engine)
    assert [lease.item.external_id for lease in leases] == ["high", "tie1", "tie2", "low"]
    assert {lease.item_id for lease in leases} == set(ids)
    lease = leases[0]
    assert lease.annotator == "ana" and lease.item.payload == {"text": ""}
    assert lease.expires_at - lease.leased_at == timedelta(seconds=600)


def test_an_annotator_never_gets_an_item_twice(engine: Engine) -> None:
    _project(engine, 3, overlap=3)
    first = next_items("q", "ana", n=2, engine=engine)
    annotate("q", first[0].item_id, "ana", "a", engine=engine)
    annotate("q", first[1].item_id, "ana", None, engine=engine)  # a skip also counts as seen
    rest = next_items("q", "ana", n=10, engine=engine)
    assert [lease.item.external_id for lease in rest] == ["i2"]
    assert next_items("q", "ana", n=10, engine=engine) == []  # holds i2, answered the others


def test_overlap_one_hands_each_item_once(engine: Engine) -> None:
    _project(engine, 4)
    a = next_items("q", "ana", n=3, engine=engine)
    b = next_items("q", "bo", n=3, engine=engine)
    assert len(a) == 3 and len(b) == 1
    assert not {x.item_id for x in a} & {x.item_id for x in b}
    assert next_items("q", "cy", n=3, engine=engine) == []


def test_overlap_two_hands_each_item_to_two_people(engine: Engine) -> None:
    _project(engine, 2, overlap=2)
    got = {who: next_items("q", who, n=5, engine=engine) for who in ("ana", "bo", "cy")}
    assert [len(got[w]) for w in ("ana", "bo", "cy")] == [2, 2, 0]


def test_labels_already_given_count_toward_overlap(engine: Engine) -> None:
    ids = _project(engine, 2, overlap=2)
    annotate("q", ids[0], "ana", "a", engine=engine)  # without a lease
    annotate("q", ids[0], "bo", "b", engine=engine)
    annotate("q", ids[1], "cy", None, engine=engine)  # skips do not count
    leases = next_items("q", "dee", n=5, engine=engine)
    assert [lease.item_id for lease in leases] == [ids[1]]


def test_model_and_review_labels_do_not_fill_the_queue(engine: Engine) -> None:
    ids = _project(engine, 1)
    annotate("q", ids[0], "model-v1", "a", origin="model", engine=engine)
    annotate("q", ids[0], "rita", "a", origin="review", engine=engine)
    assert len(next_items("q", "ana", engine=engine)) == 1


def test_answering_completes_the_lease(engine: Engine) -> None:
    ids = _project(engine, 2)
    [lease] = next_items("q", "ana", engine=engine)
    assert [x.lease_id for x in active_leases("q", "ana", engine=engine)] == [lease.lease_id]
    annotate("q", lease.item_id, "ana", "b", seconds=1.5, engine=engine)
    assert active_leases("q", engine=engine) == []
    assert release(lease, engine=engine) is False  # already done
    assert queue_stats("q", engine=engine) == QueueStats(
        items=2, complete=1, leased=0, labels_needed=1
    )
    assert ids[0] == lease.item_id


def test_release_returns_the_item_at_once(engine: Engine) -> None:
    _project(engine, 1)
    [lease] = next_items("q", "ana", engine=engine)
    assert next_items("q", "bo", engine=engine) == []
    assert release(lease.lease_id, engine=engine) is True
    [again] = next_items("q", "bo", engine=engine)
    assert again.item_id == lease.item_id
    # The one who released it may get it back later too.
    release(again, engine=engine)
    assert next_items("q", "ana", engine=engine)[0].item_id == lease.item_id


def test_release_unknown_lease(engine: Engine) -> None:
    with pytest.raises(LabelNotFoundError, match=r"No lease 999"):
        release(999, engine=engine)
    with pytest.raises(LabelError, match=r"Lease or a lease id"):
        release("x", engine=engine)  # type: ignore[arg-type]


def test_expired_leases_return_to_the_queue(engine: Engine) -> None:
    _project(engine, 1)
    [lease] = next_items("q", "ana", engine=engine)
    assert next_items("q", "bo", engine=engine) == []
    _expire(engine, lease.lease_id)
    assert active_leases("q", engine=engine) == []
    [taken] = next_items("q", "bo", engine=engine)
    assert taken.item_id == lease.item_id
    # ana answers late: her label is kept (nothing is lost) and completes her old lease.
    annotate("q", lease.item_id, "ana", "a", engine=engine)
    annotate("q", lease.item_id, "bo", "b", engine=engine)
    assert sorted(a.annotator for a in list_annotations("q", engine=engine)) == ["ana", "bo"]
    assert next_items("q", "cy", engine=engine) == []


def test_expired_lease_can_go_back_to_its_holder(engine: Engine) -> None:
    _project(engine, 1)
    [lease] = next_items("q", "ana", engine=engine)
    _expire(engine, lease.lease_id)
    [again] = next_items("q", "ana", engine=engine)
    assert again.item_id == lease.item_id and again.lease_id != lease.lease_id


def test_set_priorities_reorders(engine: Engine) -> None:
    ids = _project(engine, 5)
    assert set_priorities("q", {ids[3]: 10.0, ids[1]: 5, ids[4]: -1}, engine=engine) == 3
    order = [x.item_id for x in next_items("q", "ana", n=5, engine=engine)]
    assert order == [ids[3], ids[1], ids[0], ids[2], ids[4]]
    assert {i.item_id: i.priority for i in get_items("q", engine=engine)}[ids[3]] == 10.0


def test_set_priorities_in_bulk(engine: Engine) -> None:
    ids = _project(engine, 2500)
    rng = random.Random(0)
    scores = {i: rng.random() for i in ids}
    assert set_priorities("q", scores, engine=engine) == 2500
    best = sorted(ids, key=lambda i: (-scores[i], i))[:7]
    assert [x.item_id for x in next_items("q", "ana", n=7, engine=engine)] == best


def test_set_priorities_checks_everything_first(engine: Engine) -> None:
    ids = _project(engine, 2)
    create_project("other", ["a", "b"], engine=engine)
    [foreign] = add_items("other", [{"external_id": "f", "text": ""}], engine=engine)
    with pytest.raises(LabelError, match=rf"Items {foreign} are not items of project 'q'"):
        set_priorities("q", {ids[0]: 3, foreign: 1}, engine=engine)
    with pytest.raises(LabelError, match=r"'priority'.*finite number\. Got nan"):
        set_priorities("q", {ids[0]: float("nan")}, engine=engine)
    with pytest.raises(LabelError, match=r"keys of 'priorities' must be item ids"):
        set_priorities("q", {"i0": 1.0}, engine=engine)  # type: ignore[dict-item]
    assert {i.priority for i in get_items("q", engine=engine)} == {0.0}


@pytest.mark.parametrize("n", [0, -1, 1001, 2.0, True])
def test_bad_batch_size(engine: Engine, n: Any) -> None:
    _project(engine, 1)
    with pytest.raises(LabelError, match=r"'n' parameter of next_items must be an int from 1"):
        next_items("q", "ana", n=n, engine=engine)


def test_bad_annotator(engine: Engine) -> None:
    _project(engine, 1)
    with pytest.raises(LabelError, match=r"'annotator' parameter"):
        next_items("q", "", engine=engine)


def test_projects_have_separate_queues(engine: Engine) -> None:
    _project(engine, 1, name="one")
    _project(engine, 1, name="two")
    assert next_items("one", "ana", engine=engine)[0].item.external_id == "i0"
    assert len(next_items("two", "ana", engine=engine)) == 1


# -- many annotators at once ------------------------------------------------------------------


def _label_until_empty(
    url: str, project: str, who: str, seed: int, skip_every: int
) -> list[tuple[int, str]]:
    """Pull and answer until the queue has nothing for ``who``; returns (item, answer)."""
    engine = get_engine(url)
    rng = random.Random(seed)
    answered: list[tuple[int, str]] = []
    deadline = time.monotonic() + 60
    while True:
        leases = next_items(project, who, n=rng.choice([1, 2, 3]), engine=engine)
        if not leases:
            # Someone's skip may still hand an item back: stop when no label is due.
            if queue_stats(project, engine=engine).labels_needed == 0:
                return answered
            if time.monotonic() > deadline:
                raise TimeoutError(f"{who} waited 60 s for the queue to move")
            time.sleep(0.01)
            continue
        deadline = time.monotonic() + 60
        for lease in leases:
            # Some skips, but each item by one worker at most, so that it can still get
            # its labels from the others. No coin flip here: with one, a run could end
            # with no skip at all (about 1 in 150 runs), which the outcome check rejects.
            if lease.item_id % skip_every == seed % skip_every:
                annotate(project, lease.item_id, who, None, engine=engine)  # skip
                answered.append((lease.item_id, "skip"))
            else:
                annotate(project, lease.item_id, who, rng.choice("ab"), engine=engine)
                answered.append((lease.item_id, "label"))


def _check_outcome(
    engine: Engine, ids: list[int], overlap: int, answers: dict[str, list[tuple[int, str]]]
) -> None:
    labels: dict[int, list[str]] = defaultdict(list)
    for event in list_annotations("q", engine=engine):
        if event.label is not None:
            labels[event.item_id].append(event.annotator)
    # No item lost: every one has exactly `overlap` labels, from different people.
    assert sorted(labels) == sorted(ids)
    assert {len(people) for people in labels.values()} == {overlap}
    assert all(len(set(people)) == overlap for people in labels.values())
    assert any(kind == "skip" for done in answers.values() for _, kind in done)
    # Nobody answered an item twice (labels and skips together).
    for who, done in answers.items():
        counts = Counter(item for item, _ in done)
        assert max(counts.values(), default=1) == 1, who
    assert queue_stats("q", engine=engine) == QueueStats(
        items=len(ids), complete=len(ids), leased=0, labels_needed=0
    )


@pytest.mark.parametrize("overlap", [1, 2])
def test_twenty_threads_share_the_queue(db_url: str, engine: Engine, overlap: int) -> None:
    ids = _project(engine, 200, overlap=overlap)
    answers: dict[str, list[tuple[int, str]]] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            answers[f"t{k}"] = _label_until_empty(db_url, "q", f"t{k}", seed=k, skip_every=20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(answers) == 20
    assert sum(1 for done in answers.values() if done) > 1  # they really shared it
    _check_outcome(engine, ids, overlap, answers)


def _process_worker(url: str, who: str, seed: int, out: Any) -> None:
    try:
        out.put((who, _label_until_empty(url, "q", who, seed, skip_every=4)))
    except BaseException as exc:  # the parent only sees a timeout otherwise
        out.put((who, repr(exc)))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
@pytest.mark.parametrize("overlap", [1, 2])
def test_processes_share_the_queue(db_url: str, engine: Engine, overlap: int) -> None:
    ids = _project(engine, 120, overlap=overlap)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(db_url, f"p{k}", k, out)) for k in range(4)]
    for proc in procs:
        proc.start()
    answers = dict(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(30)
    bad = {who: done for who, done in answers.items() if isinstance(done, str)}
    assert bad == {}
    _check_outcome(engine, ids, overlap, answers)


def test_concurrent_pullers_never_share_an_item(db_url: str, engine: Engine) -> None:
    # Everyone pulls at once and nobody answers: with overlap 1 the leases are disjoint.
    ids = _project(engine, 150)
    barrier = threading.Barrier(20)
    got: dict[int, list[int]] = {}

    def pull(k: int) -> None:
        barrier.wait()
        got[k] = [x.item_id for x in next_items("q", f"t{k}", n=10, engine=engine)]

    threads = [threading.Thread(target=pull, args=(k,)) for k in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    handed = [item for items in got.values() for item in items]
    assert len(handed) == len(set(handed)) == 150
    assert set(handed) == set(ids)
    with engine.connect() as conn:
        assert conn.execute(select(label_assignments.c.lease_id)).all().__len__() == 150
