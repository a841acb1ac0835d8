"""Human review: send the requests where models differ to a labeling project's queue.

A policy with ``review`` (:class:`~inloop.serve.policy.ReviewSettings`) names
a labeling project. After a request is archived, each of its instances is
sent there when the champion's margin (top probability minus the next) is
below ``margin_threshold``, or — with ``disagreement`` — when a challenger or
the canary predicts another class. At most ``per_hour_budget`` instances an
hour go to the queue; the smaller the champion's margin, the higher the
item's priority. Each item's external id is ``<request_id>-<position>`` and
its source ``serving``; the reason it was sent is kept in
``serve_review_items`` (:func:`routed_items`) and is the item's ``note``, which
the labeling page shows beside the item.

>>> from inloop.serve.scoring import Score
>>> champion = Score("m@2", "champion", "ok", [3], [[0.1, 0.5, 0.4]], [1, 3, 5])
>>> canary = Score("m@1", "canary", "ok", [5], [[0.1, 0.2, 0.7]], [1, 3, 5])
>>> review_reasons([champion, canary], margin_threshold=0.2, disagreement=True)
[(0, 'margin 0.10 < 0.20 (champion m@2); m@1 (canary) says 5, the champion m@2 says 3', 0.9)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from inloop.serve.archive import ArchivedRequest
from inloop.serve.policy import find_service_id
from inloop.serve.scoring import Score
from inloop.serve.tables import serve_review_items
from inloop.store.db import begin_write, get_engine

__all__ = ["ReviewRouter", "RoutedItem", "review_reasons", "routed_items"]

log = logging.getLogger("inloop.serve.review")

#: The source of the labeling items review routing creates.
SOURCE = "serving"


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


class ReviewRouter:
    """An :class:`~inloop.serve.archive.ArchiveWriter` hook that fills review queues.

    A project that does not exist (or does not take the instances) is logged
    once per service and project, and skipped; serving goes on.
    """

    def __init__(self, engine: Engine | None = None, *, artifacts: Any = None) -> None:
        self.engine = engine if engine is not None else get_engine()
        self._artifacts = artifacts
        self._warned: set[tuple[str, str]] = set()

    def __call__(self, batch: Sequence[ArchivedRequest]) -> None:
        by_service: dict[int, list[ArchivedRequest]] = {}
        for record in batch:
            if record.policy.review is not None and record.instances is not None:
                by_service.setdefault(record.service_id, []).append(record)
        for records in by_service.values():
            self._route(records)

    def _route(self, records: list[ArchivedRequest]) -> None:
        from inloop.label.items import insert_items, prepare_items
        from inloop.label.projects import LabelError, load_project

        first = records[0]
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            routed_last_hour = conn.execute(
                select(func.count())
                .select_from(serve_review_items)
                .where(
                    serve_review_items.c.service_id == first.service_id,
                    serve_review_items.c.routed_at > now - timedelta(hours=1),
                )
            ).scalar_one()
        items: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
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
                if budget is not None and routed_last_hour + len(routes) >= budget:
                    break
                items.append(
                    {
                        "external_id": f"{record.request_id}-{position}",
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
        if not items:
            return
        # Policies in one batch may name different projects (a policy changed mid-batch).
        by_project: dict[str, list[int]] = {}
        for index, route in enumerate(routes):
            by_project.setdefault(route["project"], []).append(index)
        for project, indexes in by_project.items():
            try:
                with self.engine.connect() as conn:
                    record_project = load_project(conn, project)
                rows = prepare_items(record_project, [items[i] for i in indexes], self._artifacts)
                with begin_write(self.engine) as conn:
                    ids = insert_items(conn, record_project, rows)
                    conn.execute(
                        serve_review_items.insert(),
                        [
                            {**routes[i], "item_id": item_id}
                            for i, item_id in zip(indexes, ids, strict=True)
                        ],
                    )
            except (LabelError, LookupError) as exc:
                key = (first.service, project)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning(
                        "service %s: cannot send requests for review to project %r: %s",
                        first.service,
                        project,
                        exc,
                    )


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
