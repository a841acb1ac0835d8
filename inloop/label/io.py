"""Import items (and their known labels) from files or arrays; export the current labels.

:func:`import_items` reads a CSV or JSONL file, or takes a numpy array of
feature rows, adds the items and records the labels that came with them as
``origin="import"`` events, all in one transaction: a bad row changes nothing.
:func:`export_labels` writes each labeled item's current label to CSV or JSONL.

File rows are dicts (CSV columns or JSON objects):

- ``external_id`` or ``id``: the item's id (default: the row number);
- ``text``, ``image`` (or ``url``) or ``features``: the payload; a CSV row with
  none of these uses its other columns, as numbers, as the features;
- ``label`` (optional; empty means unlabeled), ``priority`` and ``note``
  (optional; text shown to labelers beside the item, empty means none).

In a ``multi_label`` project a label is a set of classes: a JSON list in
JSONL (``[]``: none apply), classes joined with ``|`` in CSV (``"a|b"``; an
empty cell is unlabeled). Exports write them the same way.

>>> import numpy as np
>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> engine = get_engine("sqlite://")
>>> _ = create_project("io-doc", ["0", "1"], engine=engine)
>>> result = import_items("io-doc", np.eye(3), labels=[0, None, 1], engine=engine)
>>> (len(result.item_ids), result.n_labels)
(3, 2)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Engine

from inloop.label.annotations import current_labels, event_row, insert_events
from inloop.label.items import insert_items, prepare_items
from inloop.label.projects import LabelError, ProjectRef, _engine, _now, load_project
from inloop.store.db import begin_write

if TYPE_CHECKING:
    import numpy as np

    from inloop.store.artifacts import ArtifactStore

__all__ = ["ImportResult", "export_labels", "import_items", "read_file_items", "write_import"]

_CHUNK = 1000  # items per INSERT, so a progress display can follow a large import

_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_ID_FIELDS = ("external_id", "id")
_PAYLOAD_FIELDS = ("text", "image", "url", "features", "payload")
_EXPORT_FIELDS = ("external_id", "item_id", "label", "origin", "annotator", "labeled_at")


@dataclass(frozen=True)
class ImportResult:
    """What an import added: the new item ids in input order, and how many came labeled."""

    item_ids: list[int]
    n_labels: int


def _format(path: Path, format: str | None, verb: str) -> str:
    if format is None:
        found = _FORMATS.get(path.suffix.lower())
        if found is None:
            raise LabelError(
                f"Cannot tell the format of {str(path)!r} from its suffix: pass format='csv' or "
                f"format='jsonl' to {verb}, or name the file *.csv, *.jsonl or *.ndjson."
            )
        return found
    if format not in ("csv", "jsonl"):
        raise LabelError(
            f"The 'format' parameter of {verb} must be 'csv' or 'jsonl'. Got {format!r}."
        )
    return format


def _read_rows(
    path: Path, format: str, on_bytes: Callable[[int], None] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of a CSV or JSONL file; ``on_bytes`` hears how many bytes each line took."""

    def lines(raw: IO[bytes]) -> Iterator[str]:
        for line in raw:
            if on_bytes is not None:
                on_bytes(len(line))
            yield line.decode("utf-8")

    try:
        with path.open("rb") as raw:
            if format == "csv":
                yield from csv.DictReader(lines(raw))
                return
            for number, line in enumerate(lines(raw), start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabelError(
                        f"Line {number} of {str(path)!r} is not JSON: {exc}."
                    ) from None
                if not isinstance(value, dict):
                    raise LabelError(
                        f"Line {number} of {str(path)!r} is {value!r:.60}: expected a JSON object "
                        'such as {"id": "a1", "text": "...", "label": "spam"}.'
                    )
                yield value
    except OSError as exc:
        raise LabelError(f"Cannot read {str(path)!r} for import_items: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise LabelError(f"{str(path)!r} is not UTF-8 text: {exc}.") from None


def _rename(row: dict[str, Any], column: str | None, target: str) -> None:
    if column is None or column == target:
        return
    value = row.pop(column, None)
    if target in row and value is not None:
        raise LabelError(
            f"The rows have both a {target!r} field and the column {column!r} given for it: "
            f"rename or drop one of them."
        )
    if value is not None:
        row[target] = value


def read_file_items(
    path: Path,
    format: str,
    *,
    label_field: str | None = None,
    id_field: str | None = None,
    item_source: str = "import",
    on_bytes: Callable[[int], None] | None = None,
    option_names: tuple[str, str] = ("label_field", "id_field"),
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The items of a CSV or JSONL file and the label of each (None: unlabeled).

    ``label_field`` and ``id_field`` name the columns holding labels and ids when
    they are not ``label`` and ``id``/``external_id``; errors call them by
    ``option_names`` (a command line passes its own option names).
    """
    items: list[dict[str, Any]] = []
    labels: list[Any] = []
    seen: set[str] = set()
    for index, row in enumerate(_read_rows(path, format, on_bytes)):
        seen.update(row)
        _rename(row, label_field, "label")
        _rename(row, id_field, "external_id")
        item, label = _item_from_file_row(row, index, repr(str(path)))
        item.setdefault("source", item_source)
        items.append(item)
        labels.append(label)
    for option, column in zip(option_names, (label_field, id_field), strict=True):
        if column is not None and items and column not in seen:
            raise LabelError(
                f"{option} {column!r} is not a column of {str(path)!r}. Its columns: "
                f"{sorted(seen)}."
            )
    return items, labels


def _item_from_file_row(row: dict[str, Any], index: int, where: str) -> tuple[dict[str, Any], Any]:
    """The item dict and the label (or None) of one file row."""
    fields = dict(row)
    external_id: Any = str(index)
    for name in _ID_FIELDS:
        if name in fields:
            external_id = fields.pop(name)
            break
    label = fields.pop("label", None)
    if label == "":
        label = None
    item: dict[str, Any] = {"external_id": external_id}
    if "priority" in fields:
        priority = fields.pop("priority")
        if priority not in ("", None):
            try:
                item["priority"] = float(priority)
            except (TypeError, ValueError):
                raise LabelError(
                    f"Row {index} of {where} has priority {priority!r}: expected a number."
                ) from None
    if "source" in fields:
        item["source"] = fields.pop("source")
    if "note" in fields:
        note = fields.pop("note")
        if note not in ("", None):
            item["note"] = note
    present = [name for name in _PAYLOAD_FIELDS if name in fields]
    if present == ["payload"]:
        item["payload"] = fields.pop("payload")
        item["kind"] = fields.pop("kind", None)
    elif len(present) == 1:
        name = present[0]
        value = fields.pop(name)
        if name == "features" and isinstance(value, str):  # a CSV cell holding a JSON list
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        item["image" if name == "url" else name] = value
    elif not present and fields:
        values = []
        for column, cell in fields.items():
            try:
                values.append(float(cell))
            except (TypeError, ValueError):
                raise LabelError(
                    f"Row {index} of {where} has no 'text', 'image' or 'features' field, so its "
                    f"columns are read as features, but column {column!r} holds {cell!r}, not a "
                    "number."
                ) from None
        fields.clear()
        item["features"] = values
    else:
        raise LabelError(
            f"Row {index} of {where} needs exactly one payload field among "
            f"{list(_PAYLOAD_FIELDS)} (or only numeric feature columns). Got fields "
            f"{sorted(row)}."
        )
    fields.pop("kind", None)
    if fields:
        raise LabelError(
            f"Row {index} of {where} has unexpected fields {sorted(fields)}. Accepted: id or "
            f"external_id, one of {list(_PAYLOAD_FIELDS)}, label, priority, source, note."
        )
    return item, label


def import_items(
    project: ProjectRef,
    source: str | os.PathLike[str] | np.ndarray,
    *,
    labels: Sequence[Any] | np.ndarray | None = None,
    ids: Sequence[str] | None = None,
    format: str | None = None,
    annotator: str = "import",
    item_source: str = "import",
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
) -> ImportResult:
    """Add the items of a CSV/JSONL file or of a 2-D feature array, with any labels they bring.

    For an array, row ``i`` becomes a features item with external id ``ids[i]``
    (default ``str(i)``) and label ``labels[i]`` (None: unlabeled). Labels
    become ``origin="import"`` events by ``annotator``; each counts as one
    annotator's label toward the project's overlap, so fully labeled items do
    not enter the queue. Either everything is imported or, on a bad row or a
    repeated id, nothing.

    >>> import numpy as np
    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("import-doc", ["a", "b"], engine=engine)
    >>> len(import_items("import-doc", np.zeros((2, 4)), ids=["u", "v"], engine=engine).item_ids)
    2
    """
    items: list[dict[str, Any]]
    found_labels: list[Any]
    if isinstance(source, str | os.PathLike):
        if labels is not None or ids is not None:
            raise LabelError(
                "The 'labels' and 'ids' parameters of import_items are for arrays; a file "
                "brings its own 'label' and 'id' columns."
            )
        path = Path(source)
        items, found_labels = read_file_items(
            path, _format(path, format, "import_items"), item_source=item_source
        )
    else:
        items, found_labels = _array_items(source, labels, ids, item_source)
    return write_import(
        project, items, found_labels, annotator=annotator, artifacts=artifacts, engine=engine
    )


def write_import(
    project: ProjectRef,
    items: list[dict[str, Any]],
    labels: Sequence[Any],
    *,
    annotator: str = "import",
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
    on_written: Callable[[int], None] | None = None,
) -> ImportResult:
    """Insert items and their labels (``origin="import"``) in one transaction.

    Every item and label is checked before anything is written. In a multi-label
    project a label string ``"a|b"`` means the set ``{a, b}``. ``on_written`` hears
    how many items each written chunk held.
    """
    engine = _engine(engine)
    with engine.connect() as conn:
        record = load_project(conn, project)
    if record.task_type == "multi_label":
        labels = [
            [p.strip() for p in label.split("|") if p.strip()] if isinstance(label, str) else label
            for label in labels
        ]
    rows = prepare_items(record, items, artifacts)
    now = _now()
    # Check every label before writing anything (item ids are filled in below).
    events = [
        (position, event_row(record, 0, annotator, label, origin="import", now=now))
        for position, label in enumerate(labels)
        if label is not None and label != "" and not _is_nan(label)
    ]
    with begin_write(engine) as conn:
        item_ids: list[int] = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            item_ids += insert_items(conn, record, chunk)
            if on_written is not None:
                on_written(len(chunk))
        event_rows = [dict(row, item_id=item_ids[position]) for position, row in events]
        insert_events(conn, event_rows)
    return ImportResult(item_ids=item_ids, n_labels=len(event_rows))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _array_items(
    source: Any, labels: Any, ids: Sequence[str] | None, item_source: str
) -> tuple[list[dict[str, Any]], list[Any]]:
    import numpy as np

    try:
        X = np.asarray(source, dtype=float)
    except (TypeError, ValueError):
        raise LabelError(
            f"import_items takes a CSV/JSONL path or a 2-D array of numbers. Got "
            f"{type(source).__name__}."
        ) from None
    if X.ndim != 2 or X.shape[1] == 0:
        raise LabelError(
            f"The array given to import_items must be 2-D (one row of features per item). "
            f"Got shape {X.shape}."
        )
    if not np.isfinite(X).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(X))[:, 0]})
        raise LabelError(
            f"Rows {bad[:10]} of the array hold NaN or infinite values; features must be finite."
        )
    n = X.shape[0]
    if ids is None:
        names = [str(i) for i in range(n)]
    else:
        names = [str(i) for i in ids]
        if len(names) != n:
            raise LabelError(f"'ids' has {len(names)} entries but the array has {n} rows.")
    if labels is None:
        found: list[Any] = [None] * n
    else:
        found = list(labels)
        if len(found) != n:
            raise LabelError(f"'labels' has {len(found)} entries but the array has {n} rows.")
    items = [
        {"external_id": name, "features": row, "source": item_source}
        for name, row in zip(names, X.tolist(), strict=True)
    ]
    return items, found


def export_labels(
    project: ProjectRef,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    engine: Engine | None = None,
) -> int:
    """Write every labeled item's current label to a CSV or JSONL file; returns the row count.

    Columns: ``external_id``, ``item_id``, ``label``, ``origin``, ``annotator``,
    ``labeled_at`` (ISO 8601, UTC). A multi-label project's ``label`` is the list
    of classes in JSONL and the classes joined with ``|`` in CSV. The file is
    written under a temporary name and renamed, so a reader never sees half of it.

    >>> import tempfile, numpy as np
    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("export-doc", ["a", "b"], engine=engine)
    >>> _ = import_items("export-doc", np.eye(2), labels=["a", "b"], engine=engine)
    >>> export_labels("export-doc", tempfile.mkdtemp() + "/labels.csv", engine=engine)
    2
    """
    target = Path(path)
    kind = _format(target, format, "export_labels")
    labels = current_labels(project, engine=engine)
    records: list[dict[str, Any]] = [
        {
            "external_id": c.external_id,
            "item_id": c.item_id,
            "label": c.label if c.labels is None else list(c.labels),
            "origin": c.origin,
            "annotator": c.annotator,
            "labeled_at": c.created_at.isoformat(),
        }
        for c in labels.values()
    ]
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            if kind == "csv":
                writer = csv.DictWriter(handle, fieldnames=_EXPORT_FIELDS)
                writer.writeheader()
                writer.writerows(
                    dict(r, label="|".join(r["label"])) if isinstance(r["label"], list) else r
                    for r in records
                )
            else:
                for record in records:
                    handle.write(json.dumps(record) + "\n")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise LabelError(f"Cannot write the labels to {str(target)!r}: {exc}.") from None
    return len(records)
