"""Dataset snapshots: a project's labels as of a moment, frozen, hashed and loadable.

:func:`snapshot` derives every labeled item's current label, stores the
features ``X``, the labels ``y`` and the item ids in the artifact store and
records a row with the SHA-256 of the data's canonical bytes: the same items
with the same labels always give the same ``content_hash``, whoever labeled
them and whenever. :func:`load_snapshot` returns it again by id or name.

Called inside a running flow step, both record the snapshot in the run as the
tag ``snapshot:<id>``, so a model can be traced back to the labels it saw::

    from inloop import FlowSpec, step
    from inloop.label.snapshots import snapshot

    class Train(FlowSpec):
        @step
        def start(self):
            X, y, self.snapshot_id = snapshot("digits")
            ...

>>> import numpy as np
>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.label.projects import create_project
>>> from inloop.label.io import import_items
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://snapshots-doc")
>>> _ = create_project("snap-doc", ["a", "b"], engine=engine)
>>> _ = import_items("snap-doc", np.eye(3), labels=["a", None, "b"], engine=engine)
>>> X, y, snapshot_id = snapshot("snap-doc", engine=engine, artifacts=store)
>>> X.shape, y.tolist()
((2, 3), ['a', 'b'])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, func, select

from inloop.label.annotations import current_query, derive_current
from inloop.label.items import _COLUMNS as _ITEM_COLUMNS
from inloop.label.items import Item, item_payload
from inloop.label.projects import (
    LabelError,
    LabelNotFoundError,
    Project,
    ProjectRef,
    _engine,
    _now,
    load_project,
)
from inloop.label.tables import label_annotations, label_items, label_projects, label_snapshots
from inloop.store.db import begin_write

if TYPE_CHECKING:
    from inloop.store.artifacts import ArtifactStore

__all__ = ["Snapshot", "list_snapshots", "load_snapshot", "snapshot"]

#: Version of the canonical byte layout the content hash is taken over.
_CANONICAL_FORMAT = 1
_IN_CHUNK = 900


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A project's labeled items as of ``as_of``: features ``X``, labels ``y`` and their ids.

    ``X`` is a float array (one row per item) for feature items, and an object
    array of texts (or of image URLs/keys) otherwise; ``y`` holds class names.
    In a multi-label project ``y`` is a multi-hot int matrix of shape
    ``(n_items, len(classes))``: column ``j`` is 1 when ``classes[j]`` applies.
    Rows are in item id order. Unpacks as ``X, y, snapshot_id = snapshot(...)``.
    """

    snapshot_id: int
    name: str
    project: str
    X: np.ndarray
    y: np.ndarray
    item_ids: np.ndarray
    external_ids: tuple[str, ...]
    classes: tuple[str, ...]
    content_hash: str
    created_at: datetime
    as_of: datetime
    created_by: str

    @property
    def n_items(self) -> int:
        """How many labeled items the snapshot holds."""
        return len(self.y)

    def __iter__(self) -> Iterator[Any]:
        yield self.X
        yield self.y
        yield self.snapshot_id

    def __repr__(self) -> str:
        return (
            f"Snapshot(id={self.snapshot_id}, name={self.name!r}, project={self.project!r}, "
            f"n_items={self.n_items}, content_hash={self.content_hash[:12]!r})"
        )


def _build_X(project: Project, items: list[Item], artifacts: ArtifactStore | None) -> np.ndarray:
    kinds = sorted({i.kind for i in items})
    if not items:
        return np.empty((0, 0))
    if len(kinds) > 1:
        raise LabelError(
            f"Project {project.name!r} has labeled items of several kinds {kinds}: a snapshot "
            "holds one kind. Put each kind in its own project."
        )
    payloads = [item_payload(i, artifacts) for i in items]
    if kinds[0] == "features":
        widths = {len(p["features"]) for p in payloads}
        if len(widths) > 1:
            raise LabelError(
                f"The feature rows of project {project.name!r} have different lengths "
                f"{sorted(widths)}: a snapshot needs one length."
            )
        return np.asarray([p["features"] for p in payloads], dtype=np.float64)
    field = "text" if kinds[0] == "text" else "url"
    values = np.empty(len(items), dtype=object)
    for position, (item, payload) in enumerate(zip(items, payloads, strict=True)):
        values[position] = payload.get(field, item.payload_key)
    return values


def _multi_hot(classes: tuple[str, ...], label_sets: list[list[str]]) -> np.ndarray:
    column = {name: j for j, name in enumerate(classes)}
    y = np.zeros((len(label_sets), len(classes)), dtype=np.int64)
    for row, names in enumerate(label_sets):
        for name in names:
            y[row, column[name]] = 1
    return y


def content_hash(
    classes: tuple[str, ...], external_ids: list[str], labels: list[Any], X: np.ndarray
) -> str:
    """SHA-256 of a snapshot's canonical bytes: ids, labels, classes and the features.

    The header is JSON with sorted keys; float features follow it as
    little-endian float64 in row order, texts are part of the header. Neither
    the project's name nor item ids (which differ between databases) enter it.
    A multi-label snapshot's labels are the sorted class lists.
    """
    header: dict[str, Any] = {
        "format": _CANONICAL_FORMAT,
        "classes": list(classes),
        "external_ids": external_ids,
        "labels": labels,
        "shape": list(X.shape),
    }
    numeric = X.dtype != object
    if not numeric:
        header["values"] = [str(v) for v in X.tolist()]
    digest = hashlib.sha256(
        json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\0"
    )
    if numeric:
        digest.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    return digest.hexdigest()


def _read_items(conn: Connection, ids: list[int]) -> list[Item]:
    found: dict[int, Item] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        for row in conn.execute(select(*_ITEM_COLUMNS).where(label_items.c.item_id.in_(chunk))):
            found[row.item_id] = Item(*row)
    return [found[i] for i in ids]


def _record_in_run(snapshot_id: int, engine: Engine) -> None:
    from inloop.flow.current import current

    if not current.is_running_flow or current.run_id is None:
        return
    from inloop.store.runs import RunStore

    # A system tag: the lineage record must not be removable by users.
    RunStore(engine).add_tags(int(current.run_id), [f"snapshot:{snapshot_id}"], system=True)


def snapshot(
    project: ProjectRef,
    *,
    name: str | None = None,
    as_of: datetime | None = None,
    created_by: str | None = None,
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
) -> Snapshot:
    """Freeze the project's current labels (as of now, or ``as_of``) and return the snapshot.

    ``name`` must be unique (default ``<project>-<n>``); the arrays go to
    ``artifacts`` (default: the configured artifact store). Items without a
    label are left out. Inside a running flow the run gets the tag
    ``snapshot:<id>``.

    >>> import numpy as np
    >>> from inloop.store import get_engine, open_artifact_store
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.io import import_items
    >>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://snapshot-fn-doc")
    >>> _ = create_project("snap-fn-doc", ["a", "b"], engine=engine)
    >>> _ = import_items("snap-fn-doc", np.eye(2), labels=["a", "b"], engine=engine)
    >>> first = snapshot("snap-fn-doc", engine=engine, artifacts=store)
    >>> again = snapshot("snap-fn-doc", engine=engine, artifacts=store)
    >>> (first.name, again.name, first.content_hash == again.content_hash)
    ('snap-fn-doc-1', 'snap-fn-doc-2', True)
    """
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 255):
        raise LabelError(
            f"The 'name' parameter of snapshot must be a non-empty string of at most 255 "
            f"characters, or None for '<project>-<n>'. Got {name!r}."
        )
    engine = _engine(engine)
    taken_at = _now()
    cutoff = taken_at if as_of is None else as_of
    with engine.connect() as conn, conn.begin():
        record = load_project(conn, project)
        # Bound the events by id first: on PostgreSQL each statement sees its own moment.
        last_id = conn.execute(
            select(func.max(label_annotations.c.annotation_id)).where(
                label_annotations.c.project_id == record.project_id,
                label_annotations.c.created_at <= cutoff,
            )
        ).scalar()
        rows = (
            []
            if last_id is None
            else conn.execute(current_query(record, as_of=cutoff, up_to_id=last_id)).all()
        )
        labels = derive_current(rows)
        ids = sorted(labels)
        items = _read_items(conn, ids)
    if artifacts is None:
        from inloop.store.artifacts import open_artifact_store

        artifacts = open_artifact_store()
    X = _build_X(record, items, artifacts)
    external_ids = [labels[i].external_id for i in ids]
    label_list: list[Any]
    if record.task_type == "multi_label":
        label_list = [list(labels[i].labels or ()) for i in ids]
        y = _multi_hot(record.class_names, label_list)
    else:
        label_list = [labels[i].label for i in ids]
        y = np.asarray(label_list, dtype=str) if label_list else np.empty(0, dtype=str)
    item_ids = np.asarray(ids, dtype=np.int64)
    digest = content_hash(record.class_names, external_ids, label_list, X)
    keys = {
        "X": artifacts.put(X).key,
        "y": artifacts.put(y).key,
        "ids": artifacts.put({"item_ids": item_ids, "external_ids": external_ids}).key,
    }
    if created_by is None:
        from inloop.flow.user import get_username

        created_by = get_username()
    with begin_write(engine) as conn:
        load_project(conn, record, lock=True)  # one snapshot name at a time per project
        final_name = name if name is not None else _default_name(conn, record)
        clash = conn.execute(
            select(label_snapshots.c.snapshot_id).where(label_snapshots.c.name == final_name)
        ).first()
        if clash is not None:
            raise LabelError(
                f"A snapshot named {final_name!r} already exists (id {clash[0]}). Choose another "
                "name, or leave name=None for '<project>-<n>'."
            )
        result = conn.execute(
            label_snapshots.insert(),
            {
                "project_id": record.project_id,
                "name": final_name,
                "created_at": taken_at,
                "as_of": cutoff,
                "last_annotation_id": last_id,
                "content_hash": digest,
                "artifact_keys": keys,
                "n_items": len(ids),
                "created_by": created_by,
            },
        )
        pk = result.inserted_primary_key
        snapshot_id = int(pk[0]) if pk is not None else 0
    _record_in_run(snapshot_id, engine)
    return Snapshot(
        snapshot_id=snapshot_id,
        name=final_name,
        project=record.name,
        X=X,
        y=y,
        item_ids=item_ids,
        external_ids=tuple(external_ids),
        classes=record.class_names,
        content_hash=digest,
        created_at=taken_at,
        as_of=cutoff,
        created_by=created_by,
    )


def _default_name(conn: Connection, project: Project) -> str:
    count = conn.execute(
        select(func.count())
        .select_from(label_snapshots)
        .where(label_snapshots.c.project_id == project.project_id)
    ).scalar_one()
    number = int(count) + 1
    while True:
        candidate = f"{project.name}-{number}"
        taken = conn.execute(
            select(label_snapshots.c.snapshot_id).where(label_snapshots.c.name == candidate)
        ).first()
        if taken is None:
            return candidate
        number += 1


def load_snapshot(
    snapshot_ref: int | str,
    *,
    artifacts: ArtifactStore | None = None,
    engine: Engine | None = None,
) -> Snapshot:
    """A stored snapshot by id (int) or name (str), with its arrays read back.

    Inside a running flow the run gets the tag ``snapshot:<id>``.

    >>> import numpy as np
    >>> from inloop.store import get_engine, open_artifact_store
    >>> from inloop.label.projects import create_project
    >>> from inloop.label.io import import_items
    >>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://load-doc")
    >>> _ = create_project("load-doc", ["a", "b"], engine=engine)
    >>> _ = import_items("load-doc", np.eye(2), labels=["a", "b"], engine=engine)
    >>> taken = snapshot("load-doc", name="load-doc-v1", engine=engine, artifacts=store)
    >>> loaded = load_snapshot("load-doc-v1", engine=engine, artifacts=store)
    >>> loaded.content_hash == taken.content_hash
    True
    """
    if isinstance(snapshot_ref, bool) or not isinstance(snapshot_ref, int | str):
        raise LabelError(
            f"Pass a snapshot id (int) or name (str) to load_snapshot. Got {snapshot_ref!r}."
        )
    engine = _engine(engine)
    column = (
        label_snapshots.c.snapshot_id if isinstance(snapshot_ref, int) else label_snapshots.c.name
    )
    with engine.connect() as conn:
        row = conn.execute(
            select(label_snapshots, label_projects.c.name.label("project_name"))
            .join(label_projects, label_projects.c.project_id == label_snapshots.c.project_id)
            .where(column == snapshot_ref)
        ).first()
        if row is None:
            raise LabelNotFoundError(
                f"No snapshot {snapshot_ref!r}. List them with list_snapshots(project)."
            )
        record = load_project(conn, row.project_id)
    if artifacts is None:
        from inloop.store.artifacts import open_artifact_store

        artifacts = open_artifact_store()
    keys = row.artifact_keys
    ids = artifacts.get(keys["ids"])
    if not isinstance(ids, dict):  # pragma: no cover - written by snapshot() only
        raise LabelError(f"The ids of snapshot {row.snapshot_id} are damaged.")
    X = np.asarray(artifacts.get(keys["X"]))
    y = np.asarray(artifacts.get(keys["y"]))
    _record_in_run(row.snapshot_id, engine)
    return Snapshot(
        snapshot_id=row.snapshot_id,
        name=row.name,
        project=row.project_name,
        X=X,
        y=y,
        item_ids=np.asarray(ids["item_ids"]),
        external_ids=tuple(ids["external_ids"]),
        classes=record.class_names,
        content_hash=row.content_hash,
        created_at=row.created_at,
        as_of=row.as_of,
        created_by=row.created_by,
    )


def list_snapshots(project: ProjectRef, *, engine: Engine | None = None) -> list[dict[str, Any]]:
    """The project's snapshots, newest first, as dicts (id, name, when, hash, size) without data.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("list-snap-doc", ["a", "b"], engine=engine)
    >>> list_snapshots("list-snap-doc", engine=engine)
    []
    """
    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        rows = conn.execute(
            select(
                label_snapshots.c.snapshot_id,
                label_snapshots.c.name,
                label_snapshots.c.created_at,
                label_snapshots.c.as_of,
                label_snapshots.c.content_hash,
                label_snapshots.c.n_items,
                label_snapshots.c.created_by,
            )
            .where(label_snapshots.c.project_id == record.project_id)
            .order_by(label_snapshots.c.snapshot_id.desc())
        ).all()
    return [dict(r._mapping) for r in rows]
