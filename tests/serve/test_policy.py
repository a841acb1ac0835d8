"""Services and their policies on SQLite and PostgreSQL: revisions, promotion, rollback."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from inloop.serve import (
    MajorityClass,
    Policy,
    PolicyError,
    ServeError,
    ServiceNotFoundError,
    as_policy,
    create_service,
    current_policy,
    list_services,
    policy_history,
    promote,
    register,
    rollback,
    set_policy,
)
from inloop.store import open_artifact_store


@pytest.fixture
def models(db_url: str) -> list[str]:
    """Four versions of 'digits' and one heuristic 'base', registered on ``db_url``."""
    store = open_artifact_store()
    refs = [
        register(MajorityClass(["a", "b"], [n, 1]), name="digits", artifacts=store).ref
        for n in range(1, 5)
    ]
    register(lambda X: ["a"] * len(X), name="plain", classes=["a", "b"], artifacts=store)
    return [*refs, register(MajorityClass(["a", "b"], [1, 1]), name="base").ref]


def test_create_promote_rollback_and_history(models: list[str]) -> None:
    before = datetime.now(UTC)
    first = create_service(
        "digits-svc",
        {"champion": "digits@1", "canary": "digits@2", "fallback": "base@1"},
        created_by="ana",
        reason="launch",
        description="digits",
    )
    assert (first.revision, first.action, first.previous_revision) == (1, "create", None)
    assert first.policy.schedule.deadline_ms == 50 and first.policy.decoy

    promoted = promote("digits-svc", "digits@3", by="bo", reason="better accuracy")
    assert promoted.policy.champion == "digits@3"
    assert promoted.policy.challengers == ("digits@1",)
    assert promoted.policy.canary == "digits@2" and promoted.policy.fallback == "base@1"
    again = promote("digits-svc", "digits@4", by="bo", reason="newer", keep_old_champion=False)
    assert again.policy.challengers == ("digits@1",)

    back = rollback("digits-svc", by="cy", reason="p99 regressed")
    assert (back.revision, back.restored_revision, back.previous_revision) == (4, 2, 3)
    assert back.policy == promoted.policy
    assert current_policy("digits-svc") == back

    history = policy_history("digits-svc")
    assert [
        (h.revision, h.action, h.created_by, h.reason, h.previous_revision) for h in history
    ] == [
        (1, "create", "ana", "launch", None),
        (2, "promote", "bo", "better accuracy", 1),
        (3, "promote", "bo", "newer", 2),
        (4, "rollback", "cy", "p99 regressed", 3),
    ]
    assert all(before <= h.created_at <= datetime.now(UTC) for h in history)
    assert history[0].created_at.tzinfo is not None

    to_first = rollback("digits-svc", by="cy", reason="start over", to_revision=1)
    assert to_first.policy == first.policy and to_first.restored_revision == 1

    [service] = list_services()
    assert (service.name, service.revision, service.champion) == ("digits-svc", 5, "digits@1")
    assert service.created_by == "ana" and service.description == "digits"


def test_set_policy_is_a_new_revision(models: list[str]) -> None:
    create_service(
        "svc", Policy(champion="digits@1", fallback={"label": "a"}), created_by="ana", reason="go"
    )
    new = set_policy(
        "svc",
        {
            "champion": "digits@2",
            "challengers": ["digits@3", "digits@4"],
            "fallback": {"label": "b"},
            "decoy": False,
            "schedule": {"deadline_ms": 80, "steps": [{"model": "champion", "by_ms": 80}]},
            "review": {"project": "digits-review", "margin_threshold": 0.1, "per_hour_budget": 50},
        },
        by="bo",
        reason="add challengers",
    )
    assert new.revision == 2 and new.previous_revision == 1 and new.action == "set"
    stored = current_policy("svc").policy
    assert stored == new.policy and stored.review is not None
    assert stored.review.per_hour_budget == 50 and stored.fallback.label == "b"  # type: ignore[union-attr]
    assert [h.policy.champion for h in policy_history("svc")] == ["digits@1", "digits@2"]


def test_unknown_refs_are_refused_and_change_nothing(models: list[str]) -> None:
    with pytest.raises(PolicyError, match=r"champion 'digits@9'.*no version 9"):
        create_service(
            "svc", {"champion": "digits@9", "fallback": {"label": "a"}}, created_by="a", reason="r"
        )
    with pytest.raises(PolicyError, match=r"challenger 'nope@1'.*No registered model 'nope'"):
        create_service(
            "svc",
            {"champion": "digits@1", "challengers": ["nope@1"], "fallback": {"label": "a"}},
            created_by="a",
            reason="r",
        )
    with pytest.raises(PolicyError, match=r"fallback 'plain@1' is a callable model"):
        create_service(
            "svc", {"champion": "digits@1", "fallback": "plain@1"}, created_by="a", reason="r"
        )
    assert list_services() == []
    create_service(
        "svc", {"champion": "digits@1", "fallback": {"label": "a"}}, created_by="a", reason="r"
    )
    with pytest.raises(PolicyError, match=r"Cannot promote 'digits@7'.*Its versions: 1, 2, 3, 4"):
        promote("svc", "digits@7", by="a", reason="r")
    with pytest.raises(PolicyError, match=r"promote takes a registered model version 'name@N'"):
        promote("svc", "digits", by="a", reason="r")
    with pytest.raises(PolicyError, match="already the champion"):
        promote("svc", "digits@1", by="a", reason="r")
    with pytest.raises(ServiceNotFoundError, match=r"No service 'other'. Services: 'svc'"):
        promote("other", "digits@2", by="a", reason="r")
    with pytest.raises(PolicyError, match="already exists"):
        create_service(
            "svc", {"champion": "digits@2", "fallback": {"label": "a"}}, created_by="a", reason="r"
        )
    assert [h.revision for h in policy_history("svc")] == [1]


def test_reason_and_author_are_required(models: list[str]) -> None:
    create_service(
        "svc", {"champion": "digits@1", "fallback": {"label": "a"}}, created_by="a", reason="r"
    )
    for reason in ("", "   ", None):
        with pytest.raises(PolicyError, match=r"'reason' of promote is required.*Got"):
            promote("svc", "digits@2", by="ana", reason=reason)  # type: ignore[arg-type]
        with pytest.raises(PolicyError, match=r"'reason' of rollback is required"):
            rollback("svc", by="ana", reason=reason)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=r"'by' of set_policy is required"):
        set_policy("svc", {"champion": "digits@2", "fallback": {"label": "a"}}, by="", reason="r")
    with pytest.raises(PolicyError, match=r"no earlier revision 0.*only its first policy"):
        rollback("svc", by="ana", reason="oops")
    promote("svc", "digits@2", by="ana", reason="r")
    with pytest.raises(PolicyError, match=r"no earlier revision 2 .*from 1 to 1"):
        rollback("svc", by="ana", reason="oops", to_revision=2)
    assert [h.revision for h in policy_history("svc")] == [1, 2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fallback": {"label": 0}}, r"champion: is required"),
        ({"champion": "digits", "fallback": {"label": 0}}, r"champion: must be a registered"),
        ({"champion": "d@1"}, r"fallback: is required"),
        ({"champion": "d@1", "fallback": "base"}, r"fallback: must be a registered heuristic"),
        (
            {"champion": "d@1", "challengers": ["d@1"], "fallback": {"label": 0}},
            r"champion 'd@1' cannot also be a challenger",
        ),
        (
            {"champion": "d@1", "challengers": ["d@2", "d@2"], "fallback": {"label": 0}},
            r"challengers: must not list a model version twice",
        ),
        (
            {"champion": "d@1", "canary": "d@1", "fallback": {"label": 0}},
            r"canary 'd@1' must be a model version that is neither",
        ),
        (
            {
                "champion": "d@1",
                "fallback": {"label": 0},
                "schedule": {
                    "steps": [{"model": "best", "by_ms": 30}, {"model": "x", "by_ms": 40}]
                },
            },
            r"schedule.steps.1.model: Input should be 'champion', 'best' or 'fallback'",
        ),
        (
            {
                "champion": "d@1",
                "fallback": {"label": 0},
                "schedule": {
                    "steps": [{"model": "champion", "by_ms": 30}, {"model": "best", "by_ms": 20}]
                },
            },
            r"schedule: the by_ms of the steps must strictly increase; got \[30, 20\]",
        ),
        (
            {
                "champion": "d@1",
                "fallback": {"label": 0},
                "schedule": {"deadline_ms": 40, "steps": [{"model": "best", "by_ms": 50}]},
            },
            r"by_ms must be <= deadline_ms \(40\); got \[50\]",
        ),
        (
            {
                "champion": "d@1",
                "fallback": {"label": 0},
                "schedule": {
                    "steps": [{"model": "fallback", "by_ms": 10}, {"model": "best", "by_ms": 20}]
                },
            },
            r"a 'fallback' step may only be the last step",
        ),
        (
            {"champion": "d@1", "fallback": {"label": 0}, "schedule": {"deadline_ms": 0}},
            r"schedule.deadline_ms: Input should be greater than 0. Got 0",
        ),
        (
            {"champion": "d@1", "fallback": {"label": 0}, "speed": "fast"},
            r"speed: Extra inputs are not permitted. Got 'fast'",
        ),
    ],
)
def test_bad_policies_name_the_field_and_value(body: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        as_policy(body)
    assert isinstance(info.value, ServeError)


def test_schedules() -> None:
    policy = as_policy(
        {
            "champion": "d@1",
            "fallback": {"label": 0},
            "schedule": {
                "deadline_ms": 60,
                "steps": [
                    {"model": "champion", "by_ms": 20},
                    {"model": "best", "by_ms": 50},
                    {"model": "fallback", "by_ms": 60},
                ],
            },
        }
    )
    assert [s.model for s in policy.schedule.steps] == ["champion", "best", "fallback"]
    default = as_policy({"champion": "d@1", "fallback": {"label": 0}}).schedule
    assert [(s.model, s.by_ms) for s in default.steps] == [("champion", 20), ("best", 50)]
    with pytest.raises(PolicyError, match=r"A policy must be a Policy or a dict"):
        as_policy("d@1")  # type: ignore[arg-type]


def test_concurrent_promotions_give_consecutive_revisions(models: list[str]) -> None:
    create_service(
        "svc", {"champion": "digits@1", "fallback": {"label": "a"}}, created_by="a", reason="r"
    )
    refs = ["digits@2", "digits@3", "digits@4"]
    barrier = threading.Barrier(len(refs))
    errors: list[BaseException] = []

    def run(ref: str) -> None:
        barrier.wait()
        try:
            promote("svc", ref, by=f"user-{ref}", reason="race")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = policy_history("svc")
    assert [(h.revision, h.previous_revision) for h in history] == [
        (1, None),
        (2, 1),
        (3, 2),
        (4, 3),
    ]
    # Each promotion saw the one before it: the old champion became a challenger in turn.
    for before, after in pairwise(history):
        assert after.policy.challengers[0] == before.policy.champion
    assert sorted(h.policy.champion for h in history[1:]) == refs
    assert len(set(history[-1].policy.challengers)) == 3
