"""The ``inloop label`` commands, end to end on the database of the test's INLOOP_HOME.

Tests taking ``db_url`` run once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from inloop.cli import label
from inloop.cli.main import user_errors
from inloop.label import current_labels, get_items, get_project, load_snapshot, queue_stats


def _app() -> typer.Typer:
    # Registered as the lead does on the root command: app.add_typer(label.app, name="label").
    root = typer.Typer(add_completion=False)

    @root.callback()
    def _root() -> None:
        """inloop."""

    root.add_typer(label.app, name="label")
    return root


APP = _app()


@pytest.fixture
def runner() -> CliRunner:
    # Wide, so Rich does not fold the tables' columns.
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": "ana"})


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(APP, ["label", *args])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result.output


def test_create_with_classes_and_keys(runner: CliRunner) -> None:
    out = run(runner, "create", "digits", "--class", "0", "--class", "1", "--keys", "01")
    assert "Created single_label project 'digits'" in out and "0 [0], 1 [1]" in out
    run(runner, "create", "pets", "--classes", "cat,dog", "--instructions", "Is it a cat?")
    pets = get_project("pets")
    assert pets.class_names == ("cat", "dog")
    assert pets.instructions == "Is it a cat?"
    run(runner, "create", "triple", "--classes", "a,b", "--overlap", "3")
    assert get_project("triple").overlap == 3


def test_bad_create_input_is_one_red_line(runner: CliRunner) -> None:
    run(runner, "create", "digits", "--classes", "0,1")
    out = run(runner, "create", "digits", "--classes", "0,1", code=1)
    assert "already exists" in out and out.count("\n") == 1
    out = run(runner, "create", "p2", "--classes", "a,b,c", "--keys", "ab", code=1)
    assert "--keys 'ab' has 2 keys for 3 classes" in out
    out = run(runner, "create", "p3", "--classes", "a,b", "--keys", "xx", code=1)
    assert "Class keys must be distinct" in out
    out = run(runner, "create", "p4", code=1)
    assert "--class" in out
    out = run(runner, "create", "p5", "--classes", "a", code=1)
    assert "at least 2 classes" in out


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("┃│").replace("┃", "│").split("│")]


def test_import_csv_status_export_round_trip(
    runner: CliRunner, tmp_path: Path, db_url: str
) -> None:
    run(runner, "create", "tickets", "--classes", "spam,ham")
    source = _write_csv(
        tmp_path / "tickets.csv",
        [
            {"ticket": "t1", "text": "win money", "y": "spam"},
            {"ticket": "t2", "text": "meeting at 3", "y": "ham"},
            {"ticket": "t3", "text": "lunch?", "y": ""},
        ],
    )
    out = run(
        runner, "import", "tickets", str(source), "--label-column", "y", "--id-column", "ticket"
    )
    assert "Imported 3 items and 2 labels into 'tickets'" in out
    assert sorted(c.external_id for c in current_labels("tickets").values()) == ["t1", "t2"]

    listing = run(runner, "status")
    header = next(line for line in listing.splitlines() if "queue depth" in line)
    row = next(line for line in listing.splitlines() if "tickets" in line)
    cells = dict(zip(_cells(header), _cells(row), strict=True))
    # One item came without a label, so one label is still due.
    assert cells == {
        "project": "tickets",
        "classes": "spam, ham",
        "items": "3",
        "labeled": "2",
        "queue depth": "1",
        "leased": "0",
    }

    detail = run(runner, "status", "tickets")
    assert "queue depth" in detail and "1 labels due" in detail
    assert "Labels per annotator" in detail and "import" in detail

    target = tmp_path / "out" / "labels.jsonl"
    target.parent.mkdir()
    out = run(runner, "export", "tickets", str(target))
    assert "Exported 2 labels of 'tickets'" in out
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert {(r["external_id"], r["label"]) for r in exported} == {("t1", "spam"), ("t2", "ham")}

    # The exported CSV imports again into a new project: a round trip of ids and labels.
    csv_out = tmp_path / "labels.csv"
    run(runner, "export", "tickets", str(csv_out))
    run(runner, "create", "tickets-copy", "--classes", "spam,ham")
    rows = list(csv.DictReader(csv_out.open()))
    again = _write_csv(
        tmp_path / "again.csv",
        [{"id": r["external_id"], "text": r["external_id"], "label": r["label"]} for r in rows],
    )
    run(runner, "import", "tickets-copy", str(again))
    copied = {c.external_id: c.label for c in current_labels("tickets-copy").values()}
    assert copied == {"t1": "spam", "t2": "ham"}


def test_import_npy_with_label_column_and_snapshot(runner: CliRunner, tmp_path: Path) -> None:
    run(runner, "create", "points", "--classes", "0,1")
    X = np.array([[0.1, 0.2, 0.0], [0.3, 0.4, 1.0], [0.5, 0.6, np.nan]])
    path = tmp_path / "points.npy"
    np.save(path, X)
    out = run(runner, "import", "points", str(path), "--label-column", "-1")
    assert "Imported 3 items and 2 labels into 'points'" in out
    assert queue_stats("points").items == 3

    out = run(runner, "snapshot", "points", "--name", "points-v1")
    taken = load_snapshot("points-v1")
    assert f"Snapshot {taken.snapshot_id} 'points-v1'" in out
    assert "2 labeled items" in out and taken.content_hash in out
    assert taken.X.tolist() == [[0.1, 0.2], [0.3, 0.4]]
    assert taken.y.tolist() == ["0", "1"]
    out = run(runner, "snapshot", "points", "--name", "points-v1", code=1)
    assert "already exists" in out


def test_snapshots_lists_ids_newest_first(runner: CliRunner) -> None:
    run(runner, "create", "pets", "--classes", "cat,dog")
    assert "No snapshots of 'pets' yet" in run(runner, "snapshots", "pets")
    run(runner, "snapshot", "pets", "--name", "pets-v1")
    run(runner, "snapshot", "pets", "--name", "pets-v2")
    out = run(runner, "snapshots", "pets")
    v1, v2 = (load_snapshot(n) for n in ("pets-v1", "pets-v2"))
    assert out.index("pets-v2") < out.index("pets-v1")
    assert f" {v1.snapshot_id} " in out and v2.content_hash[:12] in out
    assert "No labeling project 'cats'" in run(runner, "snapshots", "cats", code=1)


def test_bad_import_input(runner: CliRunner, tmp_path: Path, db_url: str) -> None:
    run(runner, "create", "alpha", "--classes", "a,b")
    run(runner, "create", "beta", "--classes", "a,b")
    source = _write_csv(tmp_path / "rows.csv", [{"id": "1", "text": "x", "label": "a"}])
    out = run(runner, "import", "gamma", str(source), code=1)
    assert "No labeling project 'gamma'" in out and "'alpha', 'beta'" in out
    out = run(runner, "status", "gamma", code=1)
    assert "Known projects: 'alpha', 'beta'" in out
    out = run(runner, "import", "alpha", str(tmp_path / "rows.txt"), code=1)
    assert "--format" in out
    out = run(runner, "import", "alpha", str(source), "--label-column", "y", code=1)
    assert "--label-column 'y' is not a column" in out and "'label'" in out
    wrong = _write_csv(tmp_path / "wrong.csv", [{"id": "1", "text": "x", "label": "c"}])
    out = run(runner, "import", "alpha", str(wrong), code=1)
    assert "Label 'c' is not a class of project 'alpha'" in out
    np.save(tmp_path / "flat.npy", np.zeros(3))
    out = run(runner, "import", "alpha", str(tmp_path / "flat.npy"), code=1)
    assert "expected a 2-D array" in out
    np.save(tmp_path / "two.npy", np.zeros((2, 2)))
    out = run(runner, "import", "alpha", str(tmp_path / "two.npy"), "--label-column", "5", code=1)
    assert "from 0 to 1" in out
    assert queue_stats("alpha").items == 0  # nothing half-imported
    run(runner, "import", "alpha", str(source))
    out = run(runner, "import", "alpha", str(source), code=1)
    assert "already has items with the external ids '1'" in out


def test_status_without_projects_and_export_format(runner: CliRunner, tmp_path: Path) -> None:
    assert "No labeling projects yet" in run(runner, "status")
    run(runner, "create", "alpha", "--classes", "a,b")
    out = run(runner, "export", "alpha", str(tmp_path / "x.npy"), code=1)
    assert "--format" in out and "csv" in out


def test_status_shows_agreement_between_annotators(runner: CliRunner, db_url: str) -> None:
    from inloop.label import add_items, annotate

    run(runner, "create", "pair", "--classes", "a,b", "--overlap", "2")
    ids = add_items("pair", [{"external_id": str(i), "text": str(i)} for i in range(2)])
    for item, (first, second) in zip(ids, [("a", "a"), ("a", "b")], strict=True):
        annotate("pair", item, "ana", first)
        annotate("pair", item, "bob", second)
    out = run(runner, "status", "pair")
    assert "ana" in out and "bob" in out
    assert "1 unanimous, 1 contested" in out and "Fleiss' kappa" in out


def test_audit_lists_the_review_queue(runner: CliRunner, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(n_class=3, return_X_y=True)
    X, y = X[:150], y[:150].copy()
    flipped = [3, 40, 77]
    y[flipped] = (y[flipped] + 1) % 3
    path = tmp_path / "digits.npy"
    np.save(path, np.column_stack([X, y]))
    run(runner, "create", "digits", "--classes", "0,1,2")
    run(runner, "import", "digits", str(path), "--label-column", "-1")
    out = run(runner, "audit", "digits", "--budget", "10", "--folds", "3")
    assert "Review queue of digits" in out
    assert "suggested" in out and "confidence" in out


def test_audit_folds_option_reaches_every_step(runner: CliRunner, tmp_path: Path) -> None:
    # 6 items a class: enough for 3 folds inside each training fold, not for 5. Any step
    # splitting into another number of folds fails (or warns, an error in this suite).
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.5, (6, 2)) for c in np.eye(3, 2) * 6.0])
    y = np.repeat(np.arange(3), 6)
    y[0] = 2
    path = tmp_path / "blobs.npy"
    np.save(path, np.column_stack([X, y]))
    run(runner, "create", "blobs", "--classes", "0,1,2")
    run(runner, "import", "blobs", str(path), "--label-column", "-1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = run(runner, "audit", "blobs", "--folds", "3")
    assert "Review queue of blobs" in out


def test_an_error_is_one_red_line_on_stderr() -> None:
    # The label commands report errors as the root command does (user_errors of main).
    result = CliRunner().invoke(APP, ["label", "status", "nothing"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No labeling project 'nothing'")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert label._cli().user_errors is user_errors


def test_create_a_multi_label_project(runner: CliRunner) -> None:
    out = run(runner, "create", "tags", "--classes", "cat,dog,bird", "--task-type", "multi-label")
    assert "multi_label project 'tags'" in out
    from inloop.label.projects import get_project

    assert get_project("tags").task_type == "multi_label"
    bad = run(runner, "create", "oops", "--classes", "a,b", "--task-type", "regression", code=1)
    assert "regression" in bad and "single_label" in bad


def test_import_refuses_text_no_database_can_store(runner: CliRunner, tmp_path: Path) -> None:
    run(runner, "create", "notes", "--classes", "a,b")
    source = tmp_path / "items.jsonl"
    source.write_text('{"id": "1", "text": "fine"}\n{"id": "2", "text": "bad \\u0000 text"}\n')
    out = run(runner, "import", "notes", str(source), code=1)
    assert "NUL" in out and "items[1]" in out
    source.write_text('{"id": "1", "text": "bad \\ud800 text"}\n')
    out = run(runner, "import", "notes", str(source), code=1)
    assert "surrogate" in out
    assert get_items("notes") == []
