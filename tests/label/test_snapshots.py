"""Dataset snapshots: arrays, content hashes, loading back, and the run that used one."""

from __future__ import annotations

import hashlib
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from inloop.label.annotations import annotate
from inloop.label.io import import_items
from inloop.label.items import add_items
from inloop.label.projects import LabelError, LabelNotFoundError, create_project
from inloop.label.snapshots import list_snapshots, load_snapshot, snapshot
from inloop.store.artifacts import ArtifactStore, open_artifact_store
from inloop.store.db import get_engine

CLASSES = ["0", "1", "2"]


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return open_artifact_store(str(tmp_path / "blobs"))


def _digits(engine: Engine, name: str = "digits") -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 5))
    create_project(name, CLASSES, engine=engine)
    labels = [str(k % 3) if k % 4 else None for k in range(30)]
    ids = import_items(name, X, labels=labels, ids=[f"d{k}" for k in range(30)], engine=engine)
    return X, ids.item_ids


def _reference_hash(external_ids: list[str], labels: list[str], X: np.ndarray) -> str:
    """The documented canonical bytes, rebuilt independently of the module."""
    header = {
        "classes": CLASSES,
        "external_ids": external_ids,
        "format": 1,
        "labels": labels,
        "shape": list(X.shape),
    }
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\0"
    return hashlib.sha256(blob + X.astype("<f8").tobytes()).hexdigest()


def test_snapshot_holds_the_labeled_rows(engine: Engine, store: ArtifactStore) -> None:
    X, ids = _digits(engine)
    taken = snapshot("digits", engine=engine, artifacts=store, created_by="ana")
    labeled = [k for k in range(30) if k % 4]
    assert np.array_equal(taken.X, X[labeled])
    assert taken.y.tolist() == [str(k % 3) for k in labeled]
    assert taken.item_ids.tolist() == [ids[k] for k in labeled]
    assert taken.external_ids == tuple(f"d{k}" for k in labeled)
    assert (taken.n_items, taken.name, taken.project, taken.created_by) == (
        22,
        "digits-1",
        "digits",
        "ana",
    )
    assert taken.classes == tuple(CLASSES)
    assert taken.content_hash == _reference_hash(
        list(taken.external_ids), taken.y.tolist(), X[labeled]
    )
    X2, y2, snapshot_id = taken
    assert snapshot_id == taken.snapshot_id and X2 is taken.X and y2 is taken.y


def test_same_labels_same_hash_and_changes_show(engine: Engine, store: ArtifactStore) -> None:
    _, ids = _digits(engine)
    first = snapshot("digits", engine=engine, artifacts=store)
    second = snapshot("digits", engine=engine, artifacts=store)
    assert first.snapshot_id != second.snapshot_id
    assert first.content_hash == second.content_hash
    # A person confirming a label, then a model disagreeing, change nothing (people win) ...
    annotate("digits", ids[1], "ana", "1", engine=engine)
    annotate("digits", ids[1], "m", "0", origin="model", engine=engine)
    assert snapshot("digits", engine=engine, artifacts=store).content_hash == first.content_hash
    # ... a correction does.
    annotate("digits", ids[1], "ana", "2", engine=engine)
    assert snapshot("digits", engine=engine, artifacts=store).content_hash != first.content_hash


def test_hash_ignores_the_project_and_database_ids(engine: Engine, store: ArtifactStore) -> None:
    create_project("padding", CLASSES, engine=engine)
    add_items("padding", [{"external_id": "x", "text": ""}], engine=engine)  # shifts item ids
    _digits(engine, "one")
    _digits(engine, "two")
    one = snapshot("one", engine=engine, artifacts=store)
    two = snapshot("two", engine=engine, artifacts=store)
    assert one.item_ids.tolist() != two.item_ids.tolist()
    assert one.content_hash == two.content_hash


def test_load_by_id_and_name(engine: Engine, store: ArtifactStore) -> None:
    _digits(engine)
    taken = snapshot("digits", name="digits-v1", engine=engine, artifacts=store)
    for ref in (taken.snapshot_id, "digits-v1"):
        loaded = load_snapshot(ref, engine=engine, artifacts=store)
        assert np.array_equal(loaded.X, taken.X) and loaded.X.dtype == np.float64
        assert loaded.y.tolist() == taken.y.tolist()
        assert loaded.item_ids.tolist() == taken.item_ids.tolist()
        assert (loaded.name, loaded.content_hash, loaded.created_at, loaded.as_of) == (
            taken.name,
            taken.content_hash,
            taken.created_at,
            taken.as_of,
        )
    [row] = list_snapshots("digits", engine=engine)
    assert (row["snapshot_id"], row["n_items"], row["content_hash"]) == (
        taken.snapshot_id,
        22,
        taken.content_hash,
    )


def test_names_are_unique(engine: Engine, store: ArtifactStore) -> None:
    _digits(engine)
    snapshot("digits", name="v1", engine=engine, artifacts=store)
    with pytest.raises(LabelError, match=r"snapshot named 'v1' already exists"):
        snapshot("digits", name="v1", engine=engine, artifacts=store)
    snapshot("digits", name="digits-2", engine=engine, artifacts=store)
    assert snapshot("digits", engine=engine, artifacts=store).name == "digits-3"


def test_unknown_snapshot(engine: Engine) -> None:
    with pytest.raises(LabelNotFoundError, match=r"No snapshot 'nope'"):
        load_snapshot("nope", engine=engine)
    with pytest.raises(LabelError, match=r"snapshot id \(int\) or name"):
        load_snapshot(1.0, engine=engine)  # type: ignore[arg-type]


def test_as_of_freezes_an_earlier_moment(engine: Engine, store: ArtifactStore) -> None:
    _, ids = _digits(engine)
    moment = datetime.now(UTC)
    annotate("digits", ids[0], "ana", "1", engine=engine)  # d0 had no label
    earlier = snapshot("digits", as_of=moment, engine=engine, artifacts=store)
    now = snapshot("digits", engine=engine, artifacts=store)
    assert (earlier.n_items, now.n_items) == (22, 23)
    assert earlier.as_of == moment


def test_text_projects_and_empty_ones(engine: Engine, store: ArtifactStore) -> None:
    create_project("mail", ["spam", "ham"], engine=engine)
    empty = snapshot("mail", engine=engine, artifacts=store)
    assert empty.X.shape == (0, 0) and empty.y.shape == (0,)
    a, _ = add_items(
        "mail",
        [{"external_id": "a", "text": "win"}, {"external_id": "b", "text": "hi"}],
        engine=engine,
    )
    annotate("mail", a, "ana", "spam", engine=engine)
    taken = snapshot("mail", engine=engine, artifacts=store)
    assert taken.X.tolist() == ["win"] and taken.y.tolist() == ["spam"]
    assert load_snapshot(taken.snapshot_id, engine=engine, artifacts=store).X.tolist() == ["win"]


def test_mixed_kinds_and_widths_are_refused(engine: Engine, store: ArtifactStore) -> None:
    create_project("mixed", ["a", "b"], engine=engine)
    t, f, g = add_items(
        "mixed",
        [
            {"external_id": "t", "text": "x"},
            {"external_id": "f", "features": [1, 2]},
            {"external_id": "g", "features": [1, 2, 3]},
        ],
        engine=engine,
    )
    annotate("mixed", f, "ana", "a", engine=engine)
    annotate("mixed", g, "ana", "a", engine=engine)
    with pytest.raises(LabelError, match=r"different lengths \[2, 3\]"):
        snapshot("mixed", engine=engine, artifacts=store)
    annotate("mixed", t, "ana", "b", engine=engine)
    with pytest.raises(LabelError, match=r"several kinds \['features', 'text'\]"):
        snapshot("mixed", engine=engine, artifacts=store)


def test_a_flow_records_the_snapshot_in_its_run(
    inloop_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inloop import Flow, Runner

    url = f"sqlite:///{inloop_home / 'inloop.db'}"  # the default database of the settings
    engine = get_engine(url)
    _digits(engine)
    flow_file = tmp_path / "train_flow.py"
    flow_file.write_text(
        textwrap.dedent(
            """
            from inloop import FlowSpec, step
            from inloop.label.snapshots import snapshot

            class TrainFlow(FlowSpec):
                @step
                def start(self):
                    X, y, self.snapshot_id = snapshot("digits")
                    self.n = len(y)
                    self.next(self.end)

                @step
                def end(self):
                    pass
            """
        )
    )
    result = Runner(flow_file, show_output=False, max_workers=1).run()
    assert result.status == "successful"
    run = Flow("TrainFlow").latest_run
    assert run is not None
    task = run["start"].task
    assert task is not None
    snapshot_id = task.data.snapshot_id
    assert task.data.n == 22
    assert f"snapshot:{snapshot_id}" in run.system_tags  # lineage users cannot remove
    assert load_snapshot(snapshot_id, engine=engine).n_items == 22
