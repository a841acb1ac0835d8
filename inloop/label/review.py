"""Review queues: the labels a person should look at again, and their final call.

Two things send an item to a reviewer. A label audit
(:func:`queue_audit`) flags labels that a cross-validated model finds
unlikely; annotators who disagree on an item (:func:`queue_disagreements`)
leave it without a clear label. Each becomes an open :class:`Review` with the
given label, a suggested one, how sure the evidence is and why.
:func:`review_queue` lists the open reviews, most suspicious first, and
:func:`decide` records the reviewer's call: ``keep`` confirms the given label,
``change`` gives another. Both append an annotation with ``origin="review"``,
which wins over every other label of the item (see
:func:`inloop.label.annotations.current_labels`), and close the review with
who decided and when. Nothing else is rewritten.

>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> from inloop.label.items import add_items
>>> from inloop.label.annotations import annotate, current_labels
>>> engine = get_engine("sqlite://")
>>> _ = create_project("review-doc", ["cat", "dog"], engine=engine)
>>> [item] = add_items("review-doc", [{"external_id": "p", "text": "woof"}], engine=engine)
>>> for who, label in [("ana", "cat"), ("bo", "dog"), ("cy", "dog")]:
...     _ = annotate("review-doc", item, who, label, engine=engine)
>>> [review] = queue_disagreements("review-doc", engine=engine)
>>> review.given, review.reason
('dog', "3 votes: 'dog' by bo, cy; 'cat' by ana")
>>> decide("review-doc", review.review_id, "rita", "change", "cat", engine=engine).state
'decided'
>>> current_labels("review-doc", engine=engine)[item].label
'cat'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Row, select, update

from inloop.label.annotations import (
    _insert_one,
    check_label,
    current_query,
    derive_current,
    event_row,
)
from inloop.label.consensus import consensus_dawid_skene, human_votes, vote_reason
from inloop.label.items import _COLUMNS as _ITEM_COLUMNS
from inloop.label.items import Item, _item_from_row, item_payload
from inloop.label.projects import (
    LabelError,
    LabelNotFoundError,
    Project,
    ProjectRef,
    _engine,
    _now,
    load_project,
    require_single_label,
)
from inloop.label.tables import (
    REVIEW_DECISIONS,
    REVIEW_KINDS,
    label_items,
    label_reviews,
)
from inloop.store.db import begin_write

__all__ = [
    "Review",
    "decide",
    "get_review",
    "queue_audit",
    "queue_disagreements",
    "review_queue",
]

_CHUNK = 900
_MAX_SOURCE = 255


@dataclass(frozen=True)
class Review:
    """One item waiting for (or given) a reviewer's final call.

    ``kind`` is ``audit`` (a model finds the given label unlikely) or
    ``disagreement`` (annotators disagree; ``given`` is their majority label).
    ``suggested`` is the label the evidence points to and ``confidence`` the
    probability behind it (the audit model's, or Dawid-Skene's posterior);
    ``score`` in [0, 1] orders the queue, higher first. ``state`` is ``open``,
    ``decided`` (``decision`` ``keep`` or ``change``, ``decided_label``, who and
    when, and the ``annotation_id`` of the review event) or ``superseded`` (a
    newer review of the same item replaced it).
    """

    review_id: int
    project_id: int
    item: Item
    kind: str
    given: str | None
    suggested: str | None
    confidence: float | None
    score: float
    reason: str
    source: str | None
    state: str
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision: str | None = None
    decided_label: str | None = None
    annotation_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The review as JSON-ready values, in the shape the REST API returns."""
        return {
            "id": self.review_id,
            "kind": self.kind,
            "item": {
                "id": self.item.item_id,
                "external_id": self.item.external_id,
                "kind": self.item.kind,
                "payload": self.item.payload,
                "priority": self.item.priority,
            },
            "given": self.given,
            "suggested": self.suggested,
            "confidence": self.confidence,
            "score": self.score,
            "reason": self.reason,
            "source": self.source,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "decided_by": self.decided_by,
            "decision": self.decision,
            "decided_label": self.decided_label,
        }


# -- reading ------------------------------------------------------------------------------


def _read_items(conn: Connection, ids: Iterable[int]) -> dict[int, Item]:
    wanted = sorted(set(ids))
    found: dict[int, Item] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for row in conn.execute(select(*_ITEM_COLUMNS).where(label_items.c.item_id.in_(chunk))):
            found[row.item_id] = _item_from_row(row)
    return found


def _reviews_from_rows(conn: Connection, rows: Sequence[Row[Any]]) -> list[Review]:
    items = _read_items(conn, (r.item_id for r in rows))
    return [_review_from_row(r, items[r.item_id]) for r in rows]


def _review_from_row(row: Row[Any], item: Item) -> Review:
    return Review(
        review_id=row.review_id,
        project_id=row.project_id,
        item=item,
        kind=row.kind,
        given=row.given_label,
        suggested=row.suggested_label,
        confidence=row.confidence,
        score=row.score,
        reason=row.reason,
        source=row.source,
        state=row.state,
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision=row.decision,
        decided_label=row.decided_label,
        annotation_id=row.annotation_id,
    )


def _check_kind(kind: object, where: str) -> None:
    if kind not in REVIEW_KINDS:
        raise LabelError(
            f"The 'kind' parameter of {where} must be one of {list(REVIEW_KINDS)} or None "
            f"(every kind). Got {kind!r}."
        )


def _check_int(value: object, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise LabelError(
            f"The {name!r} parameter of {where} must be an int >= {minimum}. Got {value!r}."
        )
    return int(value)


def review_queue(
    project: ProjectRef,
    kind: str | None = None,
    *,
    limit: int = 50,
    engine: Engine | None = None,
) -> list[Review]:
    """The project's open reviews (of ``kind``, or every kind), most suspicious first.

    Ordered by ``score`` (higher first), then by age (older first).

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("queue-review-doc", ["a", "b"], engine=engine)
    >>> review_queue("queue-review-doc", "audit", engine=engine)
    []
    """
    if kind is not None:
        _check_kind(kind, "review_queue")
    limit = _check_int(limit, "limit", "review_queue", 1)
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        query = select(label_reviews).where(
            label_reviews.c.project_id == record.project_id, label_reviews.c.state == "open"
        )
        if kind is not None:
            query = query.where(label_reviews.c.kind == kind)
        rows = conn.execute(
            query.order_by(label_reviews.c.score.desc(), label_reviews.c.review_id).limit(limit)
        ).all()
        return _reviews_from_rows(conn, rows)


def get_review(project: ProjectRef, review_id: int, *, engine: Engine | None = None) -> Review:
    """One review of the project by id, in any state.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("get-review-doc", ["a", "b"], engine=engine)
    >>> get_review("get-review-doc", 1, engine=engine)
    Traceback (most recent call last):
    ...
    inloop.label.projects.LabelNotFoundError: No review 1 in project 'get-review-doc'. ...
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        row = _load_review_row(conn, record, review_id, lock=False)
        return _reviews_from_rows(conn, [row])[0]


def _load_review_row(conn: Connection, project: Project, review_id: object, *, lock: bool) -> Any:
    if isinstance(review_id, bool) or not isinstance(review_id, int | np.integer):
        raise LabelError(
            f"The 'review_id' parameter must be the int id of a review (Review.review_id). "
            f"Got {review_id!r}."
        )
    query = select(label_reviews).where(
        label_reviews.c.review_id == int(review_id),
        label_reviews.c.project_id == project.project_id,
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise LabelNotFoundError(
            f"No review {review_id!r} in project {project.name!r}. List the open ones with "
            f"review_queue({project.name!r})."
        )
    return row


# -- recording ----------------------------------------------------------------------------


def _record(
    engine: Engine,
    project: Project,
    kind: str,
    rows: list[dict[str, Any]],
    *,
    keep_same: bool,
) -> list[Review]:
    """Insert open reviews, superseding the open reviews of ``kind`` of the same items.

    With ``keep_same`` an open review with the same given label and reason stays
    (and is returned) instead of being replaced by an identical one.
    """
    now = _now()
    by_item = {r["item_id"]: r for r in rows}
    kept: list[int] = []
    new_ids: list[int] = []
    with begin_write(engine) as conn:
        open_rows: list[Any] = []
        item_ids = sorted(by_item)
        for start in range(0, len(item_ids), _CHUNK):
            chunk = item_ids[start : start + _CHUNK]
            query = select(
                label_reviews.c.review_id,
                label_reviews.c.item_id,
                label_reviews.c.given_label,
                label_reviews.c.reason,
            ).where(
                label_reviews.c.item_id.in_(chunk),
                label_reviews.c.kind == kind,
                label_reviews.c.state == "open",
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            open_rows += conn.execute(query).all()
        stale: list[int] = []
        for old in open_rows:
            new = by_item.get(old.item_id)
            if (
                keep_same
                and new is not None
                and new["given_label"] == old.given_label
                and new["reason"] == old.reason
            ):
                kept.append(old.review_id)
                by_item.pop(old.item_id)
            else:
                stale.append(old.review_id)
        for start in range(0, len(stale), _CHUNK):
            conn.execute(
                update(label_reviews)
                .where(
                    label_reviews.c.review_id.in_(stale[start : start + _CHUNK]),
                    label_reviews.c.state == "open",
                )
                .values(state="superseded")
            )
        for row in by_item.values():
            full = {
                **row,
                "project_id": project.project_id,
                "kind": kind,
                "state": "open",
                "created_at": now,
            }
            pk = conn.execute(label_reviews.insert(), full).inserted_primary_key
            new_ids.append(int(pk[0]) if pk is not None else 0)
        ids = kept + new_ids
        found: list[Row[Any]] = []
        for start in range(0, len(ids), _CHUNK):
            found += conn.execute(
                select(label_reviews).where(
                    label_reviews.c.review_id.in_(ids[start : start + _CHUNK])
                )
            ).all()
        found.sort(key=lambda r: (-r.score, r.review_id))
        return _reviews_from_rows(conn, found)


def _reviewed_items(conn: Connection, project: Project) -> set[int]:
    """Items whose current label is a reviewer's decision: their final call is made."""
    current = derive_current(conn.execute(current_query(project)).all())
    return {item_id for item_id, c in current.items() if c.origin == "review"}


def _check_source(source: object) -> str | None:
    if source is None:
        return None
    if not isinstance(source, str) or len(source) > _MAX_SOURCE:
        raise LabelError(
            f"The 'source' of a review must be a string of at most {_MAX_SOURCE} characters "
            f"(such as an audit run's pathspec) or None. Got {source!r:.80}."
        )
    return source


def _feature_data(
    conn: Connection, project: Project
) -> tuple[list[int], np.ndarray, np.ndarray, set[int]]:
    """Item ids, features and current labels of the labeled items; the reviewed item ids."""
    current = derive_current(conn.execute(current_query(project)).all())
    ids = sorted(current)
    items = _read_items(conn, ids)
    kinds = sorted({items[i].kind for i in ids})
    if kinds and kinds != ["features"]:
        raise LabelError(
            f"queue_audit audits projects of 'features' items; project {project.name!r} has "
            f"labeled items of kind {kinds}. Audit text or image items by computing features "
            "(embeddings) first and running inloop.label.audit_labels(X, y)."
        )
    rows = [item_payload(items[i])["features"] for i in ids]
    widths = sorted({len(r) for r in rows})
    if len(widths) > 1:
        raise LabelError(
            f"The feature rows of project {project.name!r} have different lengths {widths}: "
            "an audit needs one length."
        )
    X = np.asarray(rows, dtype=np.float64).reshape(len(ids), widths[0] if widths else 0)
    y = np.asarray([current[i].label for i in ids], dtype=object)
    reviewed = {i for i in ids if current[i].origin == "review"}
    return ids, X, y, reviewed


def _audit_reason(given: str, suggested: str, confidence: float, given_confidence: float) -> str:
    return (
        f"model is {confidence:.2f} sure this is {suggested!r}; "
        f"the given label {given!r} gets {given_confidence:.2f}"
    )


def _run_audit_flow(
    X: np.ndarray, y: np.ndarray, estimator: Any, folds: int, project: Project
) -> tuple[Any, str]:
    """Run :class:`~inloop.label.audit_flow.AuditFlow`; its report and the run's pathspec."""
    from inloop import Runner
    from inloop.errors import TaskFailedError
    from inloop.label.audit import _check_estimator, fold_test_indices
    from inloop.label.audit_flow import AuditFlow
    from inloop.store import open_artifact_store

    fold_test_indices(y, folds=folds)  # checks the classes can fill the folds, before a run
    if estimator is not None:
        _check_estimator(estimator)
    store = open_artifact_store()
    params: dict[str, Any] = {
        "x_key": store.put(X).key,
        "y_key": store.put(y).key,
        "estimator": "" if estimator is None else store.put(estimator).key,
        "folds": int(folds),
        "budget": None,
        "seed": 0,
        "method": "self_confidence",
    }
    runner = Runner(AuditFlow, show_output=False)
    result = runner.run(tags=[f"label-project:{project.name}"], **params)
    pathspec = str(result.run.pathspec)
    if result.status != "successful":
        raise TaskFailedError(
            f"The label audit run {pathspec} of project {project.name!r} failed; no review was "
            f"queued. Inspect it with inloop.Flow('AuditFlow')[{result.run.id!r}]."
        )
    return result.run.data.report, pathspec


def queue_audit(
    project: ProjectRef,
    *,
    estimator: Any = None,
    folds: int = 5,
    budget: int | None = 100,
    use_flow: bool = False,
    engine: Engine | None = None,
) -> list[Review]:
    """Audit the project's current labels and queue the suspects for review.

    The features of every labeled ``features`` item and its current label are
    audited by ``folds``-fold cross-validation and cleanlab
    (:func:`inloop.label.audit.audit_labels`, or the :class:`AuditFlow` run
    when ``use_flow``; ``estimator=None`` uses the audit's default model).
    Each suspect becomes an open ``audit`` review, the most suspicious
    ``budget`` of them (None: all); an open audit review of the same item is
    superseded. Items whose label a reviewer already decided are not queued
    again. Returns the new reviews, most suspicious first.

    >>> import numpy as np
    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.io import import_items
    >>> from sklearn.linear_model import LogisticRegression
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("audit-review-doc", ["low", "high"], engine=engine)
    >>> X = np.r_[np.zeros((10, 1)), np.ones((10, 1))]
    >>> y = ["low"] * 10 + ["high"] * 10
    >>> y[3] = "high"
    >>> _ = import_items("audit-review-doc", X, labels=y, engine=engine)
    >>> [r.item.external_id for r in queue_audit(
    ...     "audit-review-doc", estimator=LogisticRegression(), engine=engine)]
    ['3']
    """
    from inloop.label.audit import audit_labels, default_audit_estimator

    if budget is not None:
        budget = _check_int(budget, "budget", "queue_audit", 1)
    if not isinstance(use_flow, bool):
        raise LabelError(
            f"The 'use_flow' parameter of queue_audit must be a bool. Got {use_flow!r}."
        )
    engine = _engine(engine)
    with engine.connect() as conn:
        record = load_project(conn, project)
        require_single_label(record, "queue_audit")
        ids, X, y, reviewed = _feature_data(conn, project=record)
    if not ids:
        raise LabelError(
            f"Project {record.name!r} has no labeled items to audit. Import labeled items "
            "(import_items(..., labels=...)) or label some first."
        )
    labels = y.astype(str)
    source: str | None
    if use_flow:
        report, source = _run_audit_flow(X, labels, estimator, folds, record)
    else:
        model = default_audit_estimator(X, labels, folds=folds) if estimator is None else estimator
        report = audit_labels(X, labels, model, folds=folds)
        source = f"audit_labels(folds={folds}, estimator={type(model).__name__})"
    rows: list[dict[str, Any]] = []
    for entry in report.to_records():
        item_id = ids[int(entry["index"])]
        if item_id in reviewed:
            continue
        given, suggested = str(entry["given"]), str(entry["suggested"])
        confidence = float(entry["suggested_confidence"])
        rows.append(
            {
                "item_id": item_id,
                "given_label": given,
                "suggested_label": suggested,
                "confidence": confidence,
                "score": float(entry["score"]),
                "reason": _audit_reason(
                    given, suggested, confidence, float(entry["given_confidence"])
                ),
                "source": _check_source(source[:_MAX_SOURCE]),
            }
        )
        if budget is not None and len(rows) >= budget:
            break
    return _record(engine, record, "audit", rows, keep_same=False)


# -- disagreements ------------------------------------------------------------------------


def queue_disagreements(
    project: ProjectRef, *, min_votes: int = 2, engine: Engine | None = None
) -> list[Review]:
    """Queue every item whose annotators disagree for a reviewer's final call.

    An item is contested when at least ``min_votes`` people labeled it and
    they did not all agree (:func:`inloop.label.agreement.disagreements`).
    Its review's ``given`` label is the majority vote (ties: the class listed
    first), ``suggested`` and ``confidence`` are Dawid-Skene's label and
    posterior, ``score`` is the share of votes against the majority, and the
    reason lists the votes. An open disagreement review whose votes have not
    changed stays as it is; one whose votes changed is superseded. Items whose
    label a reviewer already decided are left out. Returns the open
    disagreement reviews of the contested items, most contested first.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("disagree-doc", ["a", "b"], engine=engine)
    >>> queue_disagreements("disagree-doc", engine=engine)
    []
    """
    from inloop.label.agreement import disagreements, majority_vote

    min_votes = _check_int(min_votes, "min_votes", "queue_disagreements", 2)
    engine = _engine(engine)
    with engine.connect() as conn:
        record = load_project(conn, project)
        require_single_label(record, "queue_disagreements")
        votes = human_votes(conn, record)
        reviewed = _reviewed_items(conn, record)
    if votes.matrix.size == 0:
        return []
    contested = disagreements(votes.matrix, min_votes=min_votes)
    if len(contested) == 0:
        return []
    vote = majority_vote(votes.matrix, len(votes.classes), tie_break="lowest")
    ds = consensus_dawid_skene(votes)
    rows: list[dict[str, Any]] = []
    for i in contested.tolist():
        item_id = votes.items[i]
        if item_id in reviewed:
            continue
        suggested = votes.classes[int(ds.labels[i])] if ds is not None else None
        rows.append(
            {
                "item_id": item_id,
                "given_label": votes.classes[int(vote.labels[i])],
                "suggested_label": suggested,
                "confidence": None if ds is None else float(ds.proba[i].max()),
                "score": float(1.0 - vote.confidence[i]),
                "reason": vote_reason(votes, i),
                "source": f"human votes, min_votes={min_votes}",
            }
        )
    return _record(engine, record, "disagreement", rows, keep_same=True)


# -- deciding -----------------------------------------------------------------------------


def decide(
    project: ProjectRef,
    review_id: int,
    reviewer: str,
    decision: str,
    label: str | int | None = None,
    *,
    engine: Engine | None = None,
) -> Review:
    """Record a reviewer's final call on an open review and return the decided review.

    ``decision="keep"`` confirms the review's given label; ``"change"`` gives
    ``label``, one of the project's classes. Either appends an annotation by
    ``reviewer`` with ``origin="review"`` (which becomes the item's current
    label) and marks the review decided with who, when, the decision and the
    label. A review is decided once; a superseded one cannot be decided.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("decide-doc", ["a", "b"], engine=engine)
    >>> decide("decide-doc", 1, "rita", "maybe", engine=engine)
    Traceback (most recent call last):
    ...
    inloop.label.projects.LabelError: The 'decision' parameter of decide must be one of ...
    """
    if decision not in REVIEW_DECISIONS:
        raise LabelError(
            f"The 'decision' parameter of decide must be one of {list(REVIEW_DECISIONS)} "
            f"('keep': the given label is right; 'change': use 'label'). Got {decision!r}."
        )
    engine = _engine(engine)
    now = _now()
    with begin_write(engine) as conn:
        record = load_project(conn, project)
        row = _load_review_row(conn, record, review_id, lock=True)
        if row.state != "open":
            raise _not_open(record, row)
        if decision == "keep":
            if row.given_label is None:
                raise LabelError(
                    f"Review {row.review_id} has no given label to keep. Decide 'change' with "
                    f"a label, one of {list(record.class_names)}."
                )
            if label is not None and check_label(record, label) != row.given_label:
                raise LabelError(
                    f"decide(..., 'keep') keeps the given label {row.given_label!r}; got "
                    f"label={label!r}. Pass no label to keep it, or decide 'change' to use "
                    f"{label!r}."
                )
            chosen: str = row.given_label
            reason = "confirmed in review"
        else:
            if label is None:
                raise LabelError(
                    f"decide(..., 'change') needs the new 'label', one of "
                    f"{list(record.class_names)}. Got None."
                )
            checked = check_label(record, label)
            if checked is None:  # pragma: no cover - check_label returns None only for None
                raise LabelError(f"Label {label!r} is not a class of {record.name!r}.")
            chosen = checked
            reason = f"changed in review from {row.given_label!r}"
        event = event_row(
            record, row.item_id, reviewer, chosen, origin="review", reason=reason, now=now
        )
        annotation_id = _insert_one(conn, event)
        done = conn.execute(
            update(label_reviews)
            .where(label_reviews.c.review_id == row.review_id, label_reviews.c.state == "open")
            .values(
                state="decided",
                decided_at=now,
                decided_by=event["annotator"],
                decision=decision,
                decided_label=chosen,
                annotation_id=annotation_id,
            )
        )
        if done.rowcount != 1:  # pragma: no cover - the row lock / write lock prevents this
            raise _not_open(record, _load_review_row(conn, record, review_id, lock=False))
        fresh = _load_review_row(conn, record, review_id, lock=False)
        return _reviews_from_rows(conn, [fresh])[0]


def _not_open(project: Project, row: Any) -> LabelError:
    if row.state == "decided":
        return LabelError(
            f"Review {row.review_id} of project {project.name!r} was already decided "
            f"({row.decision} {row.decided_label!r} by {row.decided_by} at "
            f"{row.decided_at:%Y-%m-%d %H:%M} UTC); a review is decided once. To change the "
            f"label now, annotate the item with origin='review'."
        )
    return LabelError(
        f"Review {row.review_id} of project {project.name!r} is {row.state}: a newer review of "
        f"the same item replaced it. Only open reviews can be decided; list them with "
        f"review_queue({project.name!r})."
    )
