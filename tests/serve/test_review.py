"""Review routing and back: identical inputs are one counted item; its labels become feedback."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from inloop.label import annotate, create_project, get_items
from inloop.serve import (
    MajorityClass,
    create_service,
    evaluate,
    get_request,
    register,
    routed_items,
    sync_review_labels,
)
from inloop.serve.archive import ArchivedRequest, ArchiveWriter
from inloop.serve.policy import Policy, find_service_id
from inloop.serve.review import ReviewLabels, ReviewRouter
from inloop.serve.scoring import Score
from inloop.store.db import get_engine

ROLES = {"ana": "annotator", "rita": "reviewer"}
_ids = itertools.count()


class Service:
    """Service 'rev': the champion says 0, the canary 1, so every request goes to review."""

    def __init__(self, budget: int | None = None) -> None:
        self.champion = register(MajorityClass([0, 1], [3, 1]), name="m").ref
        self.canary = register(MajorityClass([0, 1], [1, 3]), name="m").ref
        create_project("rev-queue", ["0", "1"])
        self.policy = Policy(
            champion=self.champion,
            canary=self.canary,
            fallback={"label": 0},
            review={"project": "rev-queue", "per_hour_budget": budget},
        )
        create_service("rev", self.policy, created_by="ana", reason="launch")
        with get_engine().connect() as conn:
            self.service_id = find_service_id(conn, "rev")

    def record(self, instance: list[float]) -> ArchivedRequest:
        return ArchivedRequest(
            request_id=f"q{next(_ids)}",
            service="rev",
            service_id=self.service_id,
            revision=1,
            policy=self.policy,
            received_at=datetime.now(UTC),
            instances=[instance],
            n_instances=1,
            model=self.champion,
            role="champion",
            fallback_used=False,
            predictions=[0],
            latency_ms=0.5,
            scores=(
                Score(self.champion, "champion", "ok", [0], [[0.75, 0.25]], [0, 1]),
                Score(self.canary, "canary", "ok", [1], [[0.25, 0.75]], [0, 1]),
            ),
        )

    def serve(self, records: list[ArchivedRequest], batch: int = 8) -> list[str]:
        """Archive ``records`` (in batches) with review routing; their ids."""
        writer = ArchiveWriter(
            get_engine(), hooks=[ReviewRouter(get_engine(), role_of=ROLES.get)], max_batch=batch
        ).start()
        for record in records:
            writer.put(record)
        writer.close()
        return [r.request_id for r in records]


@pytest.fixture
def service(db_url: str) -> Service:
    return Service()


def test_identical_inputs_routed_many_times_become_one_counted_item(service: Service) -> None:
    ids = service.serve([service.record([0.5]) for _ in range(40)] + [service.record([0.7])])
    items = get_items("rev-queue")
    assert sorted(i.count for i in items) == [1, 40]
    assert len({i.external_id for i in items}) == 2
    routed = routed_items("rev", limit=100)
    assert sorted(r.request_id for r in routed) == sorted(ids)  # every request is remembered
    assert len({r.item_id for r in routed}) == 2


def test_the_budget_counts_items_not_repeats(db_url: str) -> None:
    service = Service(budget=2)
    service.serve([service.record([0.5]) for _ in range(10)] + [service.record([0.6])], batch=100)
    service.serve([service.record([0.9])])  # a third input: over the budget
    assert sorted(i.count for i in get_items("rev-queue")) == [1, 10]


def test_a_label_given_in_the_project_becomes_feedback_of_every_request_routed_there(
    service: Service,
) -> None:
    first = service.serve([service.record([0.5]) for _ in range(3)])
    [item] = get_items("rev-queue")
    annotate("rev-queue", item.item_id, "ana", "1")
    assert sync_review_labels(role_of=ROLES.get) == 3
    for request_id in first:
        feedback = get_request("rev", request_id).feedback
        assert feedback is not None and feedback.labels == [1]  # the models' class, not "1"
        [event] = feedback.history
        assert (event.given_by, event.role, event.source) == ("ana", "annotator", "review")
        assert event.project == "rev-queue"
    assert sync_review_labels(role_of=ROLES.get) == 0  # recorded once

    # The same input served after the label was given gets it at once.
    [later] = service.serve([service.record([0.5])])
    assert get_request("rev", later).feedback.labels == [1]  # type: ignore[union-attr]

    # A reviewer's decision outranks the annotator's label, on every request.
    annotate("rev-queue", item.item_id, "rita", "0", origin="review")
    labels = ReviewLabels(get_engine(), role_of=ROLES.get)
    assert labels.sync() == 4
    assert labels.sync() == 0
    for request_id in [*first, later]:
        feedback = get_request("rev", request_id).feedback
        assert feedback is not None and feedback.labels == [0] and feedback.given_by == "rita"
    # Joined to every model's score: the champion (0) right, the canary (1) wrong.
    accuracy = {e.model: e.accuracy for e in evaluate("rev")}
    assert accuracy == {service.champion: 1.0, service.canary: 0.0}


def test_without_a_role_lookup_the_origin_says_the_role(service: Service) -> None:
    [request_id] = service.serve([service.record([0.5])])
    [item] = get_items("rev-queue")
    annotate("rev-queue", item.item_id, "ana", None)  # a skip is no label
    annotate("rev-queue", item.item_id, "bot", "1", origin="model")  # nor is a model's
    annotate("rev-queue", item.item_id, "rita", "0", origin="review")
    assert sync_review_labels() == 1
    feedback = get_request("rev", request_id).feedback
    assert feedback is not None and [(e.given_by, e.role) for e in feedback.history] == [
        ("rita", "reviewer")
    ]
