"""The serving API under /v1, through the real app: predict, feedback, promote, rollback, review.

Runs on SQLite and PostgreSQL; the app's own rendezvous scores in process and
its archive routes disagreements to a labeling project and fires webhooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine, select, update

from inloop.label import create_project, get_items
from inloop.label.items import MAX_NOTE_CHARS
from inloop.serve import (
    PolicyError,
    create_service,
    current_policy,
    majority_class_from,
    policy_history,
    register,
    set_policy,
)
from inloop.serve.actions import list_deliveries
from inloop.serve.archive import ArchivedRequest, count_requests
from inloop.serve.review import ReviewRouter, input_key, routed_items
from inloop.serve.scoring import Score
from inloop.serve.tables import serve_services
from inloop.settings import reset_settings
from inloop.web import create_app
from inloop.web import serving as serving_module
from inloop.web.auth import User, create_user, disable_user, revoke_token
from inloop.web.serving import TokenCache
from inloop.web.tables import web_tokens

#: These tests are about the API, not the deadline: a cold first request (a sign-in, loading
#: the policy's models) on a busy CI machine may take longer than the default 50 ms.
PATIENT = {"deadline_ms": 5000}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def models(engine: Engine, digits: tuple[np.ndarray, np.ndarray]) -> dict[str, str]:
    X, y = digits
    return {
        "champion": register(
            LogisticRegression(max_iter=500).fit(X[:1200], y[:1200]), name="digits", engine=engine
        ).ref,
        "challenger": register(
            LogisticRegression(max_iter=500, C=0.05).fit(X[:300], y[:300]),
            name="digits",
            engine=engine,
        ).ref,
        "canary": register(
            LogisticRegression(max_iter=200, C=0.01).fit(X[:40], y[:40]),
            name="digits-old",
            engine=engine,
        ).ref,
        "base": register(majority_class_from(y), name="base", engine=engine).ref,
    }


@pytest.fixture
def app_client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine, learners=False)) as client:
        yield client


def _auth(engine: Engine, name: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user(name, role, engine=engine)}"}


def _champion_only(
    engine: Engine, champion: str, fallback: Any = None, name: str = "digits"
) -> None:
    """Service ``name``: ``champion`` alone, a patient deadline, and ``fallback``.

    The fallback defaults to a default answer (label 0).
    """
    fallback = {"label": 0} if fallback is None else fallback
    create_service(
        name,
        {"champion": champion, "fallback": fallback, "schedule": PATIENT},
        created_by="a",
        reason="t",
        engine=engine,
    )


def _predict(client: TestClient, service: str, instance: Any, headers: dict[str, str]) -> Any:
    return client.post(
        f"/v1/services/{service}/predict", json={"instance": instance}, headers=headers
    )


def test_predict_one_and_many_then_feedback(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
) -> None:
    X, y = digits
    create_service(
        "digits",
        {
            "champion": models["champion"],
            "challengers": [models["challenger"]],
            "canary": models["canary"],
            "fallback": models["base"],
            "schedule": PATIENT,
        },
        created_by="ana",
        reason="launch",
        engine=engine,
    )
    app_user = _auth(engine, "app", "annotator")
    one = app_client.post(
        "/v1/services/digits/predict", json={"instance": X[1600].tolist()}, headers=app_user
    )
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == models["champion"] and body["role"] == "champion"
    assert body["fallback_used"] is False and body["revision"] == 1
    assert body["overloaded"] is False
    assert body["prediction"] == int(y[1600]) and len(body["probabilities"]) == 10
    assert body["classes"] == list(range(10)) and body["latency_ms"] > 0

    many = app_client.post(
        "/v1/services/digits/predict",
        json={"instances": X[1601:1611].tolist()},
        headers=app_user,
    ).json()
    assert len(many["predictions"]) == 10 and len(many["probabilities"]) == 10

    rita = _auth(engine, "rita", "reviewer")
    fb = app_client.post(
        "/v1/services/digits/feedback",
        json={"request_id": many["request_id"], "labels": y[1601:1611].tolist()},
        headers=rita,
    )
    assert fb.status_code == 201, fb.text
    correct = fb.json()["correct"]
    assert set(correct) == {models["champion"], models["challenger"], models["canary"]}
    assert correct[models["champion"]] == [
        p == t for p, t in zip(many["predictions"], y[1601:1611].tolist(), strict=True)
    ]

    sci = _auth(engine, "sci", "scientist")
    archived = app_client.get(
        f"/v1/services/digits/requests/{body['request_id']}", headers=sci
    ).json()
    assert archived["inputs"] == [X[1600].tolist()]
    assert set(archived["scores"]) == set(correct)
    # The server wrote them from its archive process, off the event loop's GIL.
    writer = app_client.app.state.rendezvous.archive  # type: ignore[attr-defined]
    assert writer.process_pid not in (None, os.getpid())
    assert (
        app_client.get(
            f"/v1/services/digits/requests/{body['request_id']}", headers=app_user
        ).status_code
        == 403
    )  # inputs are for reviewers and up


def test_a_server_far_behind_refuses_predict_requests_at_once(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
) -> None:
    X, _ = digits
    create_service(
        "busy",
        {
            "champion": models["champion"],
            "fallback": models["base"],
            "schedule": {"deadline_ms": 150},
        },
        created_by="ana",
        reason="launch",
        engine=engine,
    )
    headers = _auth(engine, "app", "annotator")
    rendezvous = app_client.app.state.rendezvous

    def ask() -> Any:
        return _predict(app_client, "busy", X[0].tolist(), headers)

    assert ask().status_code == 200

    async def stall() -> None:
        time.sleep(0.8)  # the loop does nothing else: more than 4 deadlines of 150 ms

    app_client.portal.start_task_soon(stall)
    refused = ask()  # waits behind the stall, then is refused before any work
    time.sleep(0.1)  # the loop has caught up
    after = ask()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    detail = refused.json()["detail"]
    assert "overloaded" in detail and "'busy'" in detail and "150 ms deadline" in detail
    assert after.status_code == 200 and after.json()["overloaded"] is False
    assert rendezvous.refused == 1
    # The refused request was never taken: only the other two are archived.
    deadline = time.monotonic() + 10
    while count_requests("busy", engine=engine) < 2 and time.monotonic() < deadline:
        rendezvous.archive.flush(1.0)
    assert count_requests("busy", engine=engine) == 2


def test_requests_with_one_token_share_one_lookup() -> None:
    async def main() -> tuple[list[str], list[User | None], User | None]:
        cache, calls, release = TokenCache(), [], asyncio.Event()

        async def lookup(token: str) -> User | None:
            calls.append(token)
            await release.wait()
            return User("ana", "annotator")

        waiting = [asyncio.create_task(cache.user("tok", lookup)) for _ in range(50)]
        await asyncio.sleep(0.05)
        release.set()
        users = await asyncio.gather(*waiting)
        return calls, users, await cache.user("tok", lookup)

    calls, users, again = asyncio.run(main())
    assert calls == ["tok"]  # one lookup for 50 requests, none for the one after
    assert set(users) == {User("ana", "annotator")} and again == User("ana", "annotator")


def test_a_cached_token_is_looked_up_again_in_the_background_and_a_revoked_one_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving_module, "TOKEN_CACHE_SECONDS", 0.4)

    async def main() -> list[Any]:
        cache, calls, release = TokenCache(), [], asyncio.Event()

        async def lookup(token: str) -> User | None:
            calls.append(token)
            if len(calls) == 1:
                return User("ana", "annotator")
            await release.wait()
            return None  # revoked meanwhile

        first = await cache.user("tok", lookup)
        await asyncio.sleep(0.25)  # past half the cache time
        # Answered from the cache at once, while a new lookup runs in the background.
        stale = await asyncio.wait_for(cache.user("tok", lookup), 0.1)
        looked_up_again = len(calls)
        release.set()
        await asyncio.sleep(0.05)
        return [first, stale, looked_up_again, await cache.user("tok", lookup), len(calls)]

    first, stale, looked_up_again, after, n_calls = asyncio.run(main())
    assert first == stale == User("ana", "annotator") and looked_up_again == 2
    assert after is None and n_calls == 3  # the revoked token was dropped, so looked up again


def test_a_failed_token_lookup_reaches_every_waiter_and_is_not_kept() -> None:
    async def main() -> tuple[list[Any], User | None]:
        cache, calls = TokenCache(), []

        async def lookup(token: str) -> User | None:
            calls.append(token)
            await asyncio.sleep(0.02)
            if len(calls) == 1:
                raise ConnectionError("database is down")
            return User("ana", "annotator")

        failed = await asyncio.gather(
            cache.user("tok", lookup), cache.user("tok", lookup), return_exceptions=True
        )
        return failed, await cache.user("tok", lookup)

    failed, after = asyncio.run(main())
    assert [type(e) for e in failed] == [ConnectionError, ConnectionError]
    assert after == User("ana", "annotator")


def test_a_revoked_token_stops_predicting_within_the_cache_time(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving_module, "TOKEN_CACHE_SECONDS", 0.5)
    X, _ = digits
    _champion_only(engine, models["champion"], models["base"])
    headers = _auth(engine, "app", "annotator")

    def ask() -> Any:
        return _predict(app_client, "digits", X[0].tolist(), headers)

    assert ask().status_code == 200
    with engine.begin() as conn:
        conn.execute(update(web_tokens).values(revoked_at=datetime.now(UTC)))
    revoked_at = time.monotonic()
    while (response := ask()).status_code == 200 and time.monotonic() - revoked_at < 10:
        time.sleep(0.05)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert time.monotonic() - revoked_at < 0.5 + 2.0  # the cache time, and a busy CI's slack


def test_a_token_revoked_or_a_user_disabled_through_the_server_stops_predicting_at_once(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
) -> None:
    X, _ = digits
    _champion_only(engine, models["champion"])
    root = _auth(engine, "root", "admin")
    app = _auth(engine, "app", "annotator")
    other = _auth(engine, "other", "annotator")
    for headers in (app, other, app, other):  # the second time from the token cache
        assert _predict(app_client, "digits", X[0].tolist(), headers).status_code == 200
    revoked = app_client.delete("/api/users/app/tokens/default", headers=root)
    assert revoked.status_code == 200
    refused = _predict(app_client, "digits", X[0].tolist(), app)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert app_client.post("/api/users/other/disable", headers=root).status_code == 200
    assert _predict(app_client, "digits", X[0].tolist(), other).status_code == 401


def _revoke(engine: Engine) -> None:
    revoke_token("app", "default", by="root", engine=engine)


def _revoke_by_cli(engine: Engine) -> None:
    create_user("root", "admin", engine=engine)
    url = engine.url.render_as_string(hide_password=False)
    command = ["users", "token-revoke", "app", "default"]
    done = subprocess.run(
        [sys.executable, "-c", "from inloop.cli.main import main; main()", *command],
        env={**os.environ, "INLOOP_DB_URL": url, "INLOOP_USER": "root"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _disable(engine: Engine) -> None:
    disable_user("app", by="root", engine=engine)


@pytest.mark.parametrize("change", [_revoke_by_cli, _disable], ids=["cli-revoke", "disable"])
def test_a_change_made_by_another_process_stops_predicting_within_the_check_time(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
    change: Any,
) -> None:
    # Made by `inloop users` in its own process, or by a function call that does not tell
    # the app: the server must notice in the database.
    X, _ = digits
    _champion_only(engine, models["champion"])
    headers = _auth(engine, "app", "annotator")

    def ask() -> Any:
        return _predict(app_client, "digits", X[0].tolist(), headers)

    assert ask().status_code == 200 and ask().status_code == 200
    change(engine)
    # Well before the token cache's own time would end the token (TOKEN_CACHE_SECONDS / 2).
    deadline = time.monotonic() + serving_module.ACCESS_CHECK_SECONDS + 2.0
    assert deadline - time.monotonic() < serving_module.TOKEN_CACHE_SECONDS / 2
    while (response := ask()).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert response.status_code == 401


def test_an_idle_server_refuses_a_revoked_token_on_the_first_request(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving_module, "ACCESS_CHECK_SECONDS", 0.3)
    X, _ = digits
    _champion_only(engine, models["champion"])
    headers = _auth(engine, "app", "annotator")
    assert _predict(app_client, "digits", X[0].tolist(), headers).status_code == 200
    last_request = time.monotonic()
    _revoke(engine)
    # No request for longer than the check time: no check ran since the revocation.
    while time.monotonic() < last_request + serving_module.ACCESS_CHECK_SECONDS:
        time.sleep(0.01)
    assert _predict(app_client, "digits", X[0].tolist(), headers).status_code == 401


def test_request_errors_say_what_is_accepted(
    engine: Engine, models: dict[str, str], app_client: TestClient
) -> None:
    _champion_only(engine, models["champion"])
    user = _auth(engine, "app", "annotator")
    post = app_client.post
    assert post("/v1/services/digits/predict", json={"instance": [0.0] * 64}).status_code == 401
    both = post(
        "/v1/services/digits/predict",
        json={"instance": [0.0] * 64, "instances": [[0.0] * 64]},
        headers=user,
    )
    assert both.status_code == 422 and "exactly one of 'instance'" in both.json()["detail"]
    short = post("/v1/services/digits/predict", json={"instance": [0.0] * 3}, headers=user)
    assert short.status_code == 400 and "64 features" in short.json()["detail"]
    missing = post("/v1/services/nope/predict", json={"instance": [0.0] * 64}, headers=user)
    assert missing.status_code == 404 and "'digits'" in missing.json()["detail"]
    rita = _auth(engine, "rita", "reviewer")
    unknown = post(
        "/v1/services/digits/feedback", json={"request_id": "x" * 32, "label": 1}, headers=rita
    )
    assert unknown.status_code == 404 and "no archived request" in unknown.json()["detail"]


_ROW = [0.5] * 64
#: Predict bodies: (body, content type, status, answered in front of FastAPI).
_BODIES = [
    (json.dumps({"instance": _ROW}), "application/json", 200, True),
    (json.dumps({"instances": [_ROW, _ROW]}), "application/json; charset=utf-8", 200, True),
    (json.dumps({"instance": [0.5] * 3}), "application/json", 400, True),
    (json.dumps({"instances": []}), "application/json", 400, True),
    (json.dumps({"instance": _ROW}), "application/vnd.api+json", 200, False),
    (json.dumps({"instance": None}), "application/json", 422, False),
    (json.dumps({"instance": _ROW, "extra": 1}), "application/json", 422, False),
    (json.dumps({"instances": "abc"}), "application/json", 422, False),
    ('{"instance": [0.5', "application/json", 422, False),
    (json.dumps({"instance": _ROW}), "text/plain", 422, False),
]


def test_a_signed_in_json_request_gets_the_routes_answer_without_the_route(
    engine: Engine,
    models: dict[str, str],
    app_client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cached token and a plain JSON body are answered in front of FastAPI; anything else
    # goes on to the route. Either way the caller gets what the route would say.
    _champion_only(engine, models["champion"])
    routed: list[str] = []
    real_user = TokenCache.user

    async def user_seen_by_the_route(self: TokenCache, token: str, lookup: Any) -> Any:
        routed.append(token)
        return await real_user(self, token, lookup)

    monkeypatch.setattr(TokenCache, "user", user_seen_by_the_route)
    cached = _auth(engine, "cached", "annotator")
    assert (
        app_client.post(
            "/v1/services/digits/predict", json={"instance": _ROW}, headers=cached
        ).status_code
        == 200
    )  # the route looks the token up and caches it
    for i, (body, content_type, status, answered_here) in enumerate(_BODIES):

        def post(
            headers: dict[str, str], body: str = body, content_type: str = content_type
        ) -> Any:
            return app_client.post(
                "/v1/services/digits/predict",
                content=body,
                headers={**headers, "Content-Type": content_type},
            )

        routed.clear()
        first = post(cached)
        if answered_here:
            assert routed == [], body  # FastAPI's dependencies never ran
        by_route = post(_auth(engine, f"new{i}", "annotator"))  # not cached: the route answers
        assert first.status_code == by_route.status_code == status, (first.text, by_route.text)
        ours, theirs = first.json(), by_route.json()
        if status == 200:
            assert ours.pop("request_id") != theirs.pop("request_id")
            ours.pop("latency_ms"), theirs.pop("latency_ms")
        assert ours == theirs, body


def test_an_unknown_service_gets_the_routes_not_found(
    engine: Engine, models: dict[str, str], app_client: TestClient
) -> None:
    _champion_only(engine, models["champion"], models["base"], name="broken")
    cached = _auth(engine, "app", "annotator")
    post = app_client.post
    assert post("/v1/services/broken/predict", json={"instance": _ROW}, headers=cached).is_success
    missing = post("/v1/services/nope/predict", json={"instance": _ROW}, headers=cached)
    assert missing.status_code == 404 and "'broken'" in missing.json()["detail"]
    slash = post("/v1/services/a/b/predict", json={"instance": _ROW}, headers=cached)
    assert slash.status_code == 404  # not a service name: FastAPI's own not-found


def test_promote_and_rollback_need_a_scientist_and_apply_at_once(
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
) -> None:
    X, _ = digits
    _champion_only(engine, models["canary"], models["base"])
    annotator, sci = _auth(engine, "ann", "annotator"), _auth(engine, "sci", "scientist")
    ask = {"instance": X[5].tolist()}
    before = app_client.post("/v1/services/digits/predict", json=ask, headers=annotator).json()
    assert before["model"] == models["canary"]

    refused = app_client.post(
        "/v1/services/digits/promote",
        json={"model": models["champion"], "reason": "better"},
        headers=annotator,
    )
    assert refused.status_code == 403 and "scientist" in refused.json()["detail"]
    promoted = app_client.post(
        "/v1/services/digits/promote",
        json={"model": models["champion"], "reason": "better on last week"},
        headers=sci,
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["revision"] == 2 and promoted.json()["created_by"] == "sci"
    after = app_client.post("/v1/services/digits/predict", json=ask, headers=annotator).json()
    assert after["model"] == models["champion"] and after["revision"] == 2

    back = app_client.post(
        "/v1/services/digits/rollback", json={"reason": "p99 regressed"}, headers=sci
    ).json()
    assert back["revision"] == 3 and back["restored_revision"] == 1
    again = app_client.post("/v1/services/digits/predict", json=ask, headers=annotator).json()
    assert again["model"] == models["canary"] and again["revision"] == 3

    shown = app_client.get("/v1/services/digits?history=true", headers=annotator).json()
    assert [r["action"] for r in shown["history"]] == ["create", "promote", "rollback"]
    assert shown["history"][1]["reason"] == "better on last week"
    listed = app_client.get("/v1/services", headers=annotator).json()
    assert [(s["name"], s["revision"]) for s in listed] == [("digits", 3)]


SLACK = "https://hooks.slack.com/services/T0AAA/B0BBB/s3cr3tS1ackT0ken"


def test_policy_secrets_never_show_and_changes_from_a_masked_view_keep_them(
    engine: Engine, models: dict[str, str], app_client: TestClient
) -> None:
    headers = {"Authorization": "Bearer hunter2-webhook", "X-Team": "fraud-desk"}
    create_service(
        "digits",
        {
            "champion": models["canary"],
            "fallback": {"label": 0},
            "schedule": PATIENT,
            "actions": [{"name": "slack", "url": SLACK, "headers": headers}],
        },
        created_by="a",
        reason="t",
        engine=engine,
    )
    annotator, sci = _auth(engine, "ann", "annotator"), _auth(engine, "sci", "scientist")
    secrets = ("s3cr3tS1ackT0ken", "B0BBB", "hunter2", "fraud-desk")
    answers = [
        app_client.get("/v1/services/digits?history=true", headers=annotator),
        app_client.get("/v1/services", headers=annotator),
        app_client.post(
            "/v1/services/digits/promote",
            json={"model": models["champion"], "reason": "better"},
            headers=sci,
        ),
        app_client.post("/v1/services/digits/rollback", json={"reason": "back"}, headers=sci),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert not [s for s in secrets if s in answer.text], answer.text
    (shown,) = answers[0].json()["policy"]["actions"]
    # Only their presence shows.
    assert shown["url"] == "https://hooks.slack.com/***"
    assert shown["headers"] == {"Authorization": "***", "X-Team": "***"}

    # A change written from the masked view keeps the stored secrets, never the mask.
    masked = answers[0].json()["policy"]
    set_policy("digits", {**masked, "decoy": False}, by="sci", reason="no decoy", engine=engine)
    (stored,) = current_policy("digits", engine=engine).policy.actions
    assert stored.url == SLACK and stored.headers == headers
    with pytest.raises(PolicyError, match=r"header 'X-New' of action 'slack' is masked"):
        masked["actions"][0]["headers"]["X-New"] = "***"
        set_policy("digits", masked, by="sci", reason="new header", engine=engine)
    with pytest.raises(PolicyError, match=r"url of action 'slack' is masked"):
        create_service("copy", masked, created_by="sci", reason="copy", engine=engine)
    history = policy_history("digits", engine=engine)
    assert {(a.url, a.headers["Authorization"]) for r in history for a in r.policy.actions} == {
        (SLACK, headers["Authorization"])
    }


def test_review_router_cuts_a_long_reason_to_fit_the_note(engine: Engine) -> None:
    create_project("long-review", ["0", "1"], engine=engine)
    base = register(majority_class_from([0, 1, 1]), name="base", engine=engine).ref
    revision = create_service(
        "long",
        {"champion": base, "fallback": base, "review": {"project": "long-review"}},
        created_by="a",
        reason="t",
        engine=engine,
    )
    with engine.connect() as conn:
        service_id = conn.execute(
            select(serve_services.c.service_id).where(serve_services.c.name == "long")
        ).scalar_one()
    # Model names may be 300 characters long: with a few of them the reason passes 1,000.
    champion, *challengers = [f"{letter * 290}@1" for letter in "abcd"]
    scores = (
        Score(champion, "champion", "ok", [0], [[0.55, 0.45]], [0, 1]),
        *(Score(m, "challenger", "ok", [1], [[0.2, 0.8]], [0, 1]) for m in challengers),
    )
    record = ArchivedRequest(
        request_id="req1",
        service="long",
        service_id=service_id,
        revision=revision.revision,
        policy=revision.policy,
        received_at=datetime.now(UTC),
        instances=[[0.25, 0.75]],
        n_instances=1,
        model=champion,
        role="champion",
        fallback_used=False,
        predictions=[0],
        latency_ms=1.0,
        scores=scores,
    )
    ReviewRouter(engine)([record])
    [routed] = routed_items("long", engine=engine)
    assert len(routed.reason) > MAX_NOTE_CHARS, "serve_review_items keeps the whole reason"
    [item] = get_items("long-review", engine=engine)
    assert item.external_id == input_key([0.25, 0.75]) and item.source == "serving"
    assert item.note is not None and len(item.note) == MAX_NOTE_CHARS
    assert item.note.endswith("…") and routed.reason.startswith(item.note[:-1])


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks may reach the receivers on 127.0.0.1 (set before the app is made)."""
    monkeypatch.setenv("INLOOP_WEBHOOK_ALLOW", "127.0.0.1")
    reset_settings()


def test_disagreements_go_to_review_and_matches_fire_webhooks(
    allow_loopback: None,
    engine: Engine,
    models: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray],
    app_client: TestClient,
) -> None:
    X, y = digits
    create_project("digits-review", [str(c) for c in range(10)], engine=engine)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    create_service(
        "digits",
        {
            "champion": models["champion"],
            "canary": models["canary"],
            "fallback": models["base"],
            "review": {"project": "digits-review", "per_hour_budget": 5},
            "schedule": PATIENT,
            "actions": [
                {
                    "name": "sevens",
                    "url": url,
                    "when": {"label": 7, "min_probability": 0.8},
                    "max_per_second": 1000,
                }
            ],
        },
        created_by="a",
        reason="t",
        engine=engine,
    )
    user = _auth(engine, "app", "annotator")
    answers = [
        _predict(app_client, "digits", X[i].tolist(), user).json() for i in range(1400, 1460)
    ]
    rendezvous = app_client.app.state.rendezvous
    deadline = time.monotonic() + 10
    while count_requests("digits", engine=engine) < 60 and time.monotonic() < deadline:
        rendezvous.archive.flush(1.0)

    routed = routed_items("digits", engine=engine)
    assert len(routed) == 5  # the budget, though the weak canary disagrees more often
    assert all("digits-old@1 (canary) says" in r.reason for r in routed)
    items = get_items("digits-review", engine=engine)
    assert sorted(i.item_id for i in items) == sorted(r.item_id for r in routed)
    assert {i.source for i in items} == {"serving"} and {i.count for i in items} == {1}
    # The labeling page shows each item's note: the reason it was routed.
    assert {i.item_id: i.note for i in items} == {r.item_id: r.reason for r in routed}

    sevens = [a for a in answers if a["prediction"] == 7 and max(a["probabilities"]) >= 0.8]
    assert sevens, "the held-out digits hold confident sevens"
    deadline = time.monotonic() + 10
    while len(_Receiver.bodies) < len(sevens) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.shutdown()
    assert sorted(b["request_id"] for b in _Receiver.bodies) == sorted(
        a["request_id"] for a in sevens
    )
    delivered = list_deliveries("digits", engine=engine)
    assert len(delivered) == len(sevens) and {d.status for d in delivered} == {"delivered"}
    shown = app_client.get(
        "/v1/services/digits/deliveries", headers=_auth(engine, "s", "scientist")
    )
    assert len(shown.json()) == len(sevens)
    assert {d["url"] for d in shown.json()} == {url.replace("/hook", "/***")}
    assert y[1400:1460].tolist().count(7) > 0
