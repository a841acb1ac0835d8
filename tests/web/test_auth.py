"""Users, roles, API tokens, sessions and CSRF of the web app (inloop/web/auth.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from inloop.web.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AuthError,
    UserExistsError,
    authenticate,
    create_user,
    ensure_admin,
    hash_secret,
)
from inloop.web.tables import web_sessions, web_tokens

Login = Callable[..., Any]  # the ``login`` fixture of conftest.py


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed_and_authenticate(engine: Engine) -> None:
    token = create_user("ana", "annotator", engine=engine)
    with engine.connect() as conn:
        stored = conn.execute(select(web_tokens.c.token_hash, web_tokens.c.user)).all()
    assert [(r.user, r.token_hash) for r in stored] == [("ana", hash_secret(token))]
    assert token not in stored[0].token_hash
    user = authenticate(token, engine=engine)
    assert user is not None and (user.name, user.role) == ("ana", "annotator")
    assert authenticate(token + "x", engine=engine) is None
    assert authenticate("", engine=engine) is None


def test_create_user_checks_name_role_and_duplicates(engine: Engine) -> None:
    create_user("ana", "reviewer", engine=engine)
    with pytest.raises(UserExistsError, match="'ana' already exists"):
        create_user("ana", "annotator", engine=engine)
    with pytest.raises(AuthError, match=r"Invalid role 'boss'.*'annotator', 'reviewer'"):
        create_user("bo", "boss", engine=engine)
    with pytest.raises(AuthError, match="Invalid user name ' x'"):
        create_user(" x", "annotator", engine=engine)


def test_ensure_admin_only_on_first_start(engine: Engine) -> None:
    token = ensure_admin(engine=engine)
    assert token is not None
    admin = authenticate(token, engine=engine)
    assert admin is not None and admin.role == "admin"
    assert ensure_admin(engine=engine) is None


def test_no_token_and_bad_token_get_401(client: TestClient, engine: Engine) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert "Not signed in" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"
    response = client.get("/api/me", headers=bearer("nope"))
    assert response.status_code == 401
    assert "not valid" in response.json()["detail"]
    response = client.get("/api/me", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert "'Bearer <token>'" in response.json()["detail"]


def test_roles_are_ordered(client: TestClient, engine: Engine) -> None:
    annotator = create_user("ana", "annotator", engine=engine)
    scientist = create_user("sci", "scientist", engine=engine)
    body = {"name": "p", "classes": ["a", "b"]}
    response = client.post("/api/projects", json=body, headers=bearer(annotator))
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "'scientist' or higher" in detail and "'annotator'" in detail
    assert client.post("/api/projects", json=body, headers=bearer(scientist)).status_code == 201
    response = client.post(
        "/api/users", json={"name": "x", "role": "admin"}, headers=bearer(scientist)
    )
    assert response.status_code == 403 and "'admin'" in response.json()["detail"]
    assert client.get("/api/projects/p/reviews", headers=bearer(annotator)).status_code == 403
    assert client.get("/api/me", headers=bearer(annotator)).json() == {
        "name": "ana",
        "role": "annotator",
    }


def test_admin_creates_users_whose_token_works(client: TestClient, engine: Engine) -> None:
    admin = ensure_admin(engine=engine)
    assert admin is not None
    response = client.post(
        "/api/users", json={"name": "rita", "role": "reviewer"}, headers=bearer(admin)
    )
    assert response.status_code == 201
    created = response.json()
    assert (created["name"], created["role"]) == ("rita", "reviewer")
    assert client.get("/api/me", headers=bearer(created["token"])).json()["role"] == "reviewer"
    again = client.post(
        "/api/users", json={"name": "rita", "role": "reviewer"}, headers=bearer(admin)
    )
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    bad = client.post("/api/users", json={"name": "x", "role": "boss"}, headers=bearer(admin))
    assert bad.status_code == 422
    assert "'role'" in bad.json()["detail"] and "'annotator'" in bad.json()["detail"]


def test_login_sets_cookies_and_logout_ends_the_session(
    client: TestClient, engine: Engine, login: Login
) -> None:
    token = create_user("ana", "annotator", engine=engine)
    wrong = login(client, "nope")
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?error=token"
    response = login(client, token)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "Secure" not in session_cookie  # plain http, and no trusted proxy says otherwise
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    assert any(c.startswith(CSRF_COOKIE + "=") for c in cookies)
    session = client.cookies[SESSION_COOKIE]
    with engine.connect() as conn:
        ids = list(conn.execute(select(web_sessions.c.session_id)).scalars())
    assert ids == [hash_secret(session)]  # stored hashed
    assert client.get("/api/me").json() == {"name": "ana", "role": "annotator"}
    csrf = client.cookies[CSRF_COOKIE]
    out = client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    with engine.connect() as conn:
        assert conn.execute(select(web_sessions)).all() == []
    client.cookies.set(SESSION_COOKIE, session)  # a stolen, ended session
    response = client.get("/api/me")
    assert response.status_code == 401 and "session has ended" in response.json()["detail"]


def test_csrf_is_enforced_for_cookie_sessions(
    client: TestClient, engine: Engine, login: Login
) -> None:
    token = create_user("sci", "scientist", engine=engine)
    login(client, token)
    body = {"name": "p", "classes": ["a", "b"]}
    missing = client.post("/api/projects", json=body)
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"] and "missing" in missing.json()["detail"]
    wrong = client.post("/api/projects", json=body, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403 and "does not match" in wrong.json()["detail"]
    csrf = client.cookies[CSRF_COOKIE]
    ok = client.post("/api/projects", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert client.get("/api/projects").status_code == 200  # reads need no CSRF token
    # Bearer clients need no CSRF token: the browser never sends their header by itself.
    client.cookies.clear()
    other = {"name": "q", "classes": ["a", "b"]}
    assert client.post("/api/projects", json=other, headers=bearer(token)).status_code == 201


@pytest.mark.parametrize(
    ("asked", "landed"),
    [("/projects/x/label", "/projects/x/label"), ("//evil.test", "/"), ("/\\evil.test", "/"),
     ("https://evil.test", "/")],
)  # fmt: skip
def test_login_only_redirects_within_the_site(
    client: TestClient, engine: Engine, login: Login, asked: str, landed: str
) -> None:
    token = create_user("nell", "annotator", engine=engine)
    response = login(client, token, asked)
    assert response.status_code == 303 and response.headers["location"] == landed
