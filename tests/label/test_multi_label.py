"""Multi-label projects: answers are sets of classes, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine

from inloop.label import (
    ActiveLearner,
    LabelError,
    add_items,
    annotate,
    create_project,
    current_labels,
    export_labels,
    history,
    import_items,
    snapshot,
)
from inloop.label.consensus import agreement_summary
from inloop.label.queue import next_items
from inloop.label.review import queue_audit, queue_disagreements
from inloop.store.artifacts import open_artifact_store
from inloop.store.db import get_engine

CLASSES = [{"name": "urgent", "key": "u"}, {"name": "billing", "key": "b"}, "bug"]


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def tags(engine: Engine) -> str:
    create_project("tags", CLASSES, task_type="multi_label", engine=engine)
    add_items(
        "tags", [{"external_id": f"t{i}", "text": f"ticket {i}"} for i in range(4)], engine=engine
    )
    return "tags"


def test_annotations_are_sets_and_skips_stay_skips(engine: Engine, tags: str) -> None:
    first = annotate(tags, "t0", "ana", ["bug", "urgent", "bug"], seconds=1.5, engine=engine)
    assert (first.label, first.labels, first.skipped) == (None, ("bug", "urgent"), False)
    assert annotate(tags, "t1", "ana", set(), engine=engine).labels == ()  # none apply
    skip = annotate(tags, "t2", "ana", None, engine=engine)
    assert (skip.skipped, skip.labels) == (True, None)
    annotate(tags, "t0", "ana", ("billing",), reason="misread", engine=engine)
    current = {c.external_id: c for c in current_labels(tags, engine=engine).values()}
    assert sorted(current) == ["t0", "t1"]  # a skip is not a label
    assert (current["t0"].label, current["t0"].labels) == (None, ("billing",))
    assert current["t1"].labels == ()
    assert [a.labels for a in history("t0", project=tags, engine=engine)] == [
        ("bug", "urgent"),
        ("billing",),
    ]
    # Answered (and skipped) items leave ana's queue, as in single-label projects.
    leased = {lease.item.external_id for lease in next_items(tags, "ana", 10, engine=engine)}
    assert leased == {"t3"}


def test_wrong_shapes_are_refused_naming_the_task_type(engine: Engine, tags: str) -> None:
    with pytest.raises(LabelError, match=r"multi-label.*list of classes"):
        annotate(tags, "t0", "ana", "bug", engine=engine)
    with pytest.raises(LabelError, match=r"'cat' is not a class.*\['urgent', 'billing', 'bug'\]"):
        annotate(tags, "t0", "ana", ["bug", "cat"], engine=engine)
    create_project("single", ["a", "b"], engine=engine)
    add_items("single", [{"external_id": "x", "text": "?"}], engine=engine)
    with pytest.raises(LabelError, match=r"single-label.*not the list \['a'\]"):
        annotate("single", "x", "ana", ["a"], engine=engine)
    with pytest.raises(LabelError, match=r"'task_type'.*'multi_label'"):
        create_project("bad", ["a", "b"], task_type="ranking", engine=engine)
    assert history("t0", project=tags, engine=engine) == []


def test_export_import_round_trip(engine: Engine, tags: str, tmp_path: Path) -> None:
    annotate(tags, "t0", "ana", ["urgent", "bug"], engine=engine)
    annotate(tags, "t1", "ana", [], engine=engine)
    annotate(tags, "t2", "ana", ["billing"], engine=engine)
    assert export_labels(tags, tmp_path / "out.jsonl", engine=engine) == 3
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["external_id"], r["label"]) for r in rows] == [
        ("t0", ["bug", "urgent"]),
        ("t1", []),
        ("t2", ["billing"]),
    ]
    assert export_labels(tags, tmp_path / "out.csv", engine=engine) == 3
    csv_text = (tmp_path / "out.csv").read_text()
    assert "t0,1,bug|urgent," in csv_text.replace("\r\n", "\n")

    create_project("again", CLASSES, task_type="multi_label", engine=engine)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": r["external_id"], "text": "t", "label": r["label"]}) + "\n"
            for r in rows
        )
        + json.dumps({"id": "u", "text": "unlabeled"})
        + "\n"
    )
    assert import_items("again", source, engine=engine).n_labels == 3
    again = {c.external_id: c.labels for c in current_labels("again", engine=engine).values()}
    assert again == {"t0": ("bug", "urgent"), "t1": (), "t2": ("billing",)}

    create_project("from-csv", CLASSES, task_type="multi_label", engine=engine)
    table = tmp_path / "in.csv"
    table.write_text("id,text,label\na,one,billing|urgent\nb,two,\nc,three,bug\n")
    assert import_items("from-csv", table, engine=engine).n_labels == 2
    found = {c.external_id: c.labels for c in current_labels("from-csv", engine=engine).values()}
    assert found == {"a": ("billing", "urgent"), "c": ("bug",)}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label\nz,one,billing|nope\n")
    with pytest.raises(LabelError, match="'nope' is not a class"):
        import_items("from-csv", bad, engine=engine)


def test_snapshot_is_multi_hot_in_class_order(engine: Engine) -> None:
    create_project("hot", CLASSES, task_type="multi_label", engine=engine)
    X = np.arange(12, dtype=float).reshape(4, 3)
    labels = [["bug", "urgent"], [], None, ["billing"]]
    assert import_items("hot", X, labels=labels, engine=engine).n_labels == 3
    store = open_artifact_store("memory://multi-label-snapshot")
    taken = snapshot("hot", engine=engine, artifacts=store)
    assert taken.classes == ("urgent", "billing", "bug")
    assert taken.y.dtype.kind == "i"
    assert taken.y.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert taken.X.shape == (3, 3) and taken.n_items == 3
    assert list(taken.external_ids) == ["0", "1", "3"]
    again = snapshot("hot", engine=engine, artifacts=store)
    assert again.content_hash == taken.content_hash
    annotate("hot", "1", "ana", ["bug"], engine=engine)
    assert snapshot("hot", engine=engine, artifacts=store).content_hash != taken.content_hash


def test_single_label_tools_refuse_multi_label_projects(engine: Engine, tags: str) -> None:
    annotate(tags, "t0", "ana", ["bug"], engine=engine)
    expected = r"supports single-label projects; project 'tags' is multi-label"
    with pytest.raises(LabelError, match="agreement_summary " + expected):
        agreement_summary(tags, engine=engine)
    with pytest.raises(LabelError, match="queue_disagreements " + expected):
        queue_disagreements(tags, engine=engine)
    with pytest.raises(LabelError, match="queue_audit " + expected):
        queue_audit(tags, estimator=LogisticRegression(), engine=engine)
    learner = ActiveLearner(tags, LogisticRegression(), engine=engine)
    with pytest.raises(LabelError, match="ActiveLearner " + expected):
        learner.refresh()
    with pytest.raises(LabelError, match="ActiveLearner " + expected):
        learner.new_labels()
