"""The REST API under /api (inloop/web/api.py), through the real app and a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.label import add_items, annotate, create_project, history
from inloop.store.db import get_engine
from inloop.web.access import add_member
from inloop.web.auth import create_user


@pytest.fixture
def sci(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user('sci', 'scientist', engine=engine)}"}


@pytest.fixture
def ana(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user('ana', 'annotator', engine=engine)}"}


@pytest.fixture
def project(client: TestClient, sci: dict[str, str], ana: dict[str, str]) -> str:
    body = {
        "name": "tickets",
        "classes": [{"name": "bug", "key": "1"}, "feature"],
        "instructions": "Is it a bug?",
    }
    assert client.post("/api/projects", json=body, headers=sci).status_code == 201
    items = [
        {"external_id": f"t{i}", "kind": "text", "payload": f"text {i}", "priority": i}
        for i in range(5)
    ]
    response = client.post("/api/projects/tickets/items", json={"items": items}, headers=sci)
    assert response.status_code == 201
    assert len(response.json()["item_ids"]) == 5
    member = client.post("/api/projects/tickets/members", json={"user": "ana"}, headers=sci)
    assert member.status_code == 201
    return "tickets"


def test_projects_list_create_and_detail(
    client: TestClient, sci: dict[str, str], ana: dict[str, str], project: str
) -> None:
    listed = client.get("/api/projects", headers=ana).json()
    assert listed == [
        {
            "name": "tickets",
            "task_type": "single_label",
            "classes": [{"name": "bug", "key": "1"}, {"name": "feature", "key": None}],
            "instructions": "Is it a bug?",
            "overlap": 1,
        }
    ]
    detail = client.get("/api/projects/tickets", headers=ana).json()
    assert detail["stats"] == {"items": 5, "complete": 0, "leased": 0, "labels_needed": 5}
    again = client.post("/api/projects", json={"name": project, "classes": ["a", "b"]}, headers=sci)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    bad = client.post("/api/projects", json={"name": "x y", "classes": ["a", "b"]}, headers=sci)
    assert bad.status_code == 400 and "Invalid project name 'x y'" in bad.json()["detail"]
    one = client.post("/api/projects", json={"name": "z", "classes": ["a"]}, headers=sci)
    assert one.status_code == 400 and "at least 2 classes" in one.json()["detail"]
    missing = client.get("/api/projects/nope", headers=ana)
    assert missing.status_code == 404
    assert "No labeling project 'nope'" in missing.json()["detail"]


def test_validation_errors_name_the_field(client: TestClient, sci: dict[str, str]) -> None:
    response = client.post(
        "/api/projects", json={"name": "p", "classes": ["a", "b"], "overlap": 0}, headers=sci
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "Field 'overlap'" in detail and "greater than or equal to 1" in detail
    assert "Got 0" in detail
    response = client.post("/api/projects", json={"classes": ["a", "b"]}, headers=sci)
    assert "Field 'name': Field required. Got nothing." in response.json()["detail"]
    response = client.post("/api/projects", json={"name": "p", "classes": [], "x": 1}, headers=sci)
    assert "Field 'x'" in response.json()["detail"]


def test_items_import_and_page(
    client: TestClient, sci: dict[str, str], ana: dict[str, str], project: str
) -> None:
    page = client.get("/api/projects/tickets/items?limit=2&offset=1", headers=ana).json()
    assert page["total"] == 5
    assert [i["external_id"] for i in page["items"]] == ["t1", "t2"]
    assert page["items"][0]["payload"] == {"text": "text 1"}
    assert page["items"][0]["current_label"] is None
    dup = client.post(
        "/api/projects/tickets/items",
        json={"items": [{"external_id": "t1", "kind": "text", "payload": "again"}]},
        headers=sci,
    )
    assert dup.status_code == 400 and "'t1'" in dup.json()["detail"]
    kind = client.post(
        "/api/projects/tickets/items",
        json={"items": [{"external_id": "n", "kind": "video", "payload": "x"}]},
        headers=sci,
    )
    assert kind.status_code == 422 and "'text', 'image' or 'features'" in kind.json()["detail"]
    denied = client.post("/api/projects/tickets/items", json={"items": []}, headers=ana)
    assert denied.status_code in (403, 422)
    limit = client.get("/api/projects/tickets/items?limit=0", headers=ana)
    assert limit.status_code == 422 and "query parameter 'limit'" in limit.json()["detail"]


def test_next_annotate_undo_and_stats(
    client: TestClient, engine: Engine, ana: dict[str, str], project: str
) -> None:
    first = client.post("/api/projects/tickets/next", json={"n": 2}, headers=ana).json()["leases"]
    assert [lease["item"]["external_id"] for lease in first] == ["t4", "t3"]
    assert first[0]["suggestion"] is None and first[0]["item"]["kind"] == "text"
    # The caller's own leases come back first, then new ones.
    again = client.post("/api/projects/tickets/next", json={"n": 3}, headers=ana).json()["leases"]
    assert [lease["lease_id"] for lease in again[:2]] == [lease["lease_id"] for lease in first]
    assert again[2]["item"]["external_id"] == "t2"
    item_id = first[0]["item"]["id"]
    answer = client.post(
        "/api/projects/tickets/annotations",
        json={"item_id": item_id, "label": "bug", "seconds": 1.5},
        headers=ana,
    )
    assert answer.status_code == 201
    assert answer.json()["label"] == "bug" and answer.json()["item_id"] == item_id
    skip = client.post(
        "/api/projects/tickets/annotations",
        json={"item_id": first[1]["item"]["id"], "label": None},
        headers=ana,
    )
    assert skip.status_code == 201 and skip.json()["label"] is None
    undo = client.post("/api/projects/tickets/undo", headers=ana).json()["lease"]
    assert undo["item"]["id"] == first[1]["item"]["id"]  # the last answer: the skip
    assert (
        client.post("/api/projects/tickets/undo", headers=ana).json()["lease"]["lease_id"]
        == (undo["lease_id"])
    )
    relabel = client.post(
        "/api/projects/tickets/annotations",
        json={"item_id": undo["item"]["id"], "label": "feature"},
        headers=ana,
    )
    assert relabel.status_code == 201
    events = history(undo["item"]["id"], engine=engine)
    assert [e.label for e in events] == [None, "feature"]  # history kept
    stats = client.get("/api/projects/tickets/stats", headers=ana).json()
    assert stats == {
        "items": 5,
        "complete": 2,
        "leased": 1,
        "labels_needed": 3,
        "labels_last_hour": 2,
        "by_annotator": {"ana": 2},
    }
    page = client.get("/api/projects/tickets/items", headers=ana).json()["items"]
    assert {i["external_id"]: i["current_label"] for i in page}["t4"] == "bug"


def test_item_notes_import_page_next_and_undo(
    client: TestClient, sci: dict[str, str], ana: dict[str, str], project: str
) -> None:
    why = "margin 0.04 < 0.20 (champion digits@3); digits@4 (challenger) says 7"
    noted = {"external_id": "why", "kind": "text", "payload": "x", "priority": 9, "note": why}
    created = client.post("/api/projects/tickets/items", json={"items": [noted]}, headers=sci)
    assert created.status_code == 201, created.text
    [lease, plain] = client.post("/api/projects/tickets/next", json={"n": 2}, headers=ana).json()[
        "leases"
    ]
    assert lease["item"]["external_id"] == "why" and lease["item"]["note"] == why
    assert plain["item"]["external_id"] == "t4" and plain["item"]["note"] is None
    page = client.get("/api/projects/tickets/items", headers=ana).json()["items"]
    assert {i["external_id"]: i["note"] for i in page} == {
        **{f"t{i}": None for i in range(5)},
        "why": why,
    }
    answer = {"item_id": lease["item"]["id"], "label": "bug"}
    assert client.post("/api/projects/tickets/annotations", json=answer, headers=ana).is_success
    undone = client.post("/api/projects/tickets/undo", headers=ana).json()["lease"]
    assert undone["item"]["note"] == why

    too_long = {"external_id": "long", "kind": "text", "payload": "x", "note": "n" * 1001}
    refused = client.post("/api/projects/tickets/items", json={"items": [too_long]}, headers=sci)
    assert refused.status_code == 422 and "'items.0.note'" in refused.json()["detail"]
    assert "at most 1000 characters" in refused.json()["detail"]
    blank = {"external_id": "blank", "kind": "text", "payload": "x", "note": "   "}
    refused = client.post("/api/projects/tickets/items", json={"items": [blank]}, headers=sci)
    assert refused.status_code == 400 and "Item 'blank' has note '   '" in refused.json()["detail"]
    total = client.get("/api/projects/tickets/items", headers=ana).json()["total"]
    assert total == 6, "refused imports add nothing"


def test_next_and_annotation_errors(
    client: TestClient, sci: dict[str, str], ana: dict[str, str], project: str
) -> None:
    too_many = client.post("/api/projects/tickets/next", json={"n": 51}, headers=ana)
    assert too_many.status_code == 422 and "'n'" in too_many.json()["detail"]
    assert "less than or equal to 50" in too_many.json()["detail"]
    default = client.post("/api/projects/tickets/next", headers=ana).json()["leases"]
    assert len(default) == 1
    wrong = client.post(
        "/api/projects/tickets/annotations",
        json={"item_id": default[0]["item"]["id"], "label": "cat"},
        headers=ana,
    )
    assert wrong.status_code == 400
    assert "Label 'cat' is not a class" in wrong.json()["detail"]
    assert "['bug', 'feature']" in wrong.json()["detail"]
    gone = client.post(
        "/api/projects/tickets/annotations", json={"item_id": 999, "label": "bug"}, headers=ana
    )
    assert gone.status_code == 404 and "No item 999" in gone.json()["detail"]
    other = client.post("/api/projects", json={"name": "o", "classes": ["a", "b"]}, headers=sci)
    assert other.status_code == 201
    client.post("/api/projects/o/members", json={"user": "ana"}, headers=sci)
    assert client.post("/api/projects/o/undo", headers=ana).json() == {"lease": None}
    negative = client.post(
        "/api/projects/tickets/annotations",
        json={"item_id": default[0]["item"]["id"], "label": "bug", "seconds": -1},
        headers=ana,
    )
    assert negative.status_code == 422 and "'seconds'" in negative.json()["detail"]


def test_reviews_of_disagreements(client: TestClient, engine: Engine) -> None:
    from inloop.label.review import queue_disagreements

    create_project("votes", ["a", "b"], overlap=2, engine=engine)
    [item] = add_items("votes", [{"external_id": "x", "text": "?"}], engine=engine)
    annotate("votes", item, "ana", "a", engine=engine)
    annotate("votes", item, "bo", "b", engine=engine)
    queue_disagreements("votes", engine=engine)
    rita = {"Authorization": f"Bearer {create_user('rita', 'reviewer', engine=engine)}"}
    add_member("votes", "rita", added_by="test", engine=engine)
    reviews = client.get("/api/projects/votes/reviews?kind=disagreement", headers=rita).json()
    [review] = reviews["reviews"]
    assert review["kind"] == "disagreement" and review["item"]["id"] == item
    bad_kind = client.get("/api/projects/votes/reviews?kind=vibes", headers=rita)
    assert bad_kind.status_code == 422 and "'kind'" in bad_kind.json()["detail"]
    change = {"decision": "change"}
    no_label = client.post(
        f"/api/projects/votes/reviews/{review['id']}/decision", json=change, headers=rita
    )
    assert no_label.status_code == 400 and "'label'" in no_label.json()["detail"]
    decided = client.post(
        f"/api/projects/votes/reviews/{review['id']}/decision",
        json={"decision": "change", "label": "b"},
        headers=rita,
    )
    assert decided.status_code == 200
    assert decided.json()["decision"] == "change" and decided.json()["label"] == "b"
    assert client.get("/api/projects/votes/reviews", headers=rita).json() == {"reviews": []}
    twice = client.post(
        f"/api/projects/votes/reviews/{review['id']}/decision",
        json={"decision": "keep"},
        headers=rita,
    )
    assert twice.status_code == 400


def test_openapi_document_lists_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/projects/{name}/next" in paths and "/api/users" in paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_server_labels_items(db_url: str, tmp_path: Path) -> None:
    engine = get_engine(db_url)
    token = create_user("sci", "scientist", engine=engine)
    port = _free_port()
    env = {**os.environ, "INLOOP_DB_URL": db_url}
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "inloop.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/api/me").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the server did not start: {(tmp_path / 'server.log').read_text()}"
                    )
                time.sleep(0.1)
            http.post("/api/projects", json={"name": "live", "classes": ["a", "b"]})
            items = [{"external_id": str(i), "kind": "text", "payload": "x"} for i in range(4)]
            http.post("/api/projects/live/items", json={"items": items})
            labeled = 0
            while leases := http.post("/api/projects/live/next", json={"n": 2}).json()["leases"]:
                for lease in leases:
                    body = {"item_id": lease["item"]["id"], "label": "a", "seconds": 0.1}
                    assert http.post("/api/projects/live/annotations", json=body).status_code == 201
                    labeled += 1
            stats = http.get("/api/projects/live/stats").json()
        assert labeled == 4 and stats["complete"] == 4 and stats["by_annotator"] == {"sci": 4}
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
