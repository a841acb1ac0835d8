"""Hostile and malformed input: always a clear 4xx, never a 500, and nothing stored.

Each case was a 500 (or a 201 that broke pages for everyone afterwards, or a
50 MB body read whole) before the edge checks in :mod:`inloop.web.edge`, the
predict limits of :mod:`inloop.serve.limits` and the text checks of
:mod:`inloop.store.text`. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine, insert, select

from inloop.label import LabelError, add_items, create_project, get_project, import_items
from inloop.label.tables import label_items, label_projects
from inloop.serve import create_service, register
from inloop.serve.archive import count_requests
from inloop.serve.models import MajorityClass
from inloop.settings import reset_settings
from inloop.web import create_app
from inloop.web.auth import create_user

SURROGATE = "bad \ud800 text"
NUL = "bad \x00 text"
BIG = 2**64 + 7
ROW = [0.5] * 64


@pytest.fixture
def app_client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine, learners=False)) as client:
        yield client


def _auth(engine: Engine, name: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user(name, role, engine=engine)}"}


@pytest.fixture
def admin(engine: Engine) -> dict[str, str]:
    return _auth(engine, "root", "admin")


@pytest.fixture
def project(engine: Engine, admin: dict[str, str], app_client: TestClient) -> str:
    body = {"name": "tickets", "classes": ["bug", "feature"], "instructions": "Is it a bug?"}
    assert app_client.post("/api/projects", json=body, headers=admin).status_code == 201
    items = [{"external_id": f"t{i}", "text": f"text {i}"} for i in range(3)]
    add_items("tickets", items, engine=engine)
    return "tickets"


@pytest.fixture(scope="module")
def digits_model() -> LogisticRegression:
    X, y = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=300).fit(X[:400] / 16.0, y[:400])


@pytest.fixture
def digits_service(engine: Engine, digits_model: LogisticRegression) -> str:
    champion = register(digits_model, name="digits", engine=engine).ref
    create_service(
        "digits",
        {"champion": champion, "fallback": {"label": 0}, "schedule": {"deadline_ms": 5000}},
        created_by="a",
        reason="t",
        engine=engine,
    )
    return "digits"


@pytest.fixture
def text_service(engine: Engine) -> str:
    ref = register(MajorityClass(["spam", "ham"], [1, 3]), name="texts", engine=engine).ref
    create_service(
        "texts",
        {"champion": ref, "fallback": {"label": "ham"}, "schedule": {"deadline_ms": 5000}},
        created_by="a",
        reason="t",
        engine=engine,
    )
    return "texts"


def _tables(engine: Engine) -> dict[str, list[Any]]:
    """Every row of every table but the ones a request touches without changing anything."""
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(engine)
    skip = {"alembic_version", "web_tokens", "web_sessions"}  # last_used_at moves on reads
    with engine.connect() as conn:
        return {
            name: sorted(map(repr, conn.execute(select(table)).all()))
            for name, table in meta.tables.items()
            if name not in skip
        }


# --- request size ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413_naming_the_setting(
    engine: Engine, admin: dict[str, str], project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INLOOP_MAX_BODY_BYTES", "20000")
    reset_settings()
    with TestClient(create_app(engine=engine, learners=False)) as client:
        before = _tables(engine)
        items = [{"external_id": f"x{i}", "kind": "text", "payload": "y" * 100} for i in range(300)]
        response = client.post(
            f"/api/projects/{project}/items", json={"items": items}, headers=admin
        )
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "20000 bytes" in detail and "INLOOP_MAX_BODY_BYTES" in detail

        # No Content-Length (a chunked body): counted as it arrives, refused past the limit.
        def chunks() -> Iterator[bytes]:
            yield b'{"items": ['
            for i in range(300):
                yield json.dumps({"external_id": f"c{i}", "text": "y" * 100}).encode() + b","
            yield b'{"external_id": "last", "text": "z"}]}'

        streamed = client.post(
            f"/api/projects/{project}/items",
            content=chunks(),
            headers={**admin, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        assert _tables(engine) == before


def test_a_predict_body_over_the_limit_is_refused_and_not_archived(
    engine: Engine, digits_service: str, app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _auth(engine, "app", "annotator")
    ok = app_client.post("/v1/services/digits/predict", json={"instance": ROW}, headers=user)
    assert ok.status_code == 200  # the token is cached now: the fast path reads the next bodies
    big = {"instances": [ROW] * 5000}  # about 1.3 MB of JSON, over the 1 MiB default
    response = app_client.post("/v1/services/digits/predict", json=big, headers=user)
    assert response.status_code == 413
    assert "INLOOP_MAX_PREDICT_BYTES" in response.json()["detail"]
    routed = app_client.post(  # a content type the fast path leaves to the route
        "/v1/services/digits/predict",
        content=json.dumps(big),
        headers={**user, "Content-Type": "application/vnd.api+json"},
    )
    assert routed.status_code == 413
    app_client.app.state.rendezvous.archive.flush(5.0)  # type: ignore[attr-defined]
    assert count_requests("digits", engine=engine) == 1


def test_a_service_policy_carries_its_own_limits(engine: Engine, text_service: str) -> None:
    from inloop.serve import set_policy
    from inloop.serve.policy import current_policy

    policy = current_policy("texts", engine=engine).policy.model_dump(mode="json")
    policy["limits"] = {"max_instances": 3, "max_instance_bytes": 400, "max_bytes": 5000}
    set_policy("texts", policy, by="a", reason="limits", engine=engine)
    user = _auth(engine, "app", "annotator")
    with TestClient(create_app(engine=engine, learners=False)) as app_client:

        def ask(body: Any) -> Any:
            return app_client.post("/v1/services/texts/predict", json=body, headers=user)

        assert ask({"instances": ["a", "b", "c"]}).status_code == 200
        many = ask({"instances": ["a"] * 4})
        assert many.status_code == 413 and "max_instances" in many.json()["detail"]
        long = ask({"instance": "x" * 101})  # 101 characters take 404 bytes in the batch array
        assert long.status_code == 413 and "max_instance_bytes" in long.json()["detail"]
        body = ask({"instances": ["x" * 2000, "y" * 2000, "z" * 2000]})
        assert body.status_code == 413 and "limits.max_bytes" in body.json()["detail"]


def test_texts_padded_to_the_longest_cannot_blow_up_memory(
    engine: Engine, text_service: str, app_client: TestClient
) -> None:
    # 50 kB of mostly empty strings: numpy would pad each of them to the one long text.
    user = _auth(engine, "app", "annotator")
    instances = [""] * 9_000 + ["x" * 8_000]
    response = app_client.post(
        "/v1/services/texts/predict", json={"instances": instances}, headers=user
    )
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "max_batch_bytes" in detail and "longest" in detail


def test_predict_inputs_are_checked_against_the_champion(
    engine: Engine, digits_service: str, app_client: TestClient
) -> None:
    user = _auth(engine, "app", "annotator")

    def ask(body: Any) -> Any:
        return app_client.post("/v1/services/digits/predict", json=body, headers=user)

    text = ask({"instance": "some text"})
    assert text.status_code == 400
    assert "64 numbers" in text.json()["detail"] and "'some text'" in text.json()["detail"]
    ragged = ask({"instances": [ROW, [0.5] * 3]})
    assert ragged.status_code == 400 and "Instance 1" in ragged.json()["detail"]
    nested = ask({"instance": [[0.5] * 64]})
    assert nested.status_code == 400 and "64 numbers" in nested.json()["detail"]


# --- text that cannot be encoded -------------------------------------------------------------


def test_lone_surrogates_are_refused_with_422_naming_the_field(
    engine: Engine, admin: dict[str, str], project: str, app_client: TestClient
) -> None:
    before = _tables(engine)
    post = app_client.post
    cases = [
        ("/api/projects", {"name": "p2", "classes": [SURROGATE, "b"]}, "classes.0"),
        ("/api/projects", {"name": "p3", "classes": ["a", "b"], "instructions": SURROGATE}, ""),
        (
            f"/api/projects/{project}/items",
            {"items": [{"external_id": "s1", "kind": "text", "payload": SURROGATE}]},
            "items.0.payload",
        ),
    ]
    for path, body, field in cases:
        response = post(path, content=json.dumps(body), headers=_json_headers(admin))
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"]
        assert "surrogate" in detail and field in detail
    assert _tables(engine) == before
    # Everyone's pages still work.
    assert app_client.get("/api/projects", headers=admin).status_code == 200
    assert app_client.post(f"/api/projects/{project}/next", headers=admin).status_code == 200


def _json_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Content-Type": "application/json"}


def test_nul_characters_are_refused_in_bodies_paths_and_queries(
    engine: Engine,
    admin: dict[str, str],
    project: str,
    digits_service: str,
    app_client: TestClient,
) -> None:
    create_user("ana", "annotator", engine=engine)
    before = _tables(engine)
    body_cases = [
        ("POST", "/api/projects", {"name": "p4", "classes": ["a", "b"], "instructions": NUL}),
        (
            "POST",
            f"/api/projects/{project}/items",
            {"items": [{"external_id": NUL, "kind": "text", "payload": "t"}]},
        ),
        (
            "POST",
            f"/api/projects/{project}/items",
            {"items": [{"external_id": "n1", "kind": "text", "payload": "t", "note": NUL}]},
        ),
        ("POST", f"/api/projects/{project}/members", {"user": NUL}),
        ("POST", "/api/users", {"name": NUL, "role": "annotator"}),
        ("PATCH", "/api/users/ana", {"role": NUL}),
        ("POST", "/v1/services/digits/feedback", {"request_id": NUL, "label": 1}),
        ("POST", "/v1/services/digits/feedback", {"request_id": "r" * 32, "label": NUL}),
    ]
    for method, path, body in body_cases:
        response = app_client.request(method, path, json=body, headers=admin)
        assert response.status_code == 422, (path, body, response.text)
        assert "NUL" in response.json()["detail"]
    path_cases = [
        ("GET", "/api/projects/a%00b"),
        ("GET", f"/api/projects/{project}%00/items"),
        ("DELETE", f"/api/projects/{project}/members/a%00"),
        ("PATCH", "/api/users/a%00b"),
        ("POST", "/v1/services/no%00pe/predict"),
        ("GET", "/v1/services/digits/requests/r%00"),
        ("GET", "/projects/a%00b/label"),
    ]
    for method, path in path_cases:
        body = {"instance": ROW} if "predict" in path else {"role": "admin"}
        response = app_client.request(method, path, json=body, headers=admin)
        assert response.status_code == 422, (path, response.text)
        assert "NUL" in response.json()["detail"]
    query = app_client.get("/v1/services/digits/deliveries?status=a%00", headers=admin)
    assert query.status_code == 422 and "'status'" in query.json()["detail"]
    assert _tables(engine) == before


def test_stored_surrogates_do_not_break_pages_or_the_api(
    engine: Engine, admin: dict[str, str], project: str, app_client: TestClient, login: Any
) -> None:
    # Data stored before the checks existed (SQLite keeps it inside JSON as "\ud800") renders.
    found = get_project(project, engine=engine)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":  # PostgreSQL could never store it
            conn.execute(
                insert(label_items),
                {
                    "project_id": found.project_id,
                    "external_id": "s",
                    "kind": "text",
                    "payload": {"text": SURROGATE},
                    "source": "import",
                    "priority": 100.0,
                    "n_labels": 0,
                    "created_at": found.created_at,
                },
            )
            conn.execute(
                label_projects.update()
                .where(label_projects.c.project_id == found.project_id)
                .values(classes=[{"name": SURROGATE, "key": None}, {"name": "b", "key": None}])
            )
    listed = app_client.get("/api/projects", headers=admin)
    assert listed.status_code == 200
    assert app_client.get(f"/api/projects/{project}/items", headers=admin).status_code == 200
    leased = app_client.post(f"/api/projects/{project}/next", headers=admin)
    assert leased.status_code == 200
    signed_in = login(app_client, admin["Authorization"].removeprefix("Bearer "))
    assert signed_in.status_code == 303, signed_in.text
    assert app_client.get("/").status_code == 200
    assert app_client.get(f"/projects/{project}/label").status_code == 200


def test_python_and_cli_entry_points_refuse_unstorable_text(engine: Engine, tmp_path: Any) -> None:
    for bad in (NUL, SURROGATE):
        with pytest.raises(LabelError, match="field 'instructions'"):
            create_project("p", ["a", "b"], instructions=bad, engine=engine)
        with pytest.raises(LabelError, match=r"classes\[0\]"):
            create_project("p", [bad, "b"], engine=engine)
    create_project("p", ["a", "b"], engine=engine)
    with pytest.raises(LabelError, match="NUL"):
        add_items("p", [{"external_id": "1", "text": NUL}], engine=engine)
    source = tmp_path / "items.jsonl"
    source.write_text(json.dumps({"id": "1", "text": SURROGATE}) + "\n")
    with pytest.raises(LabelError, match="surrogate"):
        import_items("p", source, engine=engine)
    with engine.connect() as conn:
        assert conn.execute(select(label_items)).all() == []


# --- numbers and nesting ---------------------------------------------------------------------


def test_integers_past_64_bits_are_refused(
    engine: Engine,
    admin: dict[str, str],
    project: str,
    digits_service: str,
    app_client: TestClient,
) -> None:
    before = _tables(engine)
    cases = [
        ("POST", f"/api/projects/{project}/annotations", {"item_id": BIG, "label": "bug"}),
        # Past 32 bits: ids are Integer columns, 32 bits on PostgreSQL.
        ("POST", f"/api/projects/{project}/annotations", {"item_id": 2**35, "label": "bug"}),
        ("POST", f"/api/projects/{project}/reviews/{2**35}/decision", {"decision": "keep"}),
        ("POST", "/v1/services/digits/promote", {"model": f"digits@{2**35}", "reason": "r"}),
        ("GET", f"/api/projects/{project}/items?offset={2**35}", None),
        ("POST", "/api/projects", {"name": "p5", "classes": ["a", "b"], "overlap": BIG}),
        ("POST", "/v1/services/digits/promote", {"model": f"digits@{BIG}", "reason": "r"}),
        ("POST", "/v1/services/digits/rollback", {"reason": "r", "to_revision": BIG}),
        ("POST", "/v1/services/digits/feedback", {"request_id": "r" * 32, "label": BIG}),
        ("GET", f"/api/projects/{project}/items?offset={BIG}", None),
        ("POST", f"/api/projects/{project}/reviews/{BIG}/decision", {"decision": "keep"}),
    ]
    for method, path, body in cases:
        response = app_client.request(method, path, json=body, headers=admin)
        assert response.status_code == 422, (path, response.text)
    assert _tables(engine) == before


def test_json_nested_deeply_is_refused(
    engine: Engine, admin: dict[str, str], digits_service: str, app_client: TestClient
) -> None:
    deep = '{"instance": ' + "[" * 100_000 + "]" * 100_000 + "}"
    user = _auth(engine, "app", "annotator")
    for headers in (admin, user):
        response = app_client.post(
            "/v1/services/digits/predict", content=deep, headers=_json_headers(headers)
        )
        assert response.status_code == 422
        assert "nested" in response.json()["detail"]
    shallow_but_deep = {"instance": json.loads("[" * 80 + "]" * 80)}
    response = app_client.post("/v1/services/digits/predict", json=shallow_but_deep, headers=user)
    assert response.status_code == 422 and "INLOOP_MAX_JSON_DEPTH" in response.json()["detail"]


# --- echoes ---------------------------------------------------------------------------------


def test_errors_quote_at_most_a_few_hundred_characters_of_a_value(
    engine: Engine, admin: dict[str, str], project: str, app_client: TestClient
) -> None:
    item_id = app_client.get(f"/api/projects/{project}/items", headers=admin).json()["items"][0]
    huge = "L" * 5_000_000
    responses = [
        app_client.post(
            f"/api/projects/{project}/annotations",
            json={"item_id": item_id["id"], "label": huge},
            headers=admin,
        ),
        app_client.post("/api/projects", json={"name": huge, "classes": ["a", "b"]}, headers=admin),
        app_client.post(
            "/v1/services/nothing/promote", json={"model": huge, "reason": "r"}, headers=admin
        ),
        app_client.post("/api/users", json={"name": huge, "role": "annotator"}, headers=admin),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500, response.status_code
        assert len(response.text) < 2_000, response.text[:300]
        assert "LLLL" in response.text and "characters" in response.text


def test_serving_functions_refuse_unstorable_text(engine: Engine) -> None:
    from inloop.serve import promote
    from inloop.serve.models import ServeError

    with pytest.raises(ServeError, match="NUL"):
        register(MajorityClass(["a", "b"], [1, 2]), name="m", note=NUL, engine=engine)
    with pytest.raises(ServeError, match="surrogate"):
        register(MajorityClass(["a", "b"], [1, 2]), name="m", metrics={SURROGATE: 1}, engine=engine)
    ref = register(MajorityClass(["a", "b"], [1, 2]), name="m", engine=engine).ref
    policy = {"champion": ref, "fallback": {"label": "a"}}
    with pytest.raises(ServeError, match="reason"):
        create_service("s", policy, created_by="a", reason=NUL, engine=engine)
    with pytest.raises(ServeError, match=r"policy\['fallback'\]\['label'\]"):
        create_service(
            "s", {**policy, "fallback": {"label": NUL}}, created_by="a", reason="r", engine=engine
        )
    create_service("s", policy, created_by="a", reason="r", engine=engine)
    ref2 = register(MajorityClass(["a", "b"], [2, 1]), name="m", engine=engine).ref
    with pytest.raises(ServeError, match="surrogate"):
        promote("s", ref2, by=SURROGATE, reason="r", engine=engine)
