"""Importing items and labels from CSV, JSONL and arrays; exporting the current labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from inloop.label.annotations import annotate, current_labels, list_annotations
from inloop.label.io import export_labels, import_items
from inloop.label.items import get_items
from inloop.label.projects import LabelError, create_project
from inloop.label.queue import next_items
from inloop.store.db import get_engine


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = get_engine(db_url)
    create_project("p", ["spam", "ham"], engine=engine)
    return engine


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_of_texts_with_some_labels(engine: Engine, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "mail.csv",
        [
            {"id": "m1", "text": "Win money", "label": "spam", "priority": "1.5"},
            {"id": "m2", "text": "Lunch?", "label": "", "priority": ""},
            {"id": "m3", "text": "Meeting notes", "label": "ham", "priority": "0"},
        ],
    )
    result = import_items("p", path, engine=engine)
    assert result.n_labels == 2 and len(result.item_ids) == 3
    items = get_items("p", engine=engine)
    assert [(i.external_id, i.kind, i.payload, i.priority) for i in items] == [
        ("m1", "text", {"text": "Win money"}, 1.5),
        ("m2", "text", {"text": "Lunch?"}, 0.0),
        ("m3", "text", {"text": "Meeting notes"}, 0.0),
    ]
    current = current_labels("p", engine=engine)
    assert {c.external_id: (c.label, c.origin, c.annotator) for c in current.values()} == {
        "m1": ("spam", "import", "import"),
        "m3": ("ham", "import", "import"),
    }
    # Imported labels fill the items' overlap: only the unlabeled one is queued.
    assert [x.item.external_id for x in next_items("p", "ana", n=5, engine=engine)] == ["m2"]


def test_a_note_column_is_shown_to_labelers(engine: Engine, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "notes.csv",
        [
            {"id": "n1", "text": "Refund now", "note": "the models disagree: spam vs ham"},
            {"id": "n2", "text": "See you", "note": ""},
        ],
    )
    import_items("p", path, engine=engine)
    notes = {i.external_id: i.note for i in get_items("p", engine=engine)}
    assert notes == {"n1": "the models disagree: spam vs ham", "n2": None}


def test_csv_with_feature_columns(engine: Engine, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "rows.csv",
        [{"x0": 1, "x1": 2.5, "label": "ham"}, {"x0": -1, "x1": 0, "label": ""}],
    )
    import_items("p", path, engine=engine)
    items = get_items("p", engine=engine)
    assert [(i.external_id, i.payload) for i in items] == [
        ("0", {"features": [1.0, 2.5]}),
        ("1", {"features": [-1.0, 0.0]}),
    ]


def test_jsonl(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [
        {"external_id": "a", "features": [1, 2], "label": "spam"},
        {"external_id": "b", "image": "https://img/b.png", "source": "production"},
        {"id": "c", "text": "hi", "label": None},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    result = import_items("p", path, annotator="legacy-db", engine=engine)
    assert result.n_labels == 1
    items = get_items("p", engine=engine)
    assert [(i.kind, i.source) for i in items] == [
        ("features", "import"),
        ("image", "production"),
        ("text", "import"),
    ]
    [event] = list_annotations("p", engine=engine)
    assert (event.annotator, event.origin, event.label) == ("legacy-db", "import", "spam")


def test_numpy_rows_with_labels(engine: Engine) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    y = np.array(["spam", "ham"] * 25, dtype=object)
    y[::5] = None
    result = import_items("p", X, labels=y, engine=engine)
    assert result.n_labels == 40
    items = get_items("p", engine=engine)
    assert np.array_equal(np.array([i.payload["features"] for i in items]), X)  # type: ignore[index]
    assert [i.external_id for i in items[:3]] == ["0", "1", "2"]
    current = current_labels("p", engine=engine)
    assert [current[i].label for i in result.item_ids if i in current] == [
        v for v in y if v is not None
    ]


def test_numpy_int_labels_match_class_names(db_url: str) -> None:
    engine = get_engine(db_url)
    create_project("digits", [str(d) for d in range(10)], engine=engine)
    result = import_items(
        "digits", np.eye(10), labels=np.arange(10), ids=list("abcdefghij"), engine=engine
    )
    labels = current_labels("digits", engine=engine)
    assert [labels[i].label for i in result.item_ids] == [str(d) for d in range(10)]


def test_a_bad_label_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "bad.csv",
        [{"id": "m1", "text": "a", "label": "spam"}, {"id": "m2", "text": "b", "label": "eggs"}],
    )
    with pytest.raises(LabelError, match=r"Label 'eggs' is not a class of project 'p'"):
        import_items("p", path, engine=engine)
    assert get_items("p", engine=engine) == []


def test_a_repeated_id_imports_nothing(engine: Engine) -> None:
    import_items("p", np.zeros((2, 2)), engine=engine)
    with pytest.raises(LabelError, match=r"already has items with the external ids '1'"):
        import_items("p", np.ones((2, 2)), ids=["new", "1"], labels=["spam", "ham"], engine=engine)
    assert len(get_items("p", engine=engine)) == 2
    assert list_annotations("p", engine=engine) == []


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        (np.zeros(3), {}, r"must be 2-D .* Got shape \(3,\)"),
        (np.array([[1.0, np.nan]]), {}, r"Rows \[0\] .* NaN or infinite"),
        (np.zeros((2, 2)), {"labels": ["spam"]}, r"'labels' has 1 entries but the array has 2"),
        (np.zeros((2, 2)), {"ids": ["a"]}, r"'ids' has 1 entries"),
        ("items.txt", {}, r"Cannot tell the format of .*items\.txt"),
        ("items.csv", {"format": "xml"}, r"'format' parameter of import_items must be 'csv'"),
        ("missing.csv", {}, r"Cannot read .*missing\.csv"),
    ],
)
def test_bad_sources(
    engine: Engine, tmp_path: Path, source: object, kwargs: dict[str, object], message: str
) -> None:
    if isinstance(source, str):
        source = tmp_path / source
        if source.name == "items.txt":
            source.write_text("x")
    with pytest.raises(LabelError, match=message):
        import_items("p", source, engine=engine, **kwargs)  # type: ignore[arg-type]


def test_bad_rows(engine: Engine, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "mixed.csv", [{"id": "a", "x0": "1", "x1": "high"}])
    with pytest.raises(LabelError, match=r"column 'x1' holds 'high', not a number"):
        import_items("p", path, engine=engine)
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"id": "a", "text": "x"}\n[1, 2]\n')
    with pytest.raises(LabelError, match=r"Line 2 of .* expected a JSON object"):
        import_items("p", lines, engine=engine)
    lines.write_text('{"id": "a", "text": "x", "colour": "red"}\n')
    with pytest.raises(LabelError, match=r"unexpected fields \['colour'\]"):
        import_items("p", lines, engine=engine)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_export_round_trip(engine: Engine, tmp_path: Path, suffix: str) -> None:
    result = import_items("p", np.eye(3), labels=["spam", None, "ham"], engine=engine)
    annotate("p", result.item_ids[1], "ana", "spam", engine=engine)
    annotate("p", result.item_ids[0], "rita", "ham", origin="review", engine=engine)
    target = tmp_path / f"labels.{suffix}"
    assert export_labels("p", target, engine=engine) == 3
    if suffix == "csv":
        with target.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["external_id"], r["label"], r["origin"], r["annotator"]) for r in rows] == [
        ("0", "ham", "review", "rita"),
        ("1", "spam", "human", "ana"),
        ("2", "ham", "import", "import"),
    ]
    assert all(r["labeled_at"].endswith("+00:00") for r in rows)
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_needs_a_known_format(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(LabelError, match=r"format='csv' or format='jsonl'"):
        export_labels("p", tmp_path / "labels.parquet", engine=engine)
    assert export_labels("p", tmp_path / "labels.out", format="jsonl", engine=engine) == 0
