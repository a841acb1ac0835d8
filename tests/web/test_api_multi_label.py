"""Multi-label projects through the REST API: answers as ``labels``, wrong shapes refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.label import current_labels
from inloop.web.auth import create_user


@pytest.fixture
def ana(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_user('ana', 'annotator', engine=engine)}"}


@pytest.fixture
def tags(client: TestClient, engine: Engine, ana: dict[str, str]) -> str:
    sci = {"Authorization": f"Bearer {create_user('sci', 'scientist', engine=engine)}"}
    body = {"name": "tags", "classes": ["urgent", "billing", "bug"], "task_type": "multi_label"}
    created = client.post("/api/projects", json=body, headers=sci)
    assert created.status_code == 201 and created.json()["task_type"] == "multi_label"
    single = {"name": "plain", "classes": ["a", "b"]}
    assert client.post("/api/projects", json=single, headers=sci).status_code == 201
    items = [{"external_id": f"t{i}", "kind": "text", "payload": f"ticket {i}"} for i in range(3)]
    for name in ("tags", "plain"):
        added = client.post(f"/api/projects/{name}/items", json={"items": items}, headers=sci)
        assert added.status_code == 201
        member = client.post(f"/api/projects/{name}/members", json={"user": "ana"}, headers=sci)
        assert member.status_code == 201
    return "tags"


def _lease_ids(client: TestClient, name: str, headers: dict[str, str], n: int) -> list[int]:
    leases = client.post(f"/api/projects/{name}/next", json={"n": n}, headers=headers).json()
    return [lease["item"]["id"] for lease in leases["leases"]]


def test_projects_list_the_task_type(client: TestClient, ana: dict[str, str], tags: str) -> None:
    listed = {p["name"]: p["task_type"] for p in client.get("/api/projects", headers=ana).json()}
    assert listed == {"plain": "single_label", "tags": "multi_label"}
    bad = client.post(
        "/api/projects",
        json={"name": "x", "classes": ["a", "b"], "task_type": "ranking"},
        headers=ana,
    )
    assert bad.status_code in (403, 422)


def test_labels_answers_skips_and_item_page(
    client: TestClient, engine: Engine, ana: dict[str, str], tags: str
) -> None:
    first, second, third = _lease_ids(client, tags, ana, 3)
    url = f"/api/projects/{tags}/annotations"
    answer = client.post(url, json={"item_id": first, "labels": ["bug", "urgent"]}, headers=ana)
    assert answer.status_code == 201
    assert answer.json()["label"] is None and answer.json()["labels"] == ["bug", "urgent"]
    none_apply = client.post(url, json={"item_id": second, "labels": []}, headers=ana)
    assert none_apply.status_code == 201 and none_apply.json()["labels"] == []
    skip = client.post(url, json={"item_id": third, "labels": None}, headers=ana)
    assert skip.status_code == 201 and skip.json()["labels"] is None
    current = {c.item_id: c.labels for c in current_labels(tags, engine=engine).values()}
    assert current == {first: ("bug", "urgent"), second: ()}
    page = client.get(f"/api/projects/{tags}/items", headers=ana).json()["items"]
    assert {i["id"]: i["current_labels"] for i in page} == {
        first: ["bug", "urgent"],
        second: [],
        third: None,
    }
    stats = client.get(f"/api/projects/{tags}/stats", headers=ana).json()
    assert stats["by_annotator"] == {"ana": 2} and stats["complete"] == 2


def test_wrong_shapes_are_refused(client: TestClient, ana: dict[str, str], tags: str) -> None:
    [item] = _lease_ids(client, tags, ana, 1)
    url = f"/api/projects/{tags}/annotations"
    single = client.post(url, json={"item_id": item, "label": "bug"}, headers=ana)
    assert single.status_code == 422
    assert "is multi-label: send 'labels'" in single.json()["detail"]
    unknown = client.post(url, json={"item_id": item, "labels": ["bug", "cat"]}, headers=ana)
    assert unknown.status_code == 400
    assert "'cat' is not a class" in unknown.json()["detail"]
    assert "['urgent', 'billing', 'bug']" in unknown.json()["detail"]
    both = client.post(url, json={"item_id": item, "label": None, "labels": []}, headers=ana)
    assert both.status_code == 422 and "exactly one of 'label'" in both.json()["detail"]
    neither = client.post(url, json={"item_id": item}, headers=ana)
    assert neither.status_code == 422 and "exactly one of 'label'" in neither.json()["detail"]
    not_a_list = client.post(url, json={"item_id": item, "labels": "bug"}, headers=ana)
    assert not_a_list.status_code == 422 and "'labels'" in not_a_list.json()["detail"]

    [plain_item] = _lease_ids(client, "plain", ana, 1)
    plain_url = "/api/projects/plain/annotations"
    as_list = client.post(plain_url, json={"item_id": plain_item, "labels": ["a"]}, headers=ana)
    assert as_list.status_code == 422
    assert "is single-label: send 'label'" in as_list.json()["detail"]
    fine = client.post(plain_url, json={"item_id": plain_item, "label": "a"}, headers=ana)
    assert fine.status_code == 201 and fine.json()["labels"] is None


def test_learner_pool_skips_multi_label_projects(engine: Engine) -> None:
    import numpy as np

    from inloop.label import create_project, import_items
    from inloop.web.learning import LearnerPool

    create_project("hot", ["a", "b"], task_type="multi_label", engine=engine)
    import_items("hot", np.eye(4), labels=[["a"], ["b"], ["a", "b"], None], engine=engine)
    single = create_project("flat", ["a", "b"], engine=engine)
    import_items("flat", np.eye(4), labels=["a", "b", "a", None], engine=engine)
    pool = LearnerPool(engine, interval=5.0)
    assert set(pool.sync()) == {single.project_id}
    pool.poll()
    assert pool.errors_ == {}
