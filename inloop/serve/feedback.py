"""Feedback: the true labels of archived requests, as append-only events that have owners.

Every label given for one instance of a request is an event recording who
gave it, their role and when (``serve_feedback_events``); nothing is
replaced. Which label counts — for :func:`~inloop.serve.replay.evaluate`,
:func:`~inloop.serve.replay.replay` and the promotion gate — is defined here:
per instance, **the most trusted role's latest label** (roles from the least
to the most trusted: :data:`ROLES`; a label recorded before roles were, has
none and ranks below them all). So an annotator's label never overrules a
reviewer's, however late it comes, and a reviewer can correct their own.

Who may give feedback through the API is the policy's ``feedback_role``
(default ``reviewer``: reviewers, scientists and admins); labels people give
in the labeling project a request was routed to arrive as feedback whatever
their role (see :mod:`inloop.serve.review`), ranked by it.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 1, 1, tzinfo=UTC)
>>> events = [
...     FeedbackEvent(1, "r1", 0, "cat", "rita", "reviewer", at, "api"),
...     FeedbackEvent(2, "r1", 0, "dog", "ana", "annotator", at, "api"),
... ]
>>> resolve(events, 1).labels  # the reviewer's, though the annotator's came later
['cat']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from inloop.serve.models import ServeError
from inloop.serve.tables import serve_feedback_events

__all__ = [
    "ROLES",
    "Feedback",
    "FeedbackEvent",
    "FeedbackRoleError",
    "check_giver",
    "feedback_of",
    "insert_events",
    "labels_of",
    "resolve",
]

#: The roles of people, from the least to the most trusted (those of ``inloop.web.auth``).
ROLES = ("annotator", "reviewer", "scientist", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
# Ids per IN (...): SQLite caps bound parameters per statement.
_IN_CHUNK = 500


class FeedbackRoleError(ServeError, PermissionError):
    """The giver's role may not give feedback to this service (HTTP 403)."""


@dataclass(frozen=True)
class FeedbackEvent:
    """One label of one instance of a request: who gave it, their role, when, from where.

    ``role`` is None for labels given before roles were recorded. ``source``
    is ``'api'`` (REST or Python) or ``'review'`` (a label in the labeling
    ``project`` the request was routed to; ``annotation_id`` is that label's
    event there).
    """

    event_id: int
    request_id: str
    position: int
    label: Any
    given_by: str
    role: str | None
    given_at: datetime
    source: str
    project: str | None = None
    annotation_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON values (the REST API's shape)."""
        return {
            "position": self.position,
            "label": self.label,
            "given_by": self.given_by,
            "role": self.role,
            "given_at": self.given_at.isoformat(),
            "source": self.source,
            "project": self.project,
        }


def _key(event: FeedbackEvent) -> tuple[int, datetime, int]:
    return (_RANK.get(event.role or "", -1), event.given_at, event.event_id)


@dataclass(frozen=True)
class Feedback:
    """A request's true labels: the one used per instance, and every label given.

    ``labels`` has one entry per instance: the most trusted role's latest
    label, or None where no one gave one; ``chosen`` holds the event each of
    them comes from. ``history`` is every event, oldest first.
    """

    labels: list[Any]
    chosen: tuple[FeedbackEvent | None, ...]
    history: tuple[FeedbackEvent, ...]

    @property
    def given_by(self) -> str:
        """Who gave the labels used (several names joined by ', ', first come first)."""
        names = dict.fromkeys(e.given_by for e in self.chosen if e is not None)
        return ", ".join(names)

    @property
    def given_at(self) -> datetime:
        """When the newest of the labels used was given."""
        return max(e.given_at for e in self.chosen if e is not None)

    def to_dict(self) -> dict[str, Any]:
        """The feedback as JSON values (the REST API's shape)."""
        return {
            "labels": self.labels,
            "given_by": self.given_by,
            "given_at": self.given_at.isoformat(),
            "chosen": [None if e is None else e.to_dict() for e in self.chosen],
            "history": [e.to_dict() for e in self.history],
        }


def resolve(events: Iterable[FeedbackEvent], n_instances: int) -> Feedback:
    """The feedback of one request from its events (any order): see the module for the rule."""
    history = tuple(sorted(events, key=lambda e: (e.given_at, e.event_id)))
    best: list[FeedbackEvent | None] = [None] * n_instances
    for event in history:
        if 0 <= event.position < n_instances:
            held = best[event.position]
            if held is None or _key(event) >= _key(held):
                best[event.position] = event
    return Feedback(
        labels=[None if e is None else e.label for e in best],
        chosen=tuple(best),
        history=history,
    )


def _event(row: Any) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=row.event_id,
        request_id=row.request_id,
        position=row.position,
        label=row.label,
        given_by=row.given_by,
        role=row.role,
        given_at=row.given_at,
        source=row.source,
        project=row.project,
        annotation_id=row.annotation_id,
    )


def feedback_of(conn: Connection, n_of: Mapping[str, int]) -> dict[str, Feedback]:
    """The feedback of each request of ``n_of`` (request id -> its number of instances)
    that has any."""
    events: dict[str, list[FeedbackEvent]] = {}
    ids = list(n_of)
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        for row in conn.execute(
            select(serve_feedback_events).where(serve_feedback_events.c.request_id.in_(chunk))
        ):
            events.setdefault(row.request_id, []).append(_event(row))
    return {request_id: resolve(found, n_of[request_id]) for request_id, found in events.items()}


def labels_of(conn: Connection, n_of: Mapping[str, int]) -> dict[str, list[Any]]:
    """The labels used for each request of ``n_of`` that has feedback (None: no label)."""
    return {request_id: fb.labels for request_id, fb in feedback_of(conn, n_of).items()}


def check_giver(role: object, feedback_role: str, service: str) -> str:
    """``role``, if it may give feedback to ``service``; else :class:`FeedbackRoleError`."""
    if role not in _RANK:
        raise ServeError(f"The giver's role must be one of {list(ROLES)}. Got {role!r}.")
    if _RANK[str(role)] < _RANK[feedback_role]:
        allowed = list(ROLES[_RANK[feedback_role] :])
        raise FeedbackRoleError(
            f"Feedback to service {service!r} needs the role {feedback_role!r} or higher "
            f"({', '.join(allowed)}); the giver has the role {role!r}. Ask someone with that "
            "role, or have the service's policy lower 'feedback_role'."
        )
    return str(role)


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Append event rows on ``conn``; a review label already recorded is skipped.

    Returns how many were new. Rows carry every column but ``event_id``.
    """
    if not rows:
        return 0
    # Dialect modules are imported here: only a process that records feedback needs them.
    keys = ["request_id", "position", "annotation_id"]
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(serve_feedback_events).on_conflict_do_nothing(
            index_elements=keys
        )
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(serve_feedback_events).on_conflict_do_nothing(index_elements=keys)
    # RETURNING gives back the rows inserted, not those skipped: a count that both databases
    # report alike (an executemany's rowcount is not).
    statement = statement.returning(serve_feedback_events.c.event_id)
    added = 0
    for start in range(0, len(rows), _IN_CHUNK):
        added += len(conn.execute(statement, list(rows[start : start + _IN_CHUNK])).all())
    return added
