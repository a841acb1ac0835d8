"""Items: the things people label, each with a payload, an external id and a priority.

An item is a text, an image (a URL or path, or the artifact key of its bytes)
or a row of features. Small payloads are stored as JSON in the row; payloads
whose JSON passes 64 KiB go to the artifact store and the row keeps their key.
``external_id`` is the id the user knows the item by, unique in its project;
``source`` says where it came from (``import``, ``production``, ``audit``...);
the queue hands out higher ``priority`` first. An optional ``note`` (free text,
at most 1,000 characters) tells labelers why the item is in the queue; the
labeling page shows it beside the item (review routing puts its reason there).

>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> engine = get_engine("sqlite://")
>>> _ = create_project("items-doc", ["spam", "ham"], engine=engine)
>>> ids = add_items("items-doc", [{"external_id": "m1", "text": "Win a prize!"}], engine=engine)
>>> get_item(ids[0], engine=engine).payload
{'text': 'Win a prize!'}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, select, update
from sqlalchemy.exc import IntegrityError

from inloop.errors import quote
from inloop.label.projects import (
    LabelError,
    LabelNotFoundError,
    Project,
    ProjectRef,
    _engine,
    _now,
    check_finite,
    check_storable,
    load_project,
)
from inloop.label.tables import ITEM_KINDS, label_items
from inloop.store import serialize
from inloop.store.db import begin_write

if TYPE_CHECKING:
    from inloop.store.artifacts import ArtifactStore

__all__ = [
    "CountedItem",
    "Item",
    "ItemRef",
    "add_items",
    "add_or_count_items",
    "get_item",
    "get_items",
    "item_payload",
]

#: Payloads whose JSON is larger than this are stored as artifacts.
MAX_INLINE_PAYLOAD_BYTES = 64 * 1024
_MAX_EXTERNAL_ID = 255
_MAX_SOURCE = 32
#: The longest ``note`` an item may carry, in characters.
MAX_NOTE_CHARS = 1000
_KEY = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"external_id", "kind", "payload", "payload_key", "source", "priority", "note"}
_SHORTHANDS = {"text": "text", "features": "features", "image": "image"}
_ACCEPTED = (
    "Each item is a dict with 'external_id' and either 'kind' ('text', 'image' or 'features') "
    "with 'payload' (or 'payload_key', an artifact key), or one of the shorthands "
    "{'text': str}, {'image': url}, {'features': [numbers]}; optional 'source' (default "
    "'import'), 'priority' (a finite number, default 0) and 'note' (text shown to labelers, "
    f"at most {MAX_NOTE_CHARS} characters, default None)."
)
# Rows per INSERT: SQLite caps bound parameters per statement.
_CHUNK = 900


@dataclass(frozen=True)
class Item:
    """One item of a project as stored.

    ``payload`` is ``{"text": ...}``, ``{"url": ...}`` or ``{"features": [...]}``;
    it is None when the payload lives in the artifact store under ``payload_key``
    (read it with :func:`item_payload`). ``n_labels`` counts the annotators who
    labeled it (skips excluded). ``note`` is the text shown to labelers beside
    the item (why it is in the queue), or None. ``count`` is how many times the
    item was added (:func:`add_or_count_items`): an input met again is counted,
    not added twice.
    """

    item_id: int
    project_id: int
    external_id: str
    kind: str
    payload: dict[str, Any] | None
    payload_key: str | None
    source: str
    priority: float
    n_labels: int
    created_at: datetime
    note: str | None = None
    count: int = 1


#: How functions accept an item: its id, the record, or (with a project) its external id.
ItemRef = int | str | Item

_COLUMNS = tuple(label_items.c[name] for name in Item.__dataclass_fields__)


def _item_from_row(row: Row[Any]) -> Item:
    return Item(**row._mapping)


def _normalize_payload(kind: str, payload: object, external_id: str) -> dict[str, Any]:
    where = f"item {quote(external_id)}"
    if kind == "text":
        if isinstance(payload, str):
            return {"text": payload}
        if isinstance(payload, Mapping) and isinstance(payload.get("text"), str):
            return dict(payload)
        raise LabelError(
            f"The payload of text {where} must be a string or a dict with a 'text' string. "
            f"Got {payload!r:.80}."
        )
    if kind == "image":
        if isinstance(payload, str) and payload:
            return {"url": payload}
        if isinstance(payload, Mapping) and isinstance(payload.get("url"), str):
            return dict(payload)
        raise LabelError(
            f"The payload of image {where} must be a URL or path string, or a dict with a "
            f"'url' string (or give 'payload_key', the artifact key of the image). "
            f"Got {payload!r:.80}."
        )
    values = payload.get("features") if isinstance(payload, Mapping) else payload
    try:
        import numpy as np

        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise LabelError(
            f"The payload of features {where} must be a non-empty list of finite numbers "
            f"(or a dict with such a 'features' list). Got {payload!r:.80}."
        )
    extra = dict(payload) if isinstance(payload, Mapping) else {}
    extra["features"] = array.tolist()
    return extra


def _normalize(
    entry: object, index: int, now: datetime, project_id: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The row for one item, and its payload when it must go to the artifact store."""
    if not isinstance(entry, Mapping):
        raise LabelError(f"Item #{index} is {entry!r:.80}, not a dict. {_ACCEPTED}")
    check_storable(dict(entry), f"items[{index}]")
    fields = dict(entry)
    shorthand = [k for k in _SHORTHANDS if k in fields]
    if shorthand:
        mixed = shorthand + [k for k in ("payload", "kind") if k in fields]
        if len(mixed) > 1:
            raise LabelError(f"Item #{index} mixes {sorted(mixed)}: give one payload. {_ACCEPTED}")
        key = shorthand[0]
        fields["kind"] = _SHORTHANDS[key]
        fields["payload"] = fields.pop(key)
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise LabelError(f"Item #{index} has unknown fields {unknown}. {_ACCEPTED}")
    external_id = fields.get("external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if not isinstance(external_id, str) or not external_id or len(external_id) > _MAX_EXTERNAL_ID:
        raise LabelError(
            f"Item #{index} has external_id {quote(external_id)}: expected a non-empty string "
            f"of at most {_MAX_EXTERNAL_ID} characters (an int is turned into its string). "
            f"{_ACCEPTED}"
        )
    kind = fields.get("kind")
    if kind not in ITEM_KINDS:
        raise LabelError(
            f"Item {quote(external_id)} has kind {quote(kind)}: expected one of {list(ITEM_KINDS)}."
        )
    payload_key = fields.get("payload_key")
    raw_payload = fields.get("payload")
    if payload_key is not None:
        if not isinstance(payload_key, str) or not _KEY.fullmatch(payload_key):
            raise LabelError(
                f"Item {quote(external_id)} has payload_key {quote(payload_key)}: expected the "
                "64 hex digits of an artifact key (ArtifactStore.put(...).key)."
            )
        payload = (
            None if raw_payload is None else _normalize_payload(kind, raw_payload, external_id)
        )
    else:
        payload = _normalize_payload(kind, raw_payload, external_id)
    source = fields.get("source", "import")
    if not isinstance(source, str) or not source or len(source) > _MAX_SOURCE:
        raise LabelError(
            f"Item {quote(external_id)} has source {quote(source)}: expected a non-empty string "
            f"of at most {_MAX_SOURCE} characters such as 'import', 'production' or 'audit'."
        )
    priority = check_finite("priority", fields.get("priority", 0.0), f"item {quote(external_id)}")
    note = _check_note(fields.get("note"), external_id)
    large = None
    if payload is not None:
        try:
            size = len(json.dumps(payload, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise LabelError(
                f"The payload of item {quote(external_id)} is not JSON ({exc}). Use str, number, "
                "bool, list and dict values, or store it as an artifact and pass payload_key."
            ) from None
        if size > MAX_INLINE_PAYLOAD_BYTES and payload_key is None:
            large, payload = payload, None
    row = {
        "project_id": project_id,
        "external_id": external_id,
        "kind": kind,
        "payload": payload,
        "payload_key": payload_key,
        "source": source,
        "priority": priority,
        "n_labels": 0,
        "created_at": now,
        "note": note,
    }
    return row, large


def _check_note(note: object, external_id: str) -> str | None:
    if note is None or (isinstance(note, str) and note.strip() and len(note) <= MAX_NOTE_CHARS):
        return note
    if isinstance(note, str) and note.strip():
        got, fix = f"a string of {len(note)} characters", "Shorten it"
    elif isinstance(note, str):
        got, fix = repr(note), "Give some text"
    else:
        got, fix = f"{note!r:.80} ({type(note).__name__})", "Give it as a string"
    raise LabelError(
        f"Item {quote(external_id)} has note {got}: expected None or a non-blank string of at most "
        f"{MAX_NOTE_CHARS} characters (shown to labelers: why the item is in the queue). "
        f"{fix} or leave it out; nothing was added."
    )


def prepare_items(
    project: Project, items: Iterable[Mapping[str, Any]], artifacts: ArtifactStore | None = None
) -> list[dict[str, Any]]:
    """Validate ``items`` and return their rows; large payloads are stored as artifacts.

    Raises :class:`LabelError` naming every repeated external id (in the input
    itself); nothing is written to the database.
    """
    if isinstance(items, str | bytes | Mapping):
        raise LabelError(f"The 'items' parameter must be a list of item dicts. {_ACCEPTED}")
    now = _now()
    rows: list[dict[str, Any]] = []
    large: list[tuple[int, dict[str, Any]]] = []
    for index, entry in enumerate(items):
        row, payload = _normalize(entry, index, now, project.project_id)
        if payload is not None:
            large.append((len(rows), payload))
        rows.append(row)
    seen: set[str] = set()
    repeated: list[str] = []
    for row in rows:
        if row["external_id"] in seen:
            repeated.append(row["external_id"])
        seen.add(row["external_id"])
    if repeated:
        raise LabelError(
            f"These external ids appear more than once in the items: {_sample(repeated)}. "
            "Each item of a project needs its own id; nothing was added."
        )
    if large:
        if artifacts is None:
            from inloop.store.artifacts import open_artifact_store

            artifacts = open_artifact_store()
        for position, payload in large:
            rows[position]["payload_key"] = artifacts.put(payload).key
    return rows


def _sample(values: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in list(dict.fromkeys(values))[:limit])
    more = len(set(values)) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def insert_items(conn: Connection, project: Project, rows: list[dict[str, Any]]) -> list[int]:
    """Insert prepared rows on ``conn`` and return their item ids in order.

    Raises :class:`LabelError` naming the external ids the project already has;
    the caller's transaction then rolls back, so nothing is inserted.
    """
    if not rows:
        return []
    ids = [r["external_id"] for r in rows]
    existing: list[str] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        existing += conn.execute(
            select(label_items.c.external_id).where(
                label_items.c.project_id == project.project_id,
                label_items.c.external_id.in_(chunk),
            )
        ).scalars()
    if existing:
        raise _already(project, existing)
    statement = label_items.insert().returning(label_items.c.item_id, sort_by_parameter_order=True)
    new_ids: list[int] = []
    try:
        for start in range(0, len(rows), _CHUNK):
            new_ids += conn.execute(statement, rows[start : start + _CHUNK]).scalars()
    except IntegrityError:
        # Another writer added some of these ids after our check.
        raise _already(project, ids) from None
    return new_ids


def _already(project: Project, external_ids: Sequence[str]) -> LabelError:
    return LabelError(
        f"Project {project.name!r} already has items with the external ids "
        f"{_sample(sorted(external_ids))}. Use new ids, or leave those items out; nothing "
        "was added."
    )


def add_items(
    project: ProjectRef,
    items: Iterable[Mapping[str, Any]],
    *,
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
) -> list[int]:
    """Add items to a project in one transaction and return their item ids, in order.

    Every item is checked first; a bad item, an external id repeated in
    ``items`` or one the project already has raises :class:`LabelError`
    naming them, and nothing is added. Payloads whose JSON passes 64 KiB are
    stored in ``artifacts`` (default: the configured artifact store).

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("add-doc", ["a", "b"], engine=engine)
    >>> ids = add_items("add-doc", [{"external_id": "r1", "features": [0.5, 1.0]},
    ...                             {"external_id": "r2", "features": [0.1, 0.2], "priority": 3}],
    ...                 engine=engine)
    >>> [item.external_id for item in get_items("add-doc", item_ids=ids, engine=engine)]
    ['r1', 'r2']
    """
    engine = _engine(engine)
    with engine.connect() as conn:
        record = load_project(conn, project)
    rows = prepare_items(record, items, artifacts)
    with begin_write(engine) as conn:
        return insert_items(conn, record, rows)


@dataclass(frozen=True)
class CountedItem:
    """What :func:`add_or_count_items` did with one item: its id, its count now, whether new."""

    item_id: int
    external_id: str
    count: int
    added: bool


def add_or_count_items(
    project: ProjectRef,
    items: Iterable[Mapping[str, Any]],
    *,
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
) -> list[CountedItem]:
    """Add the items the project does not have yet; count again the ones it has.

    Items are matched by external id: an item the project has (or one given
    several times here) is not added again; its ``count`` goes up by one per
    time it is given, and its priority becomes the larger of the two. Use it
    for inputs that may come back, such as a served input routed to review
    again: one item, counted, instead of forty. Returns one
    :class:`CountedItem` per item given, in order (repeats share an id).

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("count-doc", ["a", "b"], engine=engine)
    >>> same = {"external_id": "x", "text": "hi"}
    >>> [c.count for c in add_or_count_items("count-doc", [same, same], engine=engine)]
    [2, 2]
    >>> add_or_count_items("count-doc", [same], engine=engine)[0].count
    3
    """
    engine = _engine(engine)
    given = list(items)
    firsts: dict[str, Mapping[str, Any]] = {}
    times: dict[str, int] = {}
    for entry in given:
        external_id = entry.get("external_id") if isinstance(entry, Mapping) else None
        key = str(external_id)
        firsts.setdefault(key, entry)
        times[key] = times.get(key, 0) + 1
    with engine.connect() as conn:
        record = load_project(conn, project)
    rows = {row["external_id"]: row for row in prepare_items(record, firsts.values(), artifacts)}
    try:
        done = _add_or_count(engine, record, rows, times)
    except LabelError:  # another writer added one of them since we looked: count it now
        done = _add_or_count(engine, record, rows, times)
    return [done[str(entry["external_id"])] for entry in given]


def _add_or_count(
    engine: Engine, project: Project, rows: dict[str, dict[str, Any]], times: dict[str, int]
) -> dict[str, CountedItem]:
    done: dict[str, CountedItem] = {}
    with begin_write(engine) as conn:
        ids = list(rows)
        for start in range(0, len(ids), _CHUNK):
            query = select(
                label_items.c.item_id,
                label_items.c.external_id,
                label_items.c.count.label("times"),  # not .count: a Row is a tuple
                label_items.c.priority,
            ).where(
                label_items.c.project_id == project.project_id,
                label_items.c.external_id.in_(ids[start : start + _CHUNK]),
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # two servers counting one item both count
            for found in conn.execute(query):
                count = int(found.times) + times[found.external_id]
                priority = max(float(found.priority), float(rows[found.external_id]["priority"]))
                conn.execute(
                    update(label_items)
                    .where(label_items.c.item_id == found.item_id)
                    .values(count=count, priority=priority)
                )
                done[found.external_id] = CountedItem(
                    found.item_id, found.external_id, count, added=False
                )
        new = [{**row, "count": times[key]} for key, row in rows.items() if key not in done]
        for row, item_id in zip(new, insert_items(conn, project, new), strict=True):
            key = row["external_id"]
            done[key] = CountedItem(item_id, key, times[key], added=True)
    return done


def load_item(conn: Connection, item: ItemRef, project: ProjectRef | None = None) -> Item:
    """The item ``item`` refers to, read on ``conn`` (for the other label modules).

    A string is an external id and needs ``project``; an int is an item id,
    which must belong to ``project`` when one is given.
    """
    query = select(*_COLUMNS)
    project_record = None if project is None else load_project(conn, project)
    if isinstance(item, Item):
        query = query.where(label_items.c.item_id == item.item_id)
    elif isinstance(item, int) and not isinstance(item, bool):
        query = query.where(label_items.c.item_id == item)
    elif isinstance(item, str):
        if project_record is None:
            raise LabelError(
                f"Item {quote(item)} is an external id: pass the project too, or the item id (int)."
            )
        query = query.where(label_items.c.external_id == item)
    else:
        raise LabelError(
            f"Invalid item reference {quote(item)}: pass an item id (int), an Item, or an external "
            "id (str) with its project."
        )
    if project_record is not None:
        query = query.where(label_items.c.project_id == project_record.project_id)
    row = conn.execute(query).first()
    if row is None:
        where = f" in project {project_record.name!r}" if project_record is not None else ""
        shown = item.item_id if isinstance(item, Item) else item
        raise LabelNotFoundError(
            f"No item {quote(shown)}{where}. List the project's items with get_items(project)."
        )
    return _item_from_row(row)


def get_item(
    item: ItemRef, *, project: ProjectRef | None = None, engine: Engine | None = None
) -> Item:
    """One item by id, or by external id within ``project``.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("get-item-doc", ["a", "b"], engine=engine)
    >>> _ = add_items("get-item-doc", [{"external_id": "x", "text": "hi"}], engine=engine)
    >>> get_item("x", project="get-item-doc", engine=engine).kind
    'text'
    """
    with _engine(engine).connect() as conn:
        return load_item(conn, item, project)


def get_items(
    project: ProjectRef,
    *,
    item_ids: Iterable[int] | None = None,
    engine: Engine | None = None,
) -> list[Item]:
    """The project's items (or those of ``item_ids``) ordered by item id.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("items-list-doc", ["a", "b"], engine=engine)
    >>> _ = add_items("items-list-doc", [{"external_id": "x", "text": "hi"}], engine=engine)
    >>> [i.external_id for i in get_items("items-list-doc", engine=engine)]
    ['x']
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        query = select(*_COLUMNS).where(label_items.c.project_id == record.project_id)
        if item_ids is None:
            rows = conn.execute(query.order_by(label_items.c.item_id)).all()
        else:
            wanted = sorted(set(item_ids))
            rows = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows += conn.execute(query.where(label_items.c.item_id.in_(chunk))).all()
            rows.sort(key=lambda r: r.item_id)
    return [_item_from_row(r) for r in rows]


def item_payload(item: Item, artifacts: ArtifactStore | None = None) -> dict[str, Any]:
    """The item's payload, read from the artifact store when the row only keeps its key.

    >>> from datetime import UTC, datetime
    >>> item = Item(1, 1, "x", "text", {"text": "hi"}, None, "import", 0.0, 0, datetime.now(UTC))
    >>> item_payload(item)
    {'text': 'hi'}
    """
    if item.payload is not None:
        return item.payload
    if item.payload_key is None:  # pragma: no cover - rows always have one or the other
        return {}
    if artifacts is None:
        from inloop.store.artifacts import open_artifact_store

        artifacts = open_artifact_store()
    data = artifacts.get_bytes(item.payload_key)
    if not data.startswith(serialize.MAGIC):
        return {"bytes": data}  # raw bytes stored with put_bytes, such as an image file
    value = serialize.loads(data)
    return dict(value) if isinstance(value, Mapping) else {"value": value}
