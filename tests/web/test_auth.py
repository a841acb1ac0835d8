"""Users, roles, API tokens and their life cycle, sessions and CSRF (inloop/web/auth.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select, text

from inloop.store.db import begin_write, get_engine
from inloop.web.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AuthError,
    LastAdminError,
    NoSuchTokenError,
    NoSuchUserError,
    TokenExistsError,
    User,
    UserExistsError,
    access_version,
    authenticate,
    change_role,
    command_user,
    create_token,
    create_user,
    disable_user,
    enable_user,
    ensure_admin,
    hash_secret,
    list_tokens,
    revoke_token,
    rotate_token,
    user_events,
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


# --- the life cycle of users and tokens -----------------------------------------------------


def test_a_user_holds_several_named_tokens_listed_without_their_secrets(engine: Engine) -> None:
    first = create_user("ana", "annotator", engine=engine)
    laptop = create_token("ana", "laptop", by="root", engine=engine)
    auto = create_token("ana", by="root", engine=engine)
    tokens = list_tokens("ana", engine=engine)
    assert [t.name for t in tokens] == ["default", "laptop", "token-1"]
    assert all(t.live and t.user == "ana" and t.revoked_at is None for t in tokens)
    assert not any(secret in repr(tokens) for secret in (first, laptop, auto))
    with pytest.raises(TokenExistsError, match="already has a live token named 'laptop'"):
        create_token("ana", "laptop", by="root", engine=engine)
    with pytest.raises(AuthError, match="Invalid token name ' x'"):
        create_token("ana", " x", by="root", engine=engine)
    with pytest.raises(NoSuchUserError, match="No user 'zed'"):
        create_token("zed", "laptop", by="root", engine=engine)

    revoked = revoke_token("ana", "laptop", by="root", engine=engine)
    assert revoked.name == "laptop" and revoked.revoked_at is not None and not revoked.live
    assert authenticate(laptop, engine=engine) is None
    assert (
        authenticate(first, engine=engine)
        == authenticate(auto, engine=engine)
        == User("ana", "annotator")
    )
    with pytest.raises(
        NoSuchTokenError, match=r"no live token named 'laptop'.*'default', 'token-1'"
    ):
        revoke_token("ana", "laptop", by="root", engine=engine)
    # A revoked token's name is free again; the old token stays revoked.
    again = create_token("ana", "laptop", by="root", engine=engine)
    assert (
        authenticate(again, engine=engine) is not None
        and authenticate(laptop, engine=engine) is None
    )
    assert [(t.name, t.live) for t in list_tokens("ana", engine=engine)] == [
        ("default", True),
        ("laptop", False),
        ("token-1", True),
        ("laptop", True),
    ]


def test_rotating_replaces_a_token_under_the_same_name(engine: Engine) -> None:
    old = ensure_admin(engine=engine)
    assert old is not None
    new = rotate_token("admin", by="admin", engine=engine)
    assert authenticate(old, engine=engine) is None
    assert authenticate(new, engine=engine) == User("admin", "admin")
    assert [(t.name, t.live) for t in list_tokens("admin", engine=engine)] == [
        ("default", False),
        ("default", True),
    ]
    create_token("admin", "ci", by="admin", engine=engine)
    with pytest.raises(AuthError, match="2 live tokens \\('default', 'ci'\\): name the one"):
        rotate_token("admin", by="admin", engine=engine)
    ci = rotate_token("admin", "ci", by="admin", engine=engine)
    assert authenticate(ci, engine=engine) == User("admin", "admin")


def _sessions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(web_sessions.c.user)).scalars())


def test_revoking_a_token_ends_the_sessions_opened_with_it_at_once(
    client: TestClient, engine: Engine, login: Login
) -> None:
    create_user("ana", "annotator", engine=engine)
    laptop = create_token("ana", "laptop", by="root", engine=engine)
    phone = create_token("ana", "phone", by="root", engine=engine)
    login(client, laptop)
    assert client.get("/api/me").status_code == 200
    other = TestClient(client.app)  # a second browser (the app already runs)
    login(other, phone)
    revoke_token("ana", "laptop", by="root", engine=engine)
    ended = client.get("/api/me")
    assert ended.status_code == 401 and "session has ended" in ended.json()["detail"]
    assert other.get("/api/me").status_code == 200, "the other token's session goes on"
    assert _sessions(engine) == ["ana"]


def test_a_disabled_user_cannot_sign_in_and_their_sessions_end(
    client: TestClient, engine: Engine, login: Login
) -> None:
    ensure_admin(engine=engine)
    token = create_user("ana", "annotator", engine=engine)
    login(client, token)
    assert client.get("/api/me").status_code == 200
    disable_user("ana", by="admin", engine=engine)
    assert _sessions(engine) == []
    assert client.get("/api/me").status_code == 401
    client.cookies.clear()
    assert authenticate(token, engine=engine) is None
    assert client.get("/api/me", headers=bearer(token)).status_code == 401
    refused = login(client, token)
    assert refused.headers["location"] == "/login?error=token"
    assert "disabled" in client.get(refused.headers["location"]).text
    disable_user("ana", by="admin", engine=engine)  # again: nothing changes
    enable_user("ana", by="admin", engine=engine)
    assert client.get("/api/me", headers=bearer(token)).json() == {
        "name": "ana",
        "role": "annotator",
    }


def test_the_last_admin_can_be_neither_disabled_nor_demoted(engine: Engine) -> None:
    ensure_admin(engine=engine)
    create_user("boss", "admin", engine=engine)
    with pytest.raises(NoSuchUserError):
        disable_user("zed", by="admin", engine=engine)
    disable_user("boss", by="admin", engine=engine)
    # A disabled admin does not count: 'admin' is the last one who can act.
    with pytest.raises(LastAdminError, match="'admin' is the last admin"):
        disable_user("admin", by="admin", engine=engine)
    with pytest.raises(LastAdminError, match="giving them the role 'scientist'"):
        change_role("admin", "scientist", by="admin", engine=engine)
    enable_user("boss", by="admin", engine=engine)
    disable_user("admin", by="boss", engine=engine)
    assert change_role("boss", "admin", by="boss", engine=engine) == "admin"


def test_every_change_is_recorded_with_who_and_when(engine: Engine) -> None:
    assert access_version(engine=engine) == 0
    ensure_admin(engine=engine)
    create_user("ana", "annotator", created_by="admin", engine=engine)
    before = access_version(engine=engine)
    create_token("ana", "laptop", by="admin", engine=engine)
    revoke_token("ana", "laptop", by="admin", engine=engine)
    rotate_token("ana", by="admin", engine=engine)
    change_role("ana", "reviewer", by="admin", engine=engine)
    disable_user("ana", by="admin", engine=engine)
    enable_user("ana", by="root", engine=engine)
    assert access_version(engine=engine) == before + 6
    events = user_events("ana", engine=engine)
    assert [(e.actor, e.action, e.token_name, e.detail) for e in events] == [
        ("admin", "create", "default", "role annotator"),
        ("admin", "token-create", "laptop", None),
        ("admin", "token-revoke", "laptop", None),
        ("admin", "token-rotate", "default", None),
        ("admin", "role", None, "annotator -> reviewer"),
        ("admin", "disable", None, None),
        ("root", "enable", None, None),
    ]
    assert all(e.at.tzinfo is not None for e in events)
    assert user_events(engine=engine)[0].actor == "inloop server"  # ensure_admin
    assert user_events(engine=engine, limit=2) == events[-2:]


def test_who_runs_a_command_by_token_or_login(engine: Engine) -> None:
    # No users yet: the login is trusted, as an admin.
    assert command_user(None, "ana", role="admin", doing="x", engine=engine) == User("ana", "admin")
    root = create_user("root", "admin", engine=engine)
    sci = create_user("sci", "scientist", engine=engine)
    assert command_user(root, "ana", role="admin", doing="x", engine=engine).name == "root"
    assert command_user(None, "root", role="admin", doing="x", engine=engine).name == "root"
    with pytest.raises(AuthError, match=r"no user named 'ana'.*inloop users create ana --role"):
        command_user(None, "ana", role="admin", doing="managing users", engine=engine)
    with pytest.raises(AuthError, match="needs the role 'admin' or higher; user 'sci'"):
        command_user(sci, "root", role="admin", doing="managing users", engine=engine)
    with pytest.raises(AuthError, match="not valid"):
        command_user("nope", "root", role="admin", doing="x", engine=engine)
    disable_user("sci", by="root", engine=engine)
    with pytest.raises(AuthError, match="disabled"):
        command_user(None, "sci", role="annotator", doing="x", engine=engine)
    with pytest.raises(AuthError, match="not valid"):
        command_user(sci, "root", role="annotator", doing="x", engine=engine)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database no migration has touched yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    schemas = request.getfixturevalue("postgres_schemas")
    url: str = schemas.create()
    return url


def test_upgrading_names_old_tokens_and_ends_old_sessions(empty_db: str) -> None:
    from alembic import command
    from alembic.config import Config

    from inloop.store import db

    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).with_name("migrations")))
    raw = create_engine(empty_db)
    try:
        with begin_write(raw) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0010")
            now = datetime.now(UTC)
            conn.execute(
                text("INSERT INTO web_users (name, role, created_at, created_by) VALUES "
                     "('ana', 'annotator', :now, 'x'), ('bo', 'admin', :now, 'x')"),
                {"now": now},
            )  # fmt: skip
            for user, secret in [("ana", "t1"), ("ana", "t2"), ("bo", "t3")]:
                conn.execute(
                    text('INSERT INTO web_tokens ("user", token_hash, created_at) '
                         "VALUES (:user, :hash, :now)"),
                    {"user": user, "hash": hash_secret(secret), "now": now},
                )  # fmt: skip
            conn.execute(
                text('INSERT INTO web_sessions (session_id, "user", csrf_token, created_at, '
                     "expires_at) VALUES ('s', 'ana', 'c', :now, :later)"),
                {"now": now, "later": now + timedelta(hours=1)},
            )  # fmt: skip
        with begin_write(raw) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        raw.dispose()
    engine = get_engine(empty_db)  # at head already: nothing more to do
    assert [t.name for t in list_tokens("ana", engine=engine)] == ["token-1", "token-2"]
    assert authenticate("t2", engine=engine) == User("ana", "annotator")
    assert _sessions(engine) == [], "sessions that do not know their token end"
    # Names are unique among live tokens only, as in a new database.
    with pytest.raises(TokenExistsError):
        create_token("ana", "token-1", by="bo", engine=engine)
    revoke_token("ana", "token-1", by="bo", engine=engine)
    create_token("ana", "token-1", by="bo", engine=engine)
    disable_user("ana", by="bo", engine=engine)
    assert authenticate("t2", engine=engine) is None
