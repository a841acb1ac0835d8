"""The labeling queue: items handed to annotators as leases, safely under concurrency.

:func:`next_items` gives an annotator up to ``n`` items, highest priority
first, each as a :class:`Lease` that keeps the item theirs for the project's
``lease_seconds`` (10 minutes by default). An item is never handed to someone
who already answered it or holds it, and never to more people than the
project's ``overlap`` counting the labels it already has and its live leases.
Answering with :func:`~inloop.label.annotations.annotate` completes the lease;
:func:`release` gives it back; a lease left to expire returns the item to the
queue. :func:`set_priorities` reorders the queue (the model in the loop).

Many annotators can pull at once, from threads, processes or hosts. On
PostgreSQL each call locks its candidate items with ``SELECT ... FOR UPDATE
SKIP LOCKED``, so concurrent callers pass over each other's items instead of
waiting, then re-checks them under the lock; answers lock the item row too.
On SQLite the write transaction (``BEGIN IMMEDIATE``) serializes the calls.

>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> from inloop.label.items import add_items
>>> from inloop.label.annotations import annotate
>>> engine = get_engine("sqlite://")
>>> _ = create_project("queue-doc", ["yes", "no"], engine=engine)
>>> _ = add_items("queue-doc", [{"external_id": "a", "text": "1"},
...                             {"external_id": "b", "text": "2", "priority": 5}], engine=engine)
>>> [lease] = next_items("queue-doc", "ana", engine=engine)
>>> lease.item.external_id
'b'
>>> _ = annotate("queue-doc", lease.item_id, "ana", "yes", engine=engine)
>>> [l.item.external_id for l in next_items("queue-doc", "ana", n=5, engine=engine)]
['a']
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    func,
    select,
    update,
)

from inloop.label.items import _COLUMNS as _ITEM_COLUMNS
from inloop.label.items import Item
from inloop.label.projects import (
    LabelError,
    LabelNotFoundError,
    Project,
    ProjectRef,
    _engine,
    _now,
    check_finite,
    load_project,
)
from inloop.label.tables import label_annotations, label_assignments, label_items
from inloop.store.db import begin_write

__all__ = [
    "Lease",
    "QueueStats",
    "active_leases",
    "next_items",
    "queue_stats",
    "release",
    "set_priorities",
]

_MAX_BATCH = 1000
# How long next_items waits, on PostgreSQL, for open items that other transactions have
# locked for a moment, before answering with what it has.
_LOCKED_WAIT_SECONDS = 2.0
# Priorities are written in transactions of this many rows, so that annotators pulling
# meanwhile wait (SQLite) or skip locked rows (PostgreSQL) only briefly.
_PRIORITY_CHUNK = 2000
_IN_CHUNK = 900


@dataclass(frozen=True)
class Lease:
    """An item handed to an annotator until ``expires_at``; answer it or release it."""

    lease_id: int
    item_id: int
    project_id: int
    annotator: str
    leased_at: datetime
    expires_at: datetime
    item: Item


@dataclass(frozen=True)
class QueueStats:
    """How far a project is: items, how many have all their labels, live leases, labels due.

    ``labels_needed`` is what the queue can still hand out: for each item, the
    overlap minus the labels it has (never below 0).
    """

    items: int
    complete: int
    leased: int
    labels_needed: int


def _live(now: datetime) -> ColumnElement[bool]:
    return and_(label_assignments.c.state == "active", label_assignments.c.expires_at > now)


def _open_for(project: Project, annotator: str, now: datetime) -> list[ColumnElement[bool]]:
    """The conditions under which an item may go to ``annotator`` now."""
    items, leases, events = label_items, label_assignments, label_annotations
    holders = (
        select(func.count())
        .select_from(leases)
        .where(leases.c.item_id == items.c.item_id, _live(now))
        .scalar_subquery()
    )
    # Counts rather than NOT EXISTS: PostgreSQL turns NOT EXISTS into anti-joins whose
    # plan depends on table statistics, while these stay per-row index look-ups, so the
    # walk down the queue index stops at the first item that qualifies.
    answered = (
        select(func.count())
        .select_from(events)
        .where(
            events.c.item_id == items.c.item_id,
            events.c.annotator == annotator,
            events.c.origin == "human",
        )
        .scalar_subquery()
    )
    holding = (
        select(func.count())
        .select_from(leases)
        .where(leases.c.item_id == items.c.item_id, leases.c.annotator == annotator, _live(now))
        .scalar_subquery()
    )
    return [
        items.c.project_id == project.project_id,
        items.c.n_labels < project.overlap,
        items.c.n_labels + holders < project.overlap,
        answered == 0,
        holding == 0,
    ]


def _candidates(
    conn: Connection, project: Project, annotator: str, now: datetime, k: int, skip: set[int]
) -> list[int]:
    query: Select[Any] = select(label_items.c.item_id).where(*_open_for(project, annotator, now))
    if skip:
        query = query.where(label_items.c.item_id.not_in(sorted(skip)))
    query = query.order_by(label_items.c.priority.desc(), label_items.c.item_id).limit(k)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=label_items)
    return list(conn.execute(query).scalars())


def _still_open(
    conn: Connection, project: Project, annotator: str, now: datetime, ids: list[int]
) -> set[int]:
    # A new statement: under READ COMMITTED it sees every lease committed before we
    # took the row locks, which the candidate query's older snapshot may have missed.
    query = select(label_items.c.item_id).where(
        label_items.c.item_id.in_(ids), *_open_for(project, annotator, now)
    )
    return set(conn.execute(query).scalars())


def _any_open(
    conn: Connection, project: Project, annotator: str, now: datetime, skip: set[int]
) -> bool:
    query = select(label_items.c.item_id).where(*_open_for(project, annotator, now))
    if skip:
        query = query.where(label_items.c.item_id.not_in(sorted(skip)))
    return conn.execute(query.limit(1)).first() is not None


def _check_annotator(annotator: object) -> str:
    if not isinstance(annotator, str) or not annotator.strip() or len(annotator) > 255:
        raise LabelError(
            "The 'annotator' parameter must be a non-empty string of at most 255 characters, "
            f"such as a user name. Got {annotator!r}."
        )
    return annotator


def next_items(
    project: ProjectRef, annotator: str, n: int = 1, *, engine: Engine | None = None
) -> list[Lease]:
    """Hand ``annotator`` up to ``n`` items as leases, highest priority first.

    Returns fewer (or ``[]``) when the queue has no more items this annotator
    may take: every item has its ``overlap`` of labels and live leases, or
    this annotator already answered or holds the rest.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("next-doc", ["yes", "no"], overlap=2, engine=engine)
    >>> _ = add_items("next-doc", [{"external_id": "a", "text": "1"}], engine=engine)
    >>> [len(next_items("next-doc", who, engine=engine)) for who in ("ana", "bo", "cy")]
    [1, 1, 0]
    """
    annotator = _check_annotator(annotator)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_BATCH:
        raise LabelError(
            f"The 'n' parameter of next_items must be an int from 1 to {_MAX_BATCH}. Got {n!r}."
        )
    engine = _engine(engine)
    with begin_write(engine) as conn:
        record = load_project(conn, project)
        now = _now()
        chosen: list[int] = []
        tried: set[int] = set()
        postgres = conn.dialect.name == "postgresql"
        deadline = time.monotonic() + _LOCKED_WAIT_SECONDS
        while len(chosen) < n:
            found = _candidates(conn, record, annotator, now, n - len(chosen), tried)
            if not postgres:
                chosen = found  # serialized: the candidates are exact and there are no more
                break
            if found:
                tried.update(found)
                ok = _still_open(conn, record, annotator, now, found)
                chosen += [i for i in found if i in ok]
                continue
            # Nothing unlocked. Items other transactions hold for a moment (someone
            # answering, leasing, reprioritizing) may still be open to this annotator:
            # wait for them briefly, so that an empty answer means an empty queue.
            # Only with empty hands, so two waiting callers never hold what the other wants.
            if chosen or time.monotonic() > deadline:
                break
            if not _any_open(conn, record, annotator, now, tried):
                break
            time.sleep(0.005)
        if not chosen:
            return []
        expires = now + timedelta(seconds=record.lease_seconds)
        rows = [
            {
                "item_id": item_id,
                "project_id": record.project_id,
                "annotator": annotator,
                "state": "active",
                "leased_at": now,
                "expires_at": expires,
                "finished_at": None,
            }
            for item_id in chosen
        ]
        statement = label_assignments.insert().returning(
            label_assignments.c.lease_id, sort_by_parameter_order=True
        )
        lease_ids = list(conn.execute(statement, rows).scalars())
        items = {
            r.item_id: Item(*r)
            for r in conn.execute(select(*_ITEM_COLUMNS).where(label_items.c.item_id.in_(chosen)))
        }
    return [
        Lease(
            lease_id=lease_id,
            item_id=item_id,
            project_id=record.project_id,
            annotator=annotator,
            leased_at=now,
            expires_at=expires,
            item=items[item_id],
        )
        for lease_id, item_id in zip(lease_ids, chosen, strict=True)
    ]


def release(lease: Lease | int, *, engine: Engine | None = None) -> bool:
    """Give a lease back so the item returns to the queue at once.

    Returns False when the lease had already ended (answered or released); an
    expired lease is released all the same.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("release-doc", ["yes", "no"], engine=engine)
    >>> _ = add_items("release-doc", [{"external_id": "a", "text": "1"}], engine=engine)
    >>> [lease] = next_items("release-doc", "ana", engine=engine)
    >>> release(lease, engine=engine), release(lease, engine=engine)
    (True, False)
    """
    lease_id = lease.lease_id if isinstance(lease, Lease) else lease
    if isinstance(lease_id, bool) or not isinstance(lease_id, int):
        raise LabelError(
            f"The 'lease' parameter must be a Lease or a lease id (int). Got {lease!r}."
        )
    with begin_write(_engine(engine)) as conn:
        result = conn.execute(
            update(label_assignments)
            .where(label_assignments.c.lease_id == lease_id, label_assignments.c.state == "active")
            .values(state="released", finished_at=_now())
        )
        if result.rowcount:
            return True
        known = conn.execute(
            select(label_assignments.c.lease_id).where(label_assignments.c.lease_id == lease_id)
        ).first()
    if known is None:
        raise LabelNotFoundError(f"No lease {lease_id!r}. Leases come from next_items().")
    return False


def active_leases(
    project: ProjectRef, annotator: str | None = None, *, engine: Engine | None = None
) -> list[Lease]:
    """The live (unexpired, unanswered) leases of a project, or of one annotator, oldest first.

    A labeling page that reloads uses it to show the annotator the items they
    already hold before asking :func:`next_items` for more.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("leases-doc", ["yes", "no"], engine=engine)
    >>> active_leases("leases-doc", "ana", engine=engine)
    []
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        now = _now()
        query = (
            select(
                label_assignments.c.lease_id,
                label_assignments.c.annotator,
                label_assignments.c.leased_at,
                label_assignments.c.expires_at,
                *_ITEM_COLUMNS,
            )
            .join(label_items, label_items.c.item_id == label_assignments.c.item_id)
            .where(label_assignments.c.project_id == record.project_id, _live(now))
            .order_by(label_assignments.c.lease_id)
        )
        if annotator is not None:
            query = query.where(label_assignments.c.annotator == annotator)
        rows = conn.execute(query).all()
    return [
        Lease(
            lease_id=r.lease_id,
            item_id=r.item_id,
            project_id=record.project_id,
            annotator=r.annotator,
            leased_at=r.leased_at,
            expires_at=r.expires_at,
            item=Item(*r[4:]),
        )
        for r in rows
    ]


def set_priorities(
    project: ProjectRef, priorities: Mapping[int, float], *, engine: Engine | None = None
) -> int:
    """Set the queue priority of many items at once (higher goes first); returns how many.

    For the model in the loop: after rescoring the pool, pass ``{item_id:
    score}``. Every id must be an item of the project and every priority a
    finite number, else nothing changes. Rows are written in short
    transactions so annotators pulling meanwhile are not held up.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("prio-doc", ["yes", "no"], engine=engine)
    >>> a, b = add_items("prio-doc", [{"external_id": "a", "text": "1"},
    ...                              {"external_id": "b", "text": "2"}], engine=engine)
    >>> set_priorities("prio-doc", {a: 0.9, b: 0.1}, engine=engine)
    2
    >>> next_items("prio-doc", "ana", engine=engine)[0].item.external_id
    'a'
    """
    if not isinstance(priorities, Mapping):
        raise LabelError(
            "The 'priorities' parameter must be a dict {item_id: priority}. "
            f"Got {priorities!r:.80}."
        )
    rows: list[dict[str, Any]] = []
    for item_id, value in priorities.items():
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            try:
                import numpy as np

                if not isinstance(item_id, np.integer):
                    raise TypeError
            except TypeError:
                raise LabelError(
                    f"The keys of 'priorities' must be item ids (int). Got {item_id!r}."
                ) from None
        number = check_finite("priority", value, f"set_priorities (item {item_id})")
        rows.append({"b_item": int(item_id), "b_priority": number})
    rows.sort(key=lambda r: r["b_item"])  # one lock order for every writer
    if not rows:
        return 0
    engine = _engine(engine)
    ids = [r["b_item"] for r in rows]
    with engine.connect() as conn:
        record = load_project(conn, project)
        missing = _missing_items(conn, record, ids)
    if missing:
        shown = ", ".join(str(i) for i in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise LabelError(
            f"Items {shown}{more} are not items of project {record.name!r}; no priority was "
            "changed. Pass the item ids add_items() or get_items() returned."
        )
    statement = (
        update(label_items)
        .where(label_items.c.item_id == bindparam("b_item"))
        .values(priority=bindparam("b_priority"))
    )
    for start in range(0, len(rows), _PRIORITY_CHUNK):
        with begin_write(engine) as conn:
            conn.execute(statement, rows[start : start + _PRIORITY_CHUNK])
    return len(rows)


def _missing_items(conn: Connection, project: Project, ids: Sequence[int]) -> list[int]:
    present: set[int] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        present.update(
            conn.execute(
                select(label_items.c.item_id).where(
                    label_items.c.project_id == project.project_id,
                    label_items.c.item_id.in_(chunk),
                )
            ).scalars()
        )
    return [i for i in ids if i not in present]


def queue_stats(project: ProjectRef, *, engine: Engine | None = None) -> QueueStats:
    """Counts for a status line: items, items with all their labels, live leases, labels due.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("stats-doc", ["yes", "no"], overlap=2, engine=engine)
    >>> queue_stats("stats-doc", engine=engine)
    QueueStats(items=0, complete=0, leased=0, labels_needed=0)
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        overlap = record.overlap
        items = label_items
        row = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(_case(items.c.n_labels >= overlap, 1, 0)), 0),
                func.coalesce(
                    func.sum(_case(items.c.n_labels >= overlap, 0, overlap - items.c.n_labels)),
                    0,
                ),
            ).where(items.c.project_id == record.project_id)
        ).one()
        leased = conn.execute(
            select(func.count())
            .select_from(label_assignments)
            .where(label_assignments.c.project_id == record.project_id, _live(_now()))
        ).scalar_one()
    return QueueStats(
        items=int(row[0]), complete=int(row[1]), leased=int(leased), labels_needed=int(row[2])
    )


def _case(condition: ColumnElement[bool], yes: Any, no: Any) -> ColumnElement[Any]:
    from sqlalchemy import case

    return case((condition, yes), else_=no)
