"""Feedback events: which label counts, who may give one, and old feedback kept readable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from inloop.serve import (
    FeedbackRoleError,
    MajorityClass,
    ServeError,
    add_feedback,
    create_service,
    get_request,
    register,
)
from inloop.serve.archive import ArchivedRequest, ArchiveWriter
from inloop.serve.feedback import ROLES, FeedbackEvent, resolve
from inloop.serve.policy import Policy, find_service_id
from inloop.serve.scoring import Score
from inloop.store.db import get_engine
from inloop.web.tables import ROLES as WEB_ROLES

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _event(event_id: int, position: int, label: str, role: str | None, minutes: int = 0) -> Any:
    at = AT + timedelta(minutes=minutes)
    return FeedbackEvent(event_id, "r", position, label, f"u{event_id}", role, at, "api")


def test_the_roles_are_the_web_apps_roles_in_order() -> None:
    assert ROLES == WEB_ROLES


def test_per_instance_the_most_trusted_roles_latest_label_counts() -> None:
    events = [
        _event(1, 0, "a", "reviewer", 0),
        _event(2, 0, "b", "annotator", 5),  # later, but less trusted
        _event(3, 1, "b", None, 0),  # given before roles were recorded: the least trusted
        _event(4, 1, "a", "annotator", 1),
        _event(5, 0, "c", "reviewer", 3),  # the reviewer corrects their own
    ]
    feedback = resolve(events, 3)
    assert feedback.labels == ["c", "a", None]
    assert [e.event_id if e else None for e in feedback.chosen] == [5, 4, None]
    assert [e.event_id for e in feedback.history] == [1, 3, 4, 5, 2]  # oldest first
    assert feedback.given_by == "u5, u4" and feedback.given_at == AT + timedelta(minutes=3)


@pytest.fixture
def answered(db_url: str) -> str:
    """Service 'fb' (feedback from reviewers up) with one archived 2-instance request 'q1'."""
    ref = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    policy = Policy(champion=ref, fallback={"label": "a"})
    create_service("fb", policy, created_by="ana", reason="launch")
    with get_engine().connect() as conn:
        service_id = find_service_id(conn, "fb")
    writer = ArchiveWriter(get_engine()).start()
    writer.put(
        ArchivedRequest(
            request_id="q1",
            service="fb",
            service_id=service_id,
            revision=1,
            policy=policy,
            received_at=AT,
            instances=[[0.0], [1.0]],
            n_instances=2,
            model=ref,
            role="champion",
            fallback_used=False,
            predictions=["a", "a"],
            latency_ms=0.3,
            scores=(Score(ref, "champion", "ok", ["a", "a"], None, ["a", "b"]),),
        )
    )
    writer.close()
    return "q1"


def test_python_feedback_checks_the_givers_role_and_keeps_every_label(answered: str) -> None:
    with pytest.raises(FeedbackRoleError, match="'reviewer' or higher"):
        add_feedback("fb", answered, ["b", "b"], by="ana", role="annotator")
    with pytest.raises(ServeError, match="must be one of"):
        add_feedback("fb", answered, ["b", "b"], by="ana", role="boss")
    assert get_request("fb", answered).feedback is None  # refused: nothing recorded
    view = add_feedback("fb", answered, ["b", None], by="rita", role="reviewer")
    assert view.feedback is not None and view.feedback.labels == ["b", None]
    view = add_feedback("fb", answered, [None, "a"], by="sam", role="scientist")
    assert view.feedback is not None and view.feedback.labels == ["b", "a"]
    assert view.feedback.given_by == "rita, sam"
    assert get_request("fb", answered).feedback == view.feedback
    with pytest.raises(ServeError, match="no label"):
        add_feedback("fb", answered, [None, None], by="sam", role="scientist")


def _at_revision(url: str, revision: str) -> Engine:
    from alembic import command
    from alembic.config import Config

    from inloop.store import db

    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).with_name("migrations")))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return engine


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_feedback_given_before_the_events_table_stays_readable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_schemas").create()
    old = _at_revision(url, "0010")
    with old.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO serve_services (name, created_at, created_by) "
                "VALUES ('legacy', :at, 'ana')"
            ),
            {"at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO serve_policies (service_id, revision, action, body, created_at, "
                "created_by, reason) VALUES (1, 1, 'create', :body, :at, 'ana', 'launch')"
            ),
            {"body": '{"champion": "m@1", "fallback": {"label": "a"}}', "at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO serve_requests (request_id, service_id, revision, received_at, "
                "n_instances, model, role, fallback_used, predictions, latency_ms) "
                "VALUES ('old', 1, 1, :at, 2, 'm@1', 'champion', false, '[\"a\", \"a\"]', 1.0)"
            ),
            {"at": AT},
        )
        for minutes, labels in ((1, '["b", "a"]'), (2, '[null, "b"]')):
            conn.execute(
                text(
                    "INSERT INTO serve_feedback (request_id, labels, given_by, given_at) "
                    "VALUES ('old', :labels, 'bo', :at)"
                ),
                {"labels": labels, "at": AT + timedelta(minutes=minutes)},
            )
    old.dispose()
    view = get_request("legacy", "old", engine=get_engine(url))  # migrated to the newest
    assert view.feedback is not None and view.feedback.labels == ["b", "b"]  # newest still wins
    assert [(e.position, e.label, e.role) for e in view.feedback.history] == [
        (0, "b", None),
        (1, "a", None),
        (1, "b", None),
    ]
