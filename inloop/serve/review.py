"""Human review: send the requests where models differ to a labeling project's queue.

A policy with ``review`` (:class:`~inloop.serve.policy.ReviewSettings`) names
a labeling project. After a request is archived, each of its instances is
sent there when the champion's margin (top probability minus the next) is
below ``margin_threshold``, or — with ``disagreement`` — when a challenger or
the canary predicts another class. At most ``per_hour_budget`` instances an
hour go to the queue; the smaller the champion's margin, the higher the
item's priority. Identical inputs become one item: its external id is
``serving-`` and a hash of the input, its source ``serving``, and its
``count`` says how many times it was routed (the labeling page shows it).
Which request and instance each routing came from, and why, is kept in
``serve_review_items`` (:func:`routed_items`); the first reason is the item's
``note``, which the labeling page shows beside the item.

Labels come back: a label people give a routed item in the labeling project
(a person's or a reviewer's decision; not a skip, a model's or an import)
becomes feedback of every request routed to it, before or after the label was
given, with the annotator as its giver and their role
(:class:`ReviewLabels`; :func:`sync_review_labels` once). The label is
matched to the models' classes (the project's ``"7"`` is the models' ``7``).

>>> from inloop.serve.scoring import Score
>>> champion = Score("m@2", "champion", "ok", [3], [[0.1, 0.5, 0.4]], [1, 3, 5])
>>> canary = Score("m@1", "canary", "ok", [5], [[0.1, 0.2, 0.7]], [1, 3, 5])
>>> review_reasons([champion, canary], margin_threshold=0.2, disagreement=True)
[(0, 'margin 0.10 < 0.20 (champion m@2); m@1 (canary) says 5, the champion m@2 says 3', 0.9)]
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, distinct, func, select

# The modules, not the package: the package imports the audit's heavy libraries.
from inloop.label.annotations import Annotation, list_annotations
from inloop.label.items import add_or_count_items
from inloop.label.projects import LabelError
from inloop.serve.archive import ArchivedRequest
from inloop.serve.feedback import ROLES, insert_events
from inloop.serve.policy import find_service_id
from inloop.serve.scoring import Score
from inloop.serve.tables import serve_review_items, serve_scores
from inloop.store.db import begin_write, get_engine

__all__ = [
    "LABEL_ORIGINS",
    "ReviewLabels",
    "ReviewRouter",
    "RoleOf",
    "RoutedItem",
    "input_key",
    "record_labels",
    "review_reasons",
    "routed_items",
    "sync_review_labels",
]

log = logging.getLogger("inloop.serve.review")

#: The source of the labeling items review routing creates.
SOURCE = "serving"
# Ids per IN (...): SQLite caps bound parameters per statement.
_IN_CHUNK = 500


def _margin(row: Sequence[float]) -> float:
    top = sorted(row, reverse=True)
    return float(top[0] - (top[1] if len(top) > 1 else 0.0))


def review_reasons(
    scores: Sequence[Score], *, margin_threshold: float | None, disagreement: bool
) -> list[tuple[int, str, float]]:
    """``(position, reason, priority)`` of every instance people should look at.

    Only requests the champion scored are judged; priority is one minus the
    champion's margin (1.0 without probabilities).
    """
    champion = next((s for s in scores if s.role == "champion"), None)
    if champion is None or not champion.ok or champion.predictions is None:
        return []
    others = [
        s
        for s in scores
        if s.role in ("challenger", "canary") and s.ok and s.predictions is not None
    ]
    out = []
    for i, predicted in enumerate(champion.predictions):
        reasons = []
        margin = None
        if champion.probabilities is not None:
            margin = _margin(champion.probabilities[i])
            if margin_threshold is not None and margin < margin_threshold:
                reasons.append(
                    f"margin {margin:.2f} < {margin_threshold:.2f} (champion {champion.model})"
                )
        if disagreement:
            for other in others:
                assert other.predictions is not None
                if other.predictions[i] != predicted:
                    reasons.append(
                        f"{other.model} ({other.role}) says {other.predictions[i]}, the "
                        f"champion {champion.model} says {predicted}"
                    )
        if reasons:
            priority = 1.0 if margin is None else round(1.0 - margin, 6)
            out.append((i, "; ".join(reasons), priority))
    return out


def _payload(instance: Any) -> dict[str, Any]:
    if isinstance(instance, str):
        return {"text": instance}
    return {"features": instance}


def _note(reason: str) -> str:
    """The reason as an item note: cut to fit, so that long model names never refuse the item."""
    from inloop.label.items import MAX_NOTE_CHARS

    return reason if len(reason) <= MAX_NOTE_CHARS else reason[: MAX_NOTE_CHARS - 1] + "…"


#: Who a person is: their role by name (None: unknown). The web app looks users up.
RoleOf = Callable[[str], "str | None"]


def input_key(instance: Any) -> str:
    """The external id of the review item of ``instance``: the same input, the same item.

    >>> input_key([0.5, 1.0]) == input_key([0.5, 1.0]) != input_key([0.5, 1.5])
    True
    """
    text = json.dumps(_payload(instance), sort_keys=True, separators=(",", ":"))
    return "serving-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class ReviewRouter:
    """An :class:`~inloop.serve.archive.ArchiveWriter` hook that fills review queues.

    Identical inputs go to one item, counted. When an input comes back to an
    item people have labeled already, its request gets their labels as
    feedback at once (``role_of`` gives each annotator's role). A project that
    does not exist (or does not take the instances) is logged once per
    service and project, and skipped; serving goes on.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        artifacts: Any = None,
        role_of: RoleOf | None = None,
    ) -> None:
        self.engine = engine if engine is not None else get_engine()
        self._artifacts = artifacts
        self.role_of = role_of
        self._warned: set[tuple[str, str]] = set()

    def __call__(self, batch: Sequence[ArchivedRequest]) -> None:
        by_service: dict[int, list[ArchivedRequest]] = {}
        for record in batch:
            if record.policy.review is not None and record.instances is not None:
                by_service.setdefault(record.service_id, []).append(record)
        for records in by_service.values():
            self._route(records)

    def _route(self, records: list[ArchivedRequest]) -> None:
        first = records[0]
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            routed_last_hour = conn.execute(
                select(func.count(distinct(serve_review_items.c.item_id))).where(
                    serve_review_items.c.service_id == first.service_id,
                    serve_review_items.c.routed_at > now - timedelta(hours=1),
                )
            ).scalar_one()
        items: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
        new_keys: set[str] = set()  # the same input again within a batch costs no budget
        for record in records:
            review = record.policy.review
            assert review is not None and record.instances is not None
            budget = review.per_hour_budget
            found = review_reasons(
                record.scores,
                margin_threshold=review.margin_threshold,
                disagreement=review.disagreement,
            )
            for position, reason, priority in found:
                key = input_key(record.instances[position])
                if key not in new_keys:
                    if budget is not None and routed_last_hour + len(new_keys) >= budget:
                        break
                    new_keys.add(key)
                items.append(
                    {
                        "external_id": key,
                        **_payload(record.instances[position]),
                        "source": SOURCE,
                        "priority": priority,
                        "note": _note(reason),
                    }
                )
                routes.append(
                    {
                        "request_id": record.request_id,
                        "position": position,
                        "service_id": record.service_id,
                        "project": review.project,
                        "reason": reason,
                        "routed_at": now,
                    }
                )
        # Policies in one batch may name different projects (a policy changed mid-batch).
        by_project: dict[str, list[int]] = {}
        for index, route in enumerate(routes):
            by_project.setdefault(route["project"], []).append(index)
        for project, indexes in by_project.items():
            try:
                self._send(project, [items[i] for i in indexes], [routes[i] for i in indexes])
            except (LabelError, LookupError) as exc:
                pair = (first.service, project)
                if pair not in self._warned:
                    self._warned.add(pair)
                    log.warning(
                        "service %s: cannot send requests for review to project %r: %s",
                        first.service,
                        project,
                        exc,
                    )

    def _send(
        self, project: str, items: list[dict[str, Any]], routes: list[dict[str, Any]]
    ) -> None:
        """Add or count the items, record the routes, and hand on the labels items have."""
        counted = add_or_count_items(project, items, artifacts=self._artifacts, engine=self.engine)
        rows = [{**route, "item_id": c.item_id} for route, c in zip(routes, counted, strict=True)]
        with begin_write(self.engine) as conn:
            conn.execute(serve_review_items.insert(), rows)
        # Read after the routes are committed: a label given from now on finds them in the
        # labels' sync; one given before is here.
        labeled_before = sorted({c.item_id for c in counted if not c.added})
        if labeled_before:
            found = list_annotations(
                project, origins=LABEL_ORIGINS, item_ids=labeled_before, engine=self.engine
            )
            record_labels(self.engine, project, found, rows, self.role_of)


#: Label events that become feedback: a person's label and a reviewer's decision.
LABEL_ORIGINS = ("human", "review")


def _origin_role(origin: str) -> str:
    return "reviewer" if origin == "review" else "annotator"


def _as_class(label: Any, classes: Sequence[Any] | None) -> Any:
    """``label`` as one of the models' ``classes`` (the project's "7" is the models' 7)."""
    if classes is None or label in classes:
        return label
    for cls in classes:
        if str(cls) == str(label):
            return cls
    return label


def _classes(conn: Any, request_ids: Sequence[str]) -> dict[str, list[Any]]:
    """The classes each request's models answer in (the champion's first)."""
    order = {"champion": 0, "canary": 1, "challenger": 2, "fallback": 3}
    found: dict[str, tuple[int, list[Any]]] = {}
    for start in range(0, len(request_ids), _IN_CHUNK):
        for row in conn.execute(
            select(serve_scores.c.request_id, serve_scores.c.role, serve_scores.c.classes).where(
                serve_scores.c.request_id.in_(request_ids[start : start + _IN_CHUNK]),
                serve_scores.c.classes.is_not(None),
            )
        ):
            rank = order.get(row.role, 9)
            held = found.get(row.request_id)
            if isinstance(row.classes, list) and (held is None or rank < held[0]):
                found[row.request_id] = (rank, row.classes)
    return {request_id: classes for request_id, (_, classes) in found.items()}


def record_labels(
    engine: Engine,
    project: str,
    annotations: Sequence[Annotation],
    routes: Sequence[Mapping[Any, Any]],
    role_of: RoleOf | None,
) -> int:
    """Record ``annotations`` (label events of ``project``) as feedback of the ``routes``
    (``request_id``, ``position``, ``item_id``) to their items; how many events were new.

    A label already recorded for a request's instance is not recorded twice.
    """
    by_item: dict[int, list[tuple[str, int]]] = {}
    for route in routes:
        by_item.setdefault(route["item_id"], []).append((route["request_id"], route["position"]))
    wanted = [a for a in annotations if not a.skipped and a.item_id in by_item]
    if not wanted:
        return 0
    roles: dict[str, str] = {}
    for annotation in wanted:
        if annotation.annotator not in roles:
            role = role_of(annotation.annotator) if role_of is not None else None
            roles[annotation.annotator] = role if role in ROLES else ""
    request_ids = sorted({r for a in wanted for r, _ in by_item[a.item_id]})
    rows = []
    with engine.connect() as conn:
        classes = _classes(conn, request_ids)
    for annotation in wanted:
        label = list(annotation.labels) if annotation.labels is not None else annotation.label
        for request_id, position in by_item[annotation.item_id]:
            rows.append(
                {
                    "request_id": request_id,
                    "position": position,
                    "label": _as_class(label, classes.get(request_id)),
                    "given_by": annotation.annotator,
                    "role": roles[annotation.annotator] or _origin_role(annotation.origin),
                    "given_at": annotation.created_at,
                    "source": "review",
                    "project": project,
                    "annotation_id": annotation.annotation_id,
                }
            )
    with begin_write(engine) as conn:
        return insert_events(conn, rows)


class ReviewLabels:
    """Turn labels given to routed items into feedback of their requests, as they come.

    :meth:`sync` looks at every project serving routed requests to: the first
    time at every label of its routed items, then at the labels given since
    (and, again, those of the previous look, so that a label whose
    transaction committed late is not missed). :meth:`start` syncs every
    ``interval_s`` seconds in a thread of its own until :meth:`stop`.
    ``role_of`` gives each annotator's role (without it, or for someone it
    does not know: ``reviewer`` for a reviewer's decision, else
    ``annotator``).
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        role_of: RoleOf | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.engine = engine if engine is not None else get_engine()
        self.role_of = role_of
        self.interval_s = interval_s
        self._cursors: dict[str, tuple[int, int]] = {}  # project -> (previous, newest) id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int:
        """One look at every project routed to; how many feedback events were new."""
        with self.engine.connect() as conn:
            projects = list(conn.execute(select(serve_review_items.c.project).distinct()).scalars())
        added = 0
        for project in sorted(projects):
            try:
                added += self._sync(project)
            except LookupError:
                continue  # the project is gone
        return added

    def _sync(self, project: str) -> int:
        cursor = self._cursors.get(project)
        with self.engine.connect() as conn:
            item_ids = None
            if cursor is None:  # the first look: every label of the routed items
                item_ids = sorted(
                    set(
                        conn.execute(
                            select(serve_review_items.c.item_id).where(
                                serve_review_items.c.project == project
                            )
                        ).scalars()
                    )
                )
        found = list_annotations(
            project,
            origins=LABEL_ORIGINS,
            after_id=None if cursor is None else cursor[0],
            item_ids=item_ids,
            engine=self.engine,
        )
        newest = max((a.annotation_id for a in found), default=0 if cursor is None else cursor[1])
        self._cursors[project] = (newest if cursor is None else cursor[1], newest)
        wanted = sorted({a.item_id for a in found if not a.skipped})
        if not wanted:
            return 0
        routes: list[Mapping[Any, Any]] = []
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                routes += [
                    row._mapping
                    for row in conn.execute(
                        select(
                            serve_review_items.c.request_id,
                            serve_review_items.c.position,
                            serve_review_items.c.item_id,
                        ).where(
                            serve_review_items.c.project == project,
                            serve_review_items.c.item_id.in_(wanted[start : start + _IN_CHUNK]),
                        )
                    )
                ]
        return record_labels(self.engine, project, found, routes, self.role_of)

    def start(self) -> ReviewLabels:
        """Sync every ``interval_s`` seconds in a background thread (once); returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="inloop-review", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread (after its current sync)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                added = self.sync()
                if added:
                    log.info("review labels: %d became feedback", added)
            except Exception:
                log.exception("review labels: syncing labels into feedback failed")
            self._stop.wait(self.interval_s)


def sync_review_labels(*, engine: Engine | None = None, role_of: RoleOf | None = None) -> int:
    """Record every label given to a routed item as feedback of its requests, now.

    What a server does every second (:class:`ReviewLabels`); for scripts and
    notebooks. Returns how many feedback events were new.
    """
    return ReviewLabels(engine, role_of=role_of).sync()


@dataclass(frozen=True)
class RoutedItem:
    """An instance sent for review: the request, the labeling item and why."""

    request_id: str
    position: int
    project: str
    item_id: int
    reason: str
    routed_at: datetime


def routed_items(
    service: str,
    *,
    since: datetime | None = None,
    limit: int = 100,
    engine: Engine | None = None,
) -> list[RoutedItem]:
    """The instances of ``service`` sent for review, newest first."""
    eng = engine if engine is not None else get_engine()
    with eng.connect() as conn:
        service_id = find_service_id(conn, service)
        query = select(serve_review_items).where(serve_review_items.c.service_id == service_id)
        if since is not None:
            query = query.where(serve_review_items.c.routed_at >= since)
        rows = conn.execute(
            query.order_by(
                serve_review_items.c.routed_at.desc(), serve_review_items.c.position
            ).limit(limit)
        ).all()
    return [
        RoutedItem(r.request_id, r.position, r.project, r.item_id, r.reason, r.routed_at)
        for r in rows
    ]
