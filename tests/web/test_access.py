"""Per-project access and user administration (inloop/web/access.py), through the real app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.label import create_project
from inloop.label.projects import LabelNotFoundError
from inloop.web.access import (
    LastAdminError,
    NoSuchUserError,
    add_member,
    is_member,
    list_users,
    remove_member,
    set_role,
    visible_projects,
)
from inloop.web.auth import User, create_user


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _closed(client: TestClient, ana: dict[str, str], project: str, item_id: int) -> list[int]:
    """The status of every project route an annotator may use, for ``project``."""
    base = f"/api/projects/{project}"
    return [
        client.get(base, headers=ana).status_code,
        client.get(f"{base}/items", headers=ana).status_code,
        client.get(f"{base}/stats", headers=ana).status_code,
        client.post(f"{base}/next", json={"n": 1}, headers=ana).status_code,
        client.post(
            f"{base}/annotations", json={"item_id": item_id, "label": "a"}, headers=ana
        ).status_code,
        client.post(f"{base}/undo", headers=ana).status_code,
    ]


def _page(client: TestClient, token: str, path: str) -> tuple[int, str]:
    client.cookies.clear()
    client.get("/login")
    csrf = client.cookies["inloop_login_csrf"]
    client.post("/login", data={"token": token, "csrf_token": csrf}, follow_redirects=False)
    response = client.get(path, follow_redirects=False)
    client.cookies.clear()
    return response.status_code, response.text


def test_annotator_works_only_in_projects_they_are_a_member_of(
    client: TestClient, engine: Engine
) -> None:
    sci = bearer(create_user("sci", "scientist", engine=engine))
    ana_token = create_user("ana", "annotator", engine=engine)
    ana = bearer(ana_token)
    body = {"name": "secret", "classes": ["a", "b"]}
    assert client.post("/api/projects", json=body, headers=sci).status_code == 201
    items = [{"external_id": "x", "kind": "text", "payload": "hello"}]
    [item_id] = client.post(
        "/api/projects/secret/items", json={"items": items}, headers=sci
    ).json()["item_ids"]

    # Not a member: the project is not listed and answers exactly like a missing one.
    assert client.get("/api/projects", headers=ana).json() == []
    assert [p["name"] for p in client.get("/api/projects", headers=sci).json()] == ["secret"]
    assert _closed(client, ana, "secret", item_id) == [404] * 6
    hidden = client.get("/api/projects/secret", headers=ana).json()["detail"]
    missing = client.get("/api/projects/nope", headers=ana).json()["detail"]
    assert hidden == missing.replace("'nope'", "'secret'")
    assert "No labeling project 'secret'" in hidden and "POST /api/projects/" in hidden
    status, text = _page(client, ana_token, "/projects/secret/label")
    assert status == 404 and "No such project" in text
    assert _page(client, ana_token, "/projects/nope/label")[0] == 404
    assert "secret" not in _page(client, ana_token, "/")[1]
    # Annotators cannot add themselves.
    denied = client.post("/api/projects/secret/members", json={"user": "ana"}, headers=ana)
    assert denied.status_code == 403 and "'scientist' or higher" in denied.json()["detail"]

    # Added by a scientist: everything opens up.
    added = client.post("/api/projects/secret/members", json={"user": "ana"}, headers=sci)
    assert added.status_code == 201
    assert added.json()["user"] == "ana" and added.json()["added_by"] == "sci"
    again = client.post("/api/projects/secret/members", json={"user": "ana"}, headers=sci)
    assert again.status_code == 200 and again.json()["added_at"] == added.json()["added_at"]
    assert [p["name"] for p in client.get("/api/projects", headers=ana).json()] == ["secret"]
    [lease] = client.post("/api/projects/secret/next", json={"n": 1}, headers=ana).json()["leases"]
    assert lease["item"]["id"] == item_id
    answer = client.post(
        "/api/projects/secret/annotations", json={"item_id": item_id, "label": "a"}, headers=ana
    )
    assert answer.status_code == 201
    assert client.get("/api/projects/secret/items", headers=ana).status_code == 200
    assert client.get("/api/projects/secret/stats", headers=ana).status_code == 200
    status, text = _page(client, ana_token, "/projects/secret/label")
    assert status == 200
    assert "secret" in _page(client, ana_token, "/")[1]

    # Removed again: closed again; removing twice or an unknown user is a 404.
    gone = client.delete("/api/projects/secret/members/ana", headers=sci)
    assert gone.status_code == 204
    assert client.get("/api/projects/secret/items", headers=ana).status_code == 404
    twice = client.delete("/api/projects/secret/members/ana", headers=sci)
    assert twice.status_code == 404 and "not a member" in twice.json()["detail"]
    nobody = client.post("/api/projects/secret/members", json={"user": "zed"}, headers=sci)
    assert nobody.status_code == 404 and "No user 'zed'" in nobody.json()["detail"]
    no_project = client.post("/api/projects/nope/members", json={"user": "ana"}, headers=sci)
    assert no_project.status_code == 404


def test_reviewers_need_membership_and_creators_become_members(
    client: TestClient, engine: Engine
) -> None:
    sci = bearer(create_user("sci", "scientist", engine=engine))
    rita_token = create_user("rita", "reviewer", engine=engine)
    rita = bearer(rita_token)
    client.post("/api/projects", json={"name": "votes", "classes": ["a", "b"]}, headers=sci)
    assert client.get("/api/projects/votes/reviews", headers=rita).status_code == 404
    assert _page(client, rita_token, "/projects/votes/review")[0] == 404
    assert _page(client, rita_token, "/projects/votes/audit")[0] == 404
    assert is_member("votes", "sci", engine=engine), "the creator is a member"
    add_member("votes", "rita", added_by="sci", engine=engine)
    assert client.get("/api/projects/votes/reviews", headers=rita).json() == {"reviews": []}
    assert _page(client, rita_token, "/projects/votes/review")[0] == 200


def test_admins_change_roles_but_not_the_last_admin(client: TestClient, engine: Engine) -> None:
    root = bearer(create_user("root", "admin", engine=engine))
    ana = bearer(create_user("ana", "annotator", engine=engine))
    sci = bearer(create_user("sci", "scientist", engine=engine))
    create_project("p", ["a", "b"], engine=engine)
    add_member("p", "ana", added_by="root", engine=engine)

    for who in (ana, sci):
        assert client.get("/api/users", headers=who).status_code == 403
        denied = client.patch("/api/users/ana", json={"role": "admin"}, headers=who)
        assert denied.status_code == 403 and "'admin' or higher" in denied.json()["detail"]

    users = client.get("/api/users", headers=root).json()
    assert [(u["name"], u["role"], u["projects"]) for u in users] == [
        ("ana", "annotator", ["p"]),
        ("root", "admin", []),
        ("sci", "scientist", []),
    ]
    assert all(u["created_at"] for u in users)

    changed = client.patch("/api/users/ana", json={"role": "reviewer"}, headers=root)
    assert changed.status_code == 200 and changed.json()["role"] == "reviewer"
    assert client.get("/api/me", headers=ana).json()["role"] == "reviewer"
    last = client.patch("/api/users/root", json={"role": "scientist"}, headers=root)
    assert last.status_code == 409 and "last admin" in last.json()["detail"]
    bad = client.patch("/api/users/ana", json={"role": "boss"}, headers=root)
    assert bad.status_code == 422 and "'role'" in bad.json()["detail"]
    missing = client.patch("/api/users/zed", json={"role": "admin"}, headers=root)
    assert missing.status_code == 404 and "No user 'zed'" in missing.json()["detail"]

    # With a second admin, the first may step down; then the second is the last one.
    assert client.patch("/api/users/sci", json={"role": "admin"}, headers=root).status_code == 200
    down = client.patch("/api/users/root", json={"role": "annotator"}, headers=root)
    assert down.status_code == 200 and down.json()["role"] == "annotator"
    assert client.get("/api/users", headers=root).status_code == 403  # no longer admin
    assert client.patch("/api/users/sci", json={"role": "reviewer"}, headers=sci).status_code == 409


def test_access_functions(engine: Engine) -> None:
    create_project("p", ["a", "b"], engine=engine)
    create_project("q", ["a", "b"], engine=engine)
    create_user("ana", "annotator", engine=engine)
    create_user("boss", "admin", engine=engine)
    with pytest.raises(NoSuchUserError, match="No user 'zed'"):
        add_member("p", "zed", added_by="t", engine=engine)
    with pytest.raises(LabelNotFoundError):
        add_member("nope", "ana", added_by="t", engine=engine)
    membership, new = add_member("q", "ana", added_by="t", engine=engine)
    assert new and (membership.project, membership.user) == ("q", "ana")
    assert add_member("q", "ana", added_by="u", engine=engine) == (membership, False)
    assert [p.name for p in visible_projects(User("ana", "annotator"), engine=engine)] == ["q"]
    assert [p.name for p in visible_projects(User("s", "scientist"), engine=engine)] == ["p", "q"]
    with pytest.raises(NoSuchUserError, match="not a member of project 'p'"):
        remove_member("p", "ana", engine=engine)
    remove_member("q", "ana", engine=engine)
    assert not is_member("q", "ana", engine=engine)
    with pytest.raises(LastAdminError, match="'boss' is the last admin"):
        set_role("boss", "reviewer", engine=engine)
    assert set_role("ana", "admin", engine=engine).role == "admin"
    assert set_role("boss", "reviewer", engine=engine).role == "reviewer"
    assert {u.name: u.role for u in list_users(engine=engine)} == {
        "ana": "admin",
        "boss": "reviewer",
    }


def test_admins_manage_users_and_tokens_over_rest(
    client: TestClient, engine: Engine, login: Any
) -> None:
    root = bearer(create_user("root", "admin", engine=engine))
    made = client.post("/api/users", json={"name": "ana", "role": "annotator"}, headers=root)
    ana_default = made.json()["token"]
    laptop = client.post("/api/users/ana/tokens", json={"name": "laptop"}, headers=root)
    assert laptop.status_code == 201
    assert (laptop.json()["user"], laptop.json()["name"]) == ("ana", "laptop")
    ana = bearer(laptop.json()["token"])
    assert client.get("/api/me", headers=ana).json()["name"] == "ana"
    auto = client.post("/api/users/ana/tokens", json={}, headers=root).json()
    assert auto["name"] == "token-1"
    taken = client.post("/api/users/ana/tokens", json={"name": "laptop"}, headers=root)
    assert taken.status_code == 409 and "already has a live token" in taken.json()["detail"]

    listed = client.get("/api/users/ana/tokens", headers=root)
    assert [(t["name"], t["revoked_at"]) for t in listed.json()] == [
        ("default", None),
        ("laptop", None),
        ("token-1", None),
    ]
    assert listed.json()[1]["last_used_at"] is not None and listed.json()[0]["id"] >= 1
    assert not any(t in listed.text for t in (ana_default, auto["token"], ana["Authorization"][7:]))
    for path in ("/api/users/ana/tokens", "/api/user-events"):
        assert client.get(path, headers=ana).status_code == 403
    assert client.post("/api/users/ana/disable", headers=ana).status_code == 403

    revoked = client.delete("/api/users/ana/tokens/laptop", headers=root)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/api/me", headers=ana).status_code == 401
    gone = client.delete("/api/users/ana/tokens/laptop", headers=root)
    assert gone.status_code == 404 and "'default', 'token-1'" in gone.json()["detail"]
    assert client.get("/api/users/zed/tokens", headers=root).status_code == 404

    rotated = client.post("/api/users/ana/tokens/default/rotate", headers=root)
    assert rotated.status_code == 201 and rotated.json()["name"] == "default"
    assert client.get("/api/me", headers=bearer(ana_default)).status_code == 401
    ana = bearer(rotated.json()["token"])
    assert client.get("/api/me", headers=ana).status_code == 200

    # Disabling ends her session and stops her tokens; enabling brings the tokens back.
    login(client, rotated.json()["token"])
    assert client.get("/api/me").status_code == 200
    disabled = client.post("/api/users/ana/disable", headers=root)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    assert client.get("/api/me").status_code == 401
    client.cookies.clear()
    assert client.get("/api/me", headers=ana).status_code == 401
    users = {u["name"]: u["disabled_at"] for u in client.get("/api/users", headers=root).json()}
    assert users["ana"] is not None and users["root"] is None
    assert client.post("/api/users/ana/enable", headers=root).json()["disabled_at"] is None
    assert client.get("/api/me", headers=ana).status_code == 200
    last = client.post("/api/users/root/disable", headers=root)
    assert last.status_code == 409 and "last admin" in last.json()["detail"]

    events = client.get("/api/user-events", params={"user": "ana"}, headers=root).json()
    assert [(e["actor"], e["action"], e["token_name"]) for e in events] == [
        ("root", "create", "default"),
        ("root", "token-create", "laptop"),
        ("root", "token-create", "token-1"),
        ("root", "token-revoke", "laptop"),
        ("root", "token-rotate", "default"),
        ("root", "disable", None),
        ("root", "enable", None),
    ]


def test_a_demoted_users_session_loses_the_old_role_at_once(
    client: TestClient, engine: Engine, login: Any
) -> None:
    root = bearer(create_user("root", "admin", engine=engine))
    boss = create_user("boss", "admin", engine=engine)
    login(client, boss)
    assert client.get("/api/users").status_code == 200
    # By root's token (a bearer token wins over the session cookie the client also sends).
    changed = client.patch("/api/users/boss", json={"role": "annotator"}, headers=root)
    assert changed.status_code == 200 and changed.json()["role"] == "annotator"
    assert client.get("/api/users").status_code == 403
    assert client.get("/api/users", headers=bearer(boss)).status_code == 403
    events = client.get("/api/user-events", params={"user": "boss"}, headers=root).json()
    assert (events[-1]["actor"], events[-1]["detail"]) == ("root", "admin -> annotator")
