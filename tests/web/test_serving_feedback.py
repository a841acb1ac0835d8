"""Ground truth has owners: feedback through /v1 is an append-only event with who, role, when.

Runs on SQLite and PostgreSQL through the real app.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.label import create_project
from inloop.serve import MajorityClass, create_service, evaluate, get_request, register
from inloop.web import create_app
from inloop.web.access import add_member
from inloop.web.auth import create_user


@pytest.fixture
def app_client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine, learners=False)) as client:
        yield client


def _service(engine: Engine, name: str, **policy: Any) -> None:
    """``name``: a MajorityClass champion that says 'a', a patient deadline, and ``policy``."""
    champion = register(MajorityClass(["a", "b"], [3, 1]), name="m", engine=engine).ref
    create_service(
        name,
        {
            "champion": champion,
            "fallback": {"label": "a"},
            "schedule": {"deadline_ms": 5000},
            **policy,
        },
        created_by="t",
        reason="t",
        engine=engine,
    )


def _headers(engine: Engine, name: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user(name, role, engine=engine)}"}


def _answered(client: TestClient, service: str, headers: dict[str, str]) -> str:
    answer = client.post(
        f"/v1/services/{service}/predict", json={"instance": [0.5]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    client.app.state.rendezvous.archive.flush(10)  # type: ignore[attr-defined]
    return str(answer.json()["request_id"])


def _feedback(
    client: TestClient, service: str, request_id: str, label: str, headers: dict[str, str]
) -> Any:
    return client.post(
        f"/v1/services/{service}/feedback",
        json={"request_id": request_id, "label": label},
        headers=headers,
    )


def test_an_annotator_cannot_replace_a_reviewers_label(
    engine: Engine, app_client: TestClient
) -> None:
    _service(engine, "owned")
    ana, rita = _headers(engine, "ana", "annotator"), _headers(engine, "rita", "reviewer")
    request_id = _answered(app_client, "owned", ana)
    given = _feedback(app_client, "owned", request_id, "b", rita)
    assert given.status_code == 201, given.text
    assert given.json()["in_effect"] == ["b"] and given.json()["correct"] == {"m@1": [False]}

    refused = _feedback(app_client, "owned", request_id, "a", ana)
    assert refused.status_code == 403
    detail = refused.json()["detail"]
    assert "'reviewer' or higher" in detail and "'annotator'" in detail

    shown = app_client.get(f"/v1/services/owned/requests/{request_id}", headers=rita).json()
    feedback = shown["feedback"]
    assert feedback["labels"] == ["b"] and feedback["given_by"] == "rita"
    assert [(e["label"], e["given_by"], e["role"]) for e in feedback["history"]] == [
        ("b", "rita", "reviewer")
    ]


def test_the_most_trusted_roles_latest_label_is_the_one_used(
    engine: Engine, app_client: TestClient
) -> None:
    _service(engine, "open", feedback_role="annotator")
    ana, rita = _headers(engine, "ana", "annotator"), _headers(engine, "rita", "reviewer")
    sam = _headers(engine, "sam", "scientist")
    request_id = _answered(app_client, "open", ana)
    assert _feedback(app_client, "open", request_id, "a", rita).status_code == 201
    late = _feedback(app_client, "open", request_id, "b", ana)  # allowed, but less trusted
    assert late.status_code == 201 and late.json()["in_effect"] == ["a"]
    assert get_request("open", request_id, engine=engine).feedback.labels == ["a"]  # type: ignore[union-attr]
    assert [e.accuracy for e in evaluate("open", engine=engine)] == [1.0]

    assert _feedback(app_client, "open", request_id, "b", rita).json()["in_effect"] == ["b"]
    assert _feedback(app_client, "open", request_id, "a", ana).json()["in_effect"] == ["b"]
    assert [e.accuracy for e in evaluate("open", engine=engine)] == [0.0]
    assert _feedback(app_client, "open", request_id, "a", sam).json()["in_effect"] == ["a"]

    view = get_request("open", request_id, engine=engine)
    assert view.feedback is not None and view.feedback.given_by == "sam"
    history = [(e.label, e.given_by, e.role, e.source) for e in view.feedback.history]
    assert history == [
        ("a", "rita", "reviewer", "api"),
        ("b", "ana", "annotator", "api"),
        ("b", "rita", "reviewer", "api"),
        ("a", "ana", "annotator", "api"),
        ("a", "sam", "scientist", "api"),
    ]


def test_a_service_may_allow_only_scientists(engine: Engine, app_client: TestClient) -> None:
    _service(engine, "strict", feedback_role="scientist")
    rita = _headers(engine, "rita", "reviewer")
    request_id = _answered(app_client, "strict", rita)
    refused = _feedback(app_client, "strict", request_id, "a", rita)
    assert refused.status_code == 403 and "(scientist, admin)" in refused.json()["detail"]
    admin = _headers(engine, "root", "admin")
    assert _feedback(app_client, "strict", request_id, "a", admin).status_code == 201


def test_a_label_given_on_the_labeling_api_becomes_feedback_within_seconds(
    engine: Engine, app_client: TestClient
) -> None:
    create_project("queue", ["a", "b"], engine=engine)
    champion = register(MajorityClass(["a", "b"], [3, 1]), name="m", engine=engine).ref
    canary = register(MajorityClass(["a", "b"], [1, 3]), name="m", engine=engine).ref
    create_service(
        "routed",
        {
            "champion": champion,
            "canary": canary,  # disagrees with the champion: every request goes to review
            "fallback": {"label": "a"},
            "schedule": {"deadline_ms": 5000},
            "review": {"project": "queue"},
        },
        created_by="t",
        reason="t",
        engine=engine,
    )
    ana, rita = _headers(engine, "ana", "annotator"), _headers(engine, "rita", "scientist")
    add_member("queue", "ana", added_by="t", engine=engine)
    ids = [_answered(app_client, "routed", ana) for _ in range(3)]  # one input, three times
    [lease] = app_client.post("/api/projects/queue/next", json={"n": 5}, headers=ana).json()[
        "leases"
    ]
    assert lease["item"]["count"] == 3
    body = {"item_id": lease["item"]["id"], "label": "b", "seconds": 1.0}
    assert (
        app_client.post("/api/projects/queue/annotations", json=body, headers=ana).status_code
        == 201
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        views = [get_request("routed", i, engine=engine) for i in ids]
        if all(v.feedback is not None for v in views):
            break
        time.sleep(0.05)
    for request_id in ids:
        shown = app_client.get(f"/v1/services/routed/requests/{request_id}", headers=rita)
        feedback = shown.json()["feedback"]
        assert feedback is not None and feedback["labels"] == ["b"]
        assert [(e["given_by"], e["role"], e["source"]) for e in feedback["history"]] == [
            ("ana", "annotator", "review")
        ]
