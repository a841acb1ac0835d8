"""Annotations: append-only label events, and the current label derived from them.

Every answer is a new event: an annotator's label or skip, a model's
suggestion, an imported label, a reviewer's decision. Nothing is updated or
deleted; a correction is a later event. The current label of an item is
derived from its events (:func:`current_labels`): a reviewer's latest decision
wins, then the latest label a person gave, then the latest imported or model
label. Skips never count.

In a ``multi_label`` project an answer is a set of classes (a list, tuple or
set; empty means "none of these apply"): the event keeps ``label`` None and
carries the sorted class names in ``labels``.

>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> from inloop.label.items import add_items
>>> engine = get_engine("sqlite://")
>>> _ = create_project("ann-doc", ["cat", "dog"], engine=engine)
>>> [item] = add_items("ann-doc", [{"external_id": "p1", "text": "meow"}], engine=engine)
>>> _ = annotate("ann-doc", item, "ana", "dog", engine=engine)
>>> _ = annotate("ann-doc", item, "ana", "cat", engine=engine, reason="misclicked")
>>> current_labels("ann-doc", engine=engine)[item].label
'cat'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, select, update

from inloop.errors import quote
from inloop.label.items import ItemRef, load_item
from inloop.label.projects import (
    LabelError,
    Project,
    ProjectRef,
    _engine,
    _now,
    check_finite,
    check_storable,
    load_project,
)
from inloop.label.tables import ORIGINS, label_annotations, label_assignments, label_items
from inloop.store.db import begin_write

__all__ = [
    "Annotation",
    "CurrentLabel",
    "annotate",
    "current_labels",
    "history",
    "list_annotations",
]

_MAX_ANNOTATOR = 255
# Which origin wins when deriving the current label: higher wins, then the later event.
_RANK = {"review": 2, "human": 1, "import": 0, "model": 0}
# Ids per IN (...): SQLite caps bound parameters per statement.
_IN_CHUNK = 900
# Origins whose labels count as one annotator's towards the project's overlap.
COUNTED_ORIGINS = ("human", "import")


@dataclass(frozen=True)
class Annotation:
    """One label event. ``label`` is None for a skip; ``seconds`` is the time spent.

    In a multi-label project ``label`` is always None and ``labels`` holds the
    sorted classes of an answer (None for a skip).
    """

    annotation_id: int
    item_id: int
    project_id: int
    annotator: str
    label: str | None
    skipped: bool
    seconds: float | None
    origin: str
    reason: str | None
    created_at: datetime
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CurrentLabel:
    """An item's current label and the event it comes from.

    In a multi-label project ``label`` is None and ``labels`` is the sorted
    tuple of classes (possibly empty); in a single-label one ``labels`` is None.
    """

    item_id: int
    external_id: str
    label: str | None
    origin: str
    annotator: str
    annotation_id: int
    created_at: datetime
    labels: tuple[str, ...] | None = None


def _labels_tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _annotation(row: Any) -> Annotation:
    values = list(row)
    values[-1] = _labels_tuple(values[-1])
    return Annotation(*values)


_COLUMNS = tuple(label_annotations.c[name] for name in Annotation.__dataclass_fields__)


def check_label(project: Project, label: object) -> str | None:
    """``label`` as one of the project's class names (ints match their string), or None."""
    if label is None:
        return None
    if project.task_type == "multi_label":
        raise LabelError(
            f"Project {project.name!r} is multi-label: give a list of classes (a subset of "
            f"{list(project.class_names)}), not the single label {quote(label)}."
        )
    if isinstance(label, list | tuple | Set):
        raise LabelError(
            f"Project {project.name!r} is single-label: give one class among "
            f"{list(project.class_names)} or None to skip, not the list {list(label)!r}. "
            "Only multi_label projects take a set of classes."
        )
    return _one_class(project, label)


def _one_class(project: Project, label: object) -> str:
    names = project.class_names
    if isinstance(label, str):
        if label in names:
            return label
    elif not isinstance(label, bool):
        try:
            import numpy as np

            if isinstance(label, int | np.integer) and str(int(label)) in names:
                return str(int(label))
            if isinstance(label, np.str_) and str(label) in names:
                return str(label)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
    raise LabelError(
        f"Label {quote(label)} is not a class of project {project.name!r}. "
        f"Accepted: {list(names)}, or None to skip."
    )


def check_labels(project: Project, labels: object) -> tuple[str, ...] | None:
    """The classes of a multi-label answer, checked and sorted (None: a skip).

    ``labels`` is a list, tuple or set of class names (empty: none apply).
    """
    if labels is None:
        return None
    if project.task_type != "multi_label":
        raise LabelError(
            f"Project {project.name!r} is {project.task_type}: give one class among "
            f"{list(project.class_names)}, not a set of classes {quote(labels)}."
        )
    if isinstance(labels, str | bytes) or not isinstance(labels, list | tuple | Set):
        raise LabelError(
            f"Project {project.name!r} is multi-label: give a list of classes (a subset of "
            f"{list(project.class_names)}, [] for none of them) or None to skip. "
            f"Got {quote(labels)}."
        )
    checked = set()
    for entry in labels:
        if isinstance(entry, list | tuple | Set):
            raise LabelError(
                f"Invalid class {quote(entry)} in the labels {quote(labels)} "
                f"of project {project.name!r}: "
                f"each must be one of {list(project.class_names)}."
            )
        checked.add(_one_class(project, entry))
    return tuple(sorted(checked))


def check_answer(project: Project, label: object) -> tuple[str | None, tuple[str, ...] | None]:
    """``(label, labels)`` of an answer for the project's task type; both None for a skip."""
    if project.task_type == "multi_label":
        return None, check_labels(project, label)
    return check_label(project, label), None


def _check_annotator(annotator: object) -> str:
    if not isinstance(annotator, str) or not annotator.strip() or len(annotator) > _MAX_ANNOTATOR:
        raise LabelError(
            f"The 'annotator' parameter must be a non-empty string of at most {_MAX_ANNOTATOR} "
            f"characters, such as a user name or a model name. Got {quote(annotator)}."
        )
    check_storable(annotator, "annotator")
    return annotator


def _check_origin(origin: object) -> str:
    if origin not in ORIGINS:
        raise LabelError(
            f"The 'origin' parameter must be one of {list(ORIGINS)}. Got {quote(origin)}."
        )
    return str(origin)


def event_row(
    project: Project,
    item_id: int,
    annotator: str,
    label: object,
    *,
    seconds: object = None,
    origin: str = "human",
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A checked annotation row, ready to insert (for :mod:`inloop.label.io` batches).

    ``label`` is a class name (single-label projects) or a list of class names
    (multi-label projects); None is a skip.
    """
    checked, checked_set = check_answer(project, label)
    skipped = checked is None and checked_set is None
    origin = _check_origin(origin)
    if skipped and origin != "human":
        raise LabelError(
            f"Only people skip: an annotation with origin {quote(origin)} needs a label, one of "
            f"{list(project.class_names)}."
        )
    secs = None if seconds is None else check_finite("seconds", seconds, "annotate")
    if secs is not None and secs < 0:
        raise LabelError(f"The 'seconds' parameter of annotate must be >= 0. Got {quote(seconds)}.")
    if reason is not None and not isinstance(reason, str):
        raise LabelError(
            f"The 'reason' parameter of annotate must be a string. Got {quote(reason)}."
        )
    if reason is not None:
        check_storable(reason, "reason")
    return {
        "item_id": item_id,
        "project_id": project.project_id,
        "annotator": _check_annotator(annotator),
        "label": checked,
        "labels": None if checked_set is None else list(checked_set),
        "skipped": skipped,
        "seconds": secs,
        "origin": origin,
        "reason": reason,
        "created_at": now or _now(),
    }


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append checked event rows on ``conn`` and keep the items' ``n_labels`` in step.

    ``n_labels`` counts the distinct annotators whose counted events (a
    person's or an import's label, not a skip) an item has; an annotator
    correcting their own label does not count twice.
    """
    if not rows:
        return
    counted = [r for r in rows if not r["skipped"] and r["origin"] in COUNTED_ORIGINS]
    new_pairs: dict[tuple[int, str], None] = {}
    if counted:
        pairs = {(r["item_id"], r["annotator"]) for r in counted}
        item_ids = sorted({p[0] for p in pairs})
        seen: set[tuple[int, str]] = set()
        for start in range(0, len(item_ids), 900):
            chunk = item_ids[start : start + 900]
            seen.update(
                (r.item_id, r.annotator)
                for r in conn.execute(
                    select(label_annotations.c.item_id, label_annotations.c.annotator)
                    .where(
                        label_annotations.c.item_id.in_(chunk),
                        ~label_annotations.c.skipped,
                        label_annotations.c.origin.in_(COUNTED_ORIGINS),
                    )
                    .distinct()
                )
            )
        new_pairs = dict.fromkeys(sorted(pairs - seen))
    conn.execute(label_annotations.insert(), list(rows))
    increments: dict[int, int] = {}
    for item_id, _annotator in new_pairs:
        increments[item_id] = increments.get(item_id, 0) + 1
    if increments:
        from sqlalchemy import bindparam

        conn.execute(
            update(label_items)
            .where(label_items.c.item_id == bindparam("b_item"))
            .values(n_labels=label_items.c.n_labels + bindparam("b_add")),
            [{"b_item": i, "b_add": n} for i, n in sorted(increments.items())],
        )


def annotate(
    project: ProjectRef,
    item: ItemRef,
    annotator: str,
    label: str | int | Iterable[str] | None,
    *,
    seconds: float | None = None,
    origin: str = "human",
    reason: str | None = None,
    engine: Engine | None = None,
) -> Annotation:
    """Record that ``annotator`` gave ``item`` the label ``label`` (None: skipped it).

    ``origin`` is ``human`` (default), ``model``, ``import`` or ``review`` (a
    reviewer's final call). A person's answer also completes their lease on the
    item, if they hold one. ``label`` must be one of the project's classes; in a
    multi-label project it is a list, tuple or set of them (``[]``: none apply).

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("annotate-doc", ["yes", "no"], engine=engine)
    >>> [item] = add_items("annotate-doc", [{"external_id": "q", "text": "?"}], engine=engine)
    >>> annotate("annotate-doc", item, "bo", None, seconds=2.5, engine=engine).skipped
    True
    """
    engine = _engine(engine)
    now = _now()
    with begin_write(engine) as conn:
        record = load_project(conn, project)
        found = load_item(conn, item, record)
        row = event_row(
            record,
            found.item_id,
            annotator,
            label,
            seconds=seconds,
            origin=origin,
            reason=reason,
            now=now,
        )
        if conn.dialect.name == "postgresql":
            # The queue decides on an item under its row lock; answers take it too.
            conn.execute(
                select(label_items.c.item_id)
                .where(label_items.c.item_id == found.item_id)
                .with_for_update()
            )
        annotation_id = _insert_one(conn, row)
        if row["origin"] == "human":
            conn.execute(
                update(label_assignments)
                .where(
                    label_assignments.c.item_id == found.item_id,
                    label_assignments.c.annotator == row["annotator"],
                    label_assignments.c.state == "active",
                )
                .values(state="done", finished_at=now)
            )
    return Annotation(
        annotation_id=annotation_id,
        **dict(row, labels=_labels_tuple(row["labels"])),
    )


def _insert_one(conn: Connection, row: dict[str, Any]) -> int:
    counted = not row["skipped"] and row["origin"] in COUNTED_ORIGINS
    first = False
    if counted:
        first = (
            conn.execute(
                select(label_annotations.c.annotation_id)
                .where(
                    label_annotations.c.item_id == row["item_id"],
                    label_annotations.c.annotator == row["annotator"],
                    ~label_annotations.c.skipped,
                    label_annotations.c.origin.in_(COUNTED_ORIGINS),
                )
                .limit(1)
            ).first()
            is None
        )
    result = conn.execute(label_annotations.insert(), row)
    pk = result.inserted_primary_key
    if first:
        conn.execute(
            update(label_items)
            .where(label_items.c.item_id == row["item_id"])
            .values(n_labels=label_items.c.n_labels + 1)
        )
    return int(pk[0]) if pk is not None else 0


def history(
    item: ItemRef, *, project: ProjectRef | None = None, engine: Engine | None = None
) -> list[Annotation]:
    """Every event of one item, oldest first (an external id needs ``project``).

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("history-doc", ["yes", "no"], engine=engine)
    >>> _ = add_items("history-doc", [{"external_id": "h", "text": "?"}], engine=engine)
    >>> _ = annotate("history-doc", "h", "ana", "yes", engine=engine)
    >>> [a.label for a in history("h", project="history-doc", engine=engine)]
    ['yes']
    """
    with _engine(engine).connect() as conn:
        found = load_item(conn, item, project)
        rows = conn.execute(
            select(*_COLUMNS)
            .where(label_annotations.c.item_id == found.item_id)
            .order_by(label_annotations.c.annotation_id)
        ).all()
    return [_annotation(r) for r in rows]


def list_annotations(
    project: ProjectRef,
    *,
    origins: Iterable[str] | None = None,
    after_id: int | None = None,
    item_ids: Iterable[int] | None = None,
    engine: Engine | None = None,
) -> list[Annotation]:
    """A project's events in order, optionally of some origins, after an annotation id, or
    of some items.

    What agreement statistics and retraining triggers read: ``after_id`` lets a
    caller fetch only what arrived since the last event it saw; ``item_ids``
    only the events of those items.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("list-ann-doc", ["yes", "no"], engine=engine)
    >>> list_annotations("list-ann-doc", origins=["human"], engine=engine)
    []
    """
    wanted = None if origins is None else [_check_origin(o) for o in origins]
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        query = select(*_COLUMNS).where(label_annotations.c.project_id == record.project_id)
        if wanted is not None:
            query = query.where(label_annotations.c.origin.in_(wanted))
        if after_id is not None:
            query = query.where(label_annotations.c.annotation_id > after_id)
        if item_ids is None:
            rows = conn.execute(query.order_by(label_annotations.c.annotation_id)).all()
        else:
            items = sorted(set(item_ids))
            rows = []
            for start in range(0, len(items), _IN_CHUNK):
                chunk = items[start : start + _IN_CHUNK]
                rows += conn.execute(query.where(label_annotations.c.item_id.in_(chunk))).all()
            rows.sort(key=lambda r: r.annotation_id)
    return [_annotation(r) for r in rows]


def derive_current(rows: Iterable[Row[Any]]) -> dict[int, CurrentLabel]:
    """The current label per item from event rows in event order (labels only, no skips)."""
    best: dict[int, tuple[int, Row[Any]]] = {}
    for row in rows:
        rank = _RANK[row.origin]
        held = best.get(row.item_id)
        if held is None or rank >= held[0]:  # later events of the same rank win
            best[row.item_id] = (rank, row)
    return {
        item_id: CurrentLabel(
            item_id=item_id,
            external_id=r.external_id,
            label=r.label,
            origin=r.origin,
            annotator=r.annotator,
            annotation_id=r.annotation_id,
            created_at=r.created_at,
            labels=_labels_tuple(r.labels),
        )
        for item_id, (_rank, r) in sorted(best.items())
    }


def current_query(
    project: Project, *, as_of: datetime | None = None, up_to_id: int | None = None
) -> Select[Any]:
    """The query of a project's label events (no skips) joined with external ids, in order."""
    query = (
        select(
            label_annotations.c.annotation_id,
            label_annotations.c.item_id,
            label_items.c.external_id,
            label_annotations.c.label,
            label_annotations.c.origin,
            label_annotations.c.annotator,
            label_annotations.c.created_at,
            label_annotations.c.labels,
        )
        .join(label_items, label_items.c.item_id == label_annotations.c.item_id)
        .where(
            label_annotations.c.project_id == project.project_id,
            ~label_annotations.c.skipped,
        )
    )
    if as_of is not None:
        query = query.where(label_annotations.c.created_at <= as_of)
    if up_to_id is not None:
        query = query.where(label_annotations.c.annotation_id <= up_to_id)
    return query.order_by(label_annotations.c.annotation_id)


def current_labels(
    project: ProjectRef, *, as_of: datetime | None = None, engine: Engine | None = None
) -> dict[int, CurrentLabel]:
    """The current label of every labeled item, by item id (items without a label are absent).

    A reviewer's latest decision wins over people's labels, which win over
    imported and model labels; within a rank the latest event wins. Skips are
    ignored. ``as_of`` derives the labels as they were at that moment.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.items import add_items
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("current-doc", ["yes", "no"], engine=engine)
    >>> [i] = add_items("current-doc", [{"external_id": "c", "text": "?"}], engine=engine)
    >>> _ = annotate("current-doc", i, "model-v1", "no", origin="model", engine=engine)
    >>> _ = annotate("current-doc", i, "ana", "yes", engine=engine)
    >>> _ = annotate("current-doc", i, "model-v2", "no", origin="model", engine=engine)
    >>> current_labels("current-doc", engine=engine)[i].label
    'yes'
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        rows = conn.execute(current_query(record, as_of=as_of)).all()
    return derive_current(rows)
