"""A trained model's lineage is one call: request -> scores -> versions -> run, task -> snapshot
-> the people behind its labels; in Python, with ``inloop lineage`` and over REST."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from inloop.cli.main import app as cli
from inloop.label import annotate, create_project, get_items, import_items
from inloop.serve import (
    MajorityClass,
    Rendezvous,
    RequestNotFoundError,
    add_feedback,
    create_service,
    lineage,
    register,
)
from inloop.store.db import get_engine
from inloop.web import create_app
from inloop.web.auth import create_user

TRAIN_FLOW = """
from inloop import FlowSpec, step
from inloop.label.snapshots import snapshot
from sklearn.linear_model import LogisticRegression


class TrainFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @step
    def train(self):
        X, y, self.snapshot_id = snapshot("tiny")
        self.model = LogisticRegression().fit(X, y)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.fixture
def answered(db_url: str, tmp_path: Path) -> dict[str, Any]:
    """Labels by an import, ana and rita; a flow trains on their snapshot; its model is the
    champion of 'tiny-svc' (a MajorityClass challenger has no run); one request answered."""
    from inloop import Flow, Runner

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (10, 3)), rng.normal(2, 1, (10, 3))])
    create_project("tiny", ["neg", "pos"])
    labels = ["neg"] * 8 + [None, None] + ["pos"] * 10
    import_items("tiny", X, labels=labels)
    items = get_items("tiny")
    annotate("tiny", items[8].item_id, "ana", "neg")
    annotate("tiny", items[9].item_id, "ana", "pos")
    annotate("tiny", items[9].item_id, "rita", "neg", origin="review")
    annotate("tiny", items[0].item_id, "ana", None)  # a skip counts for nothing
    flow_file = tmp_path / "train_flow.py"
    flow_file.write_text(textwrap.dedent(TRAIN_FLOW))
    assert Runner(flow_file, show_output=False, max_workers=1).run().status == "successful"
    run = Flow("TrainFlow").latest_run
    assert run is not None
    task = run["train"].task
    assert task is not None
    champion = register(task["model"], name="tiny", metrics={"accuracy": 0.95})
    challenger = register(MajorityClass(["neg", "pos"], [1, 1]), name="tiny-base")
    create_service(
        "tiny-svc",
        {"champion": champion.ref, "challengers": [challenger.ref], "fallback": {"label": "neg"}},
        created_by="ana",
        reason="launch",
    )

    async def ask() -> Any:
        async with Rendezvous() as rendezvous:
            return await rendezvous.predict("tiny-svc", [X[0].tolist()])

    answer = asyncio.run(ask())
    add_feedback("tiny-svc", answer.request_id, ["neg"], by="rita", role="reviewer")
    return {
        "request_id": answer.request_id,
        "champion": champion.ref,
        "challenger": challenger.ref,
        "run": run.pathspec,
        "task": task.pathspec,
        "snapshot_id": task.data.snapshot_id,
    }


def test_lineage_follows_a_request_to_the_people_behind_its_labels(
    answered: dict[str, Any],
) -> None:
    found = lineage(answered["request_id"])  # the id alone finds the service
    request = found.request
    assert request.service == "tiny-svc" and request.model == answered["champion"]
    assert request.feedback is not None and request.feedback.labels == ["neg"]
    champion, challenger = found.models  # the one that answered first
    assert champion.ref == answered["champion"] and champion.answered
    assert champion.role == "champion" and champion.status == "ok"
    assert champion.version is not None and champion.version.metrics == {"accuracy": 0.95}
    assert champion.run is not None and champion.run.pathspec == answered["run"]
    assert champion.run.status == "succeeded"
    assert champion.task is not None and champion.task.pathspec == answered["task"]
    assert champion.task.step == "train"
    snapshot = champion.snapshot
    assert snapshot is not None and snapshot.snapshot_id == answered["snapshot_id"]
    assert snapshot.project == "tiny" and snapshot.n_items == 20
    people = {p.name: (p.labels, p.reviews, p.final) for p in snapshot.contributors}
    assert people == {"import": (18, 0, 18), "ana": (2, 0, 1), "rita": (0, 1, 1)}

    assert challenger.ref == answered["challenger"] and not challenger.answered
    assert challenger.version is not None and challenger.run is None
    assert challenger.task is None and challenger.snapshot is None

    as_json = json.loads(json.dumps(found.to_dict()))
    assert as_json["models"][0]["snapshot"]["contributors"][0]["name"] == "import"
    assert as_json["feedback"]["history"][0]["role"] == "reviewer"

    with pytest.raises(RequestNotFoundError, match="No archived request"):
        lineage("f" * 32)


def test_inloop_lineage_prints_the_chain(answered: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["lineage", answered["request_id"]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "tiny-svc",
        answered["champion"],
        f"run {answered['run']}: succeeded",
        f"task {answered['task']}",
        "label snapshot tiny-1",
        "ana: 2 labels, 0 review decisions, 1 of the snapshot's labels",
        "rita: 0 labels, 1 review decisions, 1 of the snapshot's labels",
        "by rita (reviewer, api)",
        "run: none recorded",
    ):
        assert text in out, text
    as_json = CliRunner().invoke(cli, ["lineage", answered["request_id"], "--json"])
    assert json.loads(as_json.stdout)["request_id"] == answered["request_id"]
    missing = CliRunner().invoke(cli, ["lineage", "nope"])
    assert missing.exit_code == 1 and "No archived request 'nope'" in missing.output


def test_the_lineage_over_rest_needs_a_reviewer(answered: dict[str, Any]) -> None:
    engine = get_engine()
    rita = {"Authorization": f"Bearer {create_user('rita', 'reviewer', engine=engine)}"}
    ana = {"Authorization": f"Bearer {create_user('ana', 'annotator', engine=engine)}"}
    path = f"/v1/requests/{answered['request_id']}/lineage"
    with TestClient(create_app(engine=engine, learners=False)) as client:
        shown = client.get(path, headers=rita)
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert body["service"] == "tiny-svc"
        assert body["models"][0]["run"]["pathspec"] == answered["run"]
        assert client.get(path, headers=ana).status_code == 403
        assert client.get("/v1/requests/nope/lineage", headers=rita).status_code == 404
