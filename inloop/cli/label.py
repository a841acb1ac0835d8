"""The ``inloop label`` commands: create, import, export, status, snapshot, audit, reviews.

Registered on the root command as ``inloop label``; user errors print one red
line and exit with status 1, like every other command::

    inloop label create digits --classes 0,1,2 --keys 012
    inloop label import digits pool.csv --label-column y
    inloop label status digits
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inloop.cli.progress import progress_bar

if TYPE_CHECKING:
    import numpy as np


app = typer.Typer(
    help="Labeling projects: create them, import items, follow progress, snapshot, audit, review.",
    no_args_is_help=True,
)

_IMPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npy": "npy"}
_EXPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Files above this size show a progress bar on a terminal.
_LARGE_FILE = 1 << 20
_IMPORTER = "import"


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports this module to register ``app``."""
    from inloop.cli import main

    return main


def _label_error(message: str) -> Exception:
    from inloop.label.projects import LabelError

    return LabelError(message)


# --------------------------------------------------------------------------- create


def _class_list(classes: list[str], classes_csv: str | None, keys: str | None) -> list[Any]:
    names = list(classes)
    if classes_csv is not None:
        names += [n.strip() for n in classes_csv.split(",") if n.strip()]
    if not names:
        raise _label_error(
            "A project needs its classes: pass --class once per class (--class cat --class dog) "
            "or --classes cat,dog."
        )
    if keys is None:
        return names
    if len(keys) != len(names):
        raise _label_error(
            f"--keys {keys!r} has {len(keys)} keys for {len(names)} classes {names}: pass one "
            f"character per class, in order, such as --keys "
            f"{''.join(str(i) for i in range(1, len(names) + 1))!r} (or leave --keys out)."
        )
    return [{"name": name, "key": key} for name, key in zip(names, keys, strict=True)]


@app.command("create")
def create_command(
    name: str = typer.Argument(..., help="The project's name, e.g. digits."),
    classes: list[str] = typer.Option(
        [], "--class", "-c", help="A class name (repeat: --class cat --class dog)."
    ),
    classes_csv: str | None = typer.Option(
        None, "--classes", help="Class names separated by commas, e.g. cat,dog."
    ),
    keys: str | None = typer.Option(
        None, "--keys", help="One keyboard key per class, in order, e.g. 0123."
    ),
    instructions: str = typer.Option("", "--instructions", help="What annotators read."),
    overlap: int = typer.Option(1, "--overlap", help="How many annotators label each item."),
    task_type: str = typer.Option(
        "single_label",
        "--task-type",
        help="single_label (one class per item) or multi_label (any set of classes).",
    ),
) -> None:
    """Create a labeling project."""
    from inloop.label.projects import create_project

    with _cli().user_errors():
        project = create_project(
            name,
            _class_list(classes, classes_csv, keys),
            instructions=instructions,
            overlap=overlap,
            task_type=task_type.replace("-", "_"),
        )
        shown = ", ".join(
            c.name if c.key is None else f"{c.name} [{c.key}]" for c in project.classes
        )
        _cli()._stdout().print(
            escape(
                f"Created {project.task_type} project {project.name!r}: classes {shown}; "
                f"overlap {project.overlap}."
            )
        )


# --------------------------------------------------------------------------- import


def _pick_format(path: Path, format: str | None, formats: dict[str, str], verb: str) -> str:
    accepted = sorted(set(formats.values()))
    if format is None:
        found = formats.get(path.suffix.lower())
        if found is None:
            raise _label_error(
                f"Cannot tell the format of {str(path)!r} from its suffix: pass --format "
                f"({'|'.join(accepted)}) to {verb}, or name the file "
                f"{', '.join('*' + s for s in formats)}."
            )
        return found
    if format not in accepted:
        raise _label_error(f"--format must be one of {accepted} for {verb}. Got {format!r}.")
    return format


def _file_items(
    path: Path,
    format: str,
    label_column: str | None,
    id_column: str | None,
    console: Console,
) -> tuple[list[dict[str, Any]], list[Any]]:
    from inloop.label.io import read_file_items

    with progress_bar(console, f"Reading {path.name}") as progress:
        task = progress.add_task("read", total=path.stat().st_size)
        return read_file_items(
            path,
            format,
            label_field=label_column,
            id_field=id_column,
            item_source=_IMPORTER,
            on_bytes=lambda n: progress.advance(task, n),
            option_names=("--label-column", "--id-column"),
        )


def _column_index(array: np.ndarray, option: str, value: str | None) -> int | None:
    if value is None:
        return None
    width = array.shape[1]
    try:
        index = int(value)
    except ValueError:
        index = width  # reported below
    if not -width <= index < width:
        raise _label_error(
            f"{option} {value!r} is not a column of the array: a .npy file has numbered columns, "
            f"so pass an index from 0 to {width - 1} (or -1 for the last)."
        )
    return index % width


def _cell(value: float) -> str | None:
    if math.isnan(value):
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _npy_items(
    path: Path, label_column: str | None, id_column: str | None
) -> tuple[list[dict[str, Any]], list[Any]]:
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise _label_error(f"Cannot read {str(path)!r} as a .npy array: {exc}.") from None
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise _label_error(
            f"{str(path)!r} holds a {array.ndim}-D array of {array.dtype}: expected a 2-D array of "
            "numbers, one row of features per item."
        )
    array = array.astype(np.float64)
    label_at = _column_index(array, "--label-column", label_column)
    id_at = _column_index(array, "--id-column", id_column)
    if label_at is not None and label_at == id_at:
        raise _label_error("--label-column and --id-column name the same column: pass two columns.")
    features = [i for i in range(array.shape[1]) if i not in (label_at, id_at)]
    if not features:
        raise _label_error(f"{str(path)!r} has no feature column left besides the label and id.")
    X = array[:, features]
    if not np.isfinite(X).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(X))[:, 0]})
        raise _label_error(
            f"Rows {bad[:10]} of {str(path)!r} hold NaN or infinite features; features must be "
            "finite."
        )
    n = array.shape[0]
    ids = [str(i) for i in range(n)] if id_at is None else [_cell(v) for v in array[:, id_at]]
    labels = [None] * n if label_at is None else [_cell(v) for v in array[:, label_at]]
    items = [
        {"external_id": name, "features": row, "source": _IMPORTER}
        for name, row in zip(ids, X.tolist(), strict=True)
    ]
    return items, list(labels)


def _write_items(
    name: str, items: list[dict[str, Any]], labels: list[Any], console: Console
) -> tuple[int, int]:
    """Insert items and their labels in one transaction; returns (items, labels)."""
    from inloop.label.io import write_import

    with progress_bar(console, f"Importing into {name}") as progress:
        task = progress.add_task("write", total=len(items))
        result = write_import(
            name, items, labels, annotator=_IMPORTER, on_written=lambda n: progress.advance(task, n)
        )
    return len(result.item_ids), result.n_labels


@app.command("import")
def import_command(
    name: str = typer.Argument(..., help="The project to add items to."),
    file: Path = typer.Argument(..., help="A .csv, .jsonl or .npy file of items."),
    format: str | None = typer.Option(
        None, "--format", help="csv, jsonl or npy (default: from the file's suffix)."
    ),
    label_column: str | None = typer.Option(
        None,
        "--label-column",
        help="The column holding known labels (default 'label'; for .npy a column index).",
    ),
    id_column: str | None = typer.Option(
        None,
        "--id-column",
        help="The column holding item ids (default 'id' or 'external_id'; for .npy an index).",
    ),
) -> None:
    """Import items, with the labels they bring, into a project (all or nothing)."""
    with _cli().user_errors():
        kind = _pick_format(file, format, _IMPORT_FORMATS, "inloop label import")
        if not file.is_file():
            raise _label_error(f"No file {str(file)!r} to import: pass the path of a .{kind} file.")
        from inloop.label.projects import get_project

        project = get_project(name)  # the unknown-project error before reading a large file
        console = _cli()._stderr()
        if file.stat().st_size < _LARGE_FILE:
            console = Console(stderr=True, highlight=False, force_terminal=False)
        if kind == "npy":
            items, labels = _npy_items(file, label_column, id_column)
        else:
            items, labels = _file_items(file, kind, label_column, id_column, console)
        n_items, n_labels = _write_items(name, items, labels, console)
        _cli()._stdout().print(
            escape(
                f"Imported {n_items} items and {n_labels} labels into {project.name!r} from {file}."
            )
        )


# --------------------------------------------------------------------------- export


@app.command("export")
def export_command(
    name: str = typer.Argument(..., help="The project whose labels to export."),
    file: Path = typer.Argument(..., help="Where to write: a .csv or .jsonl file."),
    format: str | None = typer.Option(
        None, "--format", help="csv or jsonl (default: from the file's suffix)."
    ),
) -> None:
    """Write every labeled item's current label to a CSV or JSONL file."""
    from inloop.label.io import export_labels

    with _cli().user_errors():
        kind = _pick_format(file, format, _EXPORT_FORMATS, "inloop label export")
        count = export_labels(name, file, format=kind)
        _cli()._stdout().print(escape(f"Exported {count} labels of {name!r} to {file}."))


# --------------------------------------------------------------------------- status


def _projects_table() -> Table | None:
    from inloop.label.annotations import current_labels
    from inloop.label.projects import list_projects
    from inloop.label.queue import queue_stats

    projects = list_projects()
    if not projects:
        return None
    table = Table(title="Labeling projects")
    for column in ("project", "classes", "items", "labeled", "queue depth", "leased"):
        table.add_column(column, justify="left" if column in ("project", "classes") else "right")
    for project in projects:
        stats = queue_stats(project)
        labeled = len(current_labels(project))
        table.add_row(
            escape(project.name),
            escape(", ".join(project.class_names)),
            str(stats.items),
            str(labeled),
            str(stats.labels_needed),
            str(stats.leased),
        )
    return table


def _summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Overview rows from :func:`inloop.label.consensus.agreement_summary`."""
    items = summary.get("items", {})
    kappa = summary.get("fleiss_kappa")
    ds = summary.get("dawid_skene", {})
    reviews = summary.get("reviews", {})
    open_reviews = ", ".join(f"{n} {kind}" for kind, n in reviews.get("open", {}).items())
    return [
        (
            "agreement",
            f"{items.get('unanimous', 0)} unanimous, {items.get('contested', 0)} contested, "
            f"{items.get('single', 0)} labeled by one person (people's labels only)",
        ),
        ("Fleiss' kappa", "n/a" if kappa is None else f"{kappa:.3f}"),
        ("Dawid-Skene differs from majority", str(ds.get("differs_from_majority", 0))),
        ("reviews", f"open: {open_reviews or 'none'}; decided: {reviews.get('decided', 0)}"),
    ]


def _ratio(value: float | None, *, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}"


def _project_tables(name: str) -> list[Table]:
    from inloop.label.annotations import current_labels, list_annotations
    from inloop.label.projects import get_project
    from inloop.label.queue import queue_stats

    project = get_project(name)
    stats = queue_stats(project)
    labeled = len(current_labels(project))
    events = list_annotations(project)
    per_annotator: dict[str, list[int]] = {}
    by_item: dict[int, dict[str, str]] = {}
    for event in events:
        counts = per_annotator.setdefault(event.annotator, [0, 0])
        counts[1 if event.skipped else 0] += 1
        if event.label is not None and event.origin in ("human", "import"):
            by_item.setdefault(event.item_id, {})[event.annotator] = event.label
    from inloop.label.consensus import agreement_summary

    if project.task_type == "single_label":
        summary = agreement_summary(project)
        agreement = _summary_rows(summary)
    else:  # agreement statistics are for single-label projects
        summary, agreement = {}, [("agreement", "n/a (multi-label project)")]
    consensus: dict[str, dict[str, Any]] = {a["name"]: a for a in summary.get("annotators", [])}

    overview = Table(title=f"Project {escape(project.name)}", show_header=False)
    overview.add_column("what")
    overview.add_column("value")
    shown = ", ".join(c.name if c.key is None else f"{c.name} [{c.key}]" for c in project.classes)
    for what, value in [
        ("classes", shown),
        ("overlap", str(project.overlap)),
        ("items", str(stats.items)),
        ("labeled", str(labeled)),
        ("complete", f"{stats.complete} of {stats.items} have all {project.overlap} labels"),
        ("queue depth", f"{stats.labels_needed} labels due"),
        ("leased", str(stats.leased)),
        ("label events", str(len(events))),
        *agreement,
    ]:
        overview.add_row(what, escape(value))
    tables = [overview]
    if per_annotator:
        people = Table(title="Labels per annotator")
        people.add_column("annotator")
        people.add_column("labels", justify="right")
        people.add_column("skips", justify="right")
        people.add_column("agrees with majority", justify="right")
        people.add_column("kappa with others", justify="right")
        for annotator, (count, skips) in sorted(per_annotator.items(), key=lambda kv: -kv[1][0]):
            person = consensus.get(annotator, {})
            people.add_row(
                escape(annotator),
                str(count),
                str(skips),
                _ratio(person.get("agreement_with_consensus"), percent=True),
                _ratio(person.get("mean_kappa_with_others"), percent=False),
            )
        tables.append(people)
    return tables


@app.command("status")
def status_command(
    name: str | None = typer.Argument(None, help="One project in detail (default: all)."),
) -> None:
    """Show every project's progress, or one project's items, labels and agreement.

    The queue depth is how many labels the queue can still hand out.
    """
    with _cli().user_errors():
        console = _cli()._stdout()
        if name is not None:
            for table in _project_tables(name):
                console.print(table)
            return
        listing = _projects_table()
        if listing is None:
            console.print(
                "No labeling projects yet. Create one with: "
                "inloop label create NAME --class a --class b"
            )
            return
        console.print(listing)


# --------------------------------------------------------------------------- snapshot


@app.command("snapshot")
def snapshot_command(
    name: str = typer.Argument(..., help="The project to snapshot."),
    snapshot_name: str | None = typer.Option(
        None, "--name", help="The snapshot's name (default: <project>-<n>)."
    ),
) -> None:
    """Freeze the project's current labels; prints the snapshot's id, size and content hash."""
    from inloop.label.snapshots import snapshot

    with _cli().user_errors():
        taken = snapshot(name, name=snapshot_name)
        _cli()._stdout().print(
            escape(
                f"Snapshot {taken.snapshot_id} {taken.name!r} of {taken.project!r}: "
                f"{taken.n_items} labeled items, content hash {taken.content_hash}"
            ),
            soft_wrap=True,
        )


@app.command("snapshots")
def snapshots_command(
    name: str = typer.Argument(..., help="The project whose snapshots to list."),
) -> None:
    """List the project's snapshots, newest first: the ids flows and registrations refer to."""
    from inloop.label.snapshots import list_snapshots

    with _cli().user_errors():
        snapshots = list_snapshots(name)
    console = _cli()._stdout()
    if not snapshots:
        console.print(
            escape(f"No snapshots of {name!r} yet. Take one: inloop label snapshot {name}")
        )
        return
    table = Table(title=f"Snapshots of {escape(name)}")
    for column in ("id", "name", "taken", "by", "items", "content hash"):
        table.add_column(column, justify="right" if column in ("id", "items") else "left")
    for snap in snapshots:
        table.add_row(
            str(snap["snapshot_id"]),
            escape(snap["name"]),
            _cli()._format_time(snap["created_at"]),
            escape(str(snap["created_by"])),
            str(snap["n_items"]),
            snap["content_hash"][:12],
        )
    console.print(table)


# --------------------------------------------------------------------------- audit


@app.command("audit")
def audit_command(
    name: str = typer.Argument(..., help="The project whose labels to audit."),
    budget: int = typer.Option(100, "--budget", min=1, help="Put at most this many in review."),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds."),
    flow: bool = typer.Option(False, "--flow", help="Run the audit as a flow (scales out)."),
    show: int = typer.Option(20, "--show", min=1, help="Print this many of the queue."),
) -> None:
    """Find likely mislabels by cross-validation and queue them for review."""
    with _cli().user_errors():
        from inloop.label.review import queue_audit

        entries = queue_audit(name, budget=budget, folds=folds, use_flow=flow)
        console = _cli()._stdout()
        if not entries:
            console.print(escape(f"The audit of {name!r} found no suspect labels."))
            return
        table = Table(title=f"Review queue of {escape(name)} (top {min(show, len(entries))})")
        for column in ("item", "given", "suggested", "confidence"):
            table.add_column(column, justify="right" if column == "confidence" else "left")
        for entry in entries[:show]:
            table.add_row(
                escape(entry.item.external_id),
                escape(str(entry.given)),
                escape(str(entry.suggested)),
                "" if entry.confidence is None else f"{entry.confidence:.2f}",
            )
        console.print(table)
        console.print(escape(f"{len(entries)} labels queued for review in {name!r}."))


def _register() -> None:
    from inloop.cli.label_review import decide_command, disagreements_command, reviews_command

    app.command("disagreements")(disagreements_command)
    app.command("reviews")(reviews_command)
    app.command("decide")(decide_command)


_register()
