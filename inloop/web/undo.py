"""Undo for the labeling page: hand an annotator's last answered item back to them.

The earlier answer stays in the history; answering again adds a new event
that supersedes it (the latest of a person's events is their label).

>>> from inloop.store import get_engine
>>> from inloop.label import add_items, annotate, create_project
>>> engine = get_engine("sqlite://")
>>> _ = create_project("undo-doc", ["yes", "no"], engine=engine)
>>> [item] = add_items("undo-doc", [{"external_id": "a", "text": "1"}], engine=engine)
>>> _ = annotate("undo-doc", item, "ana", "yes", engine=engine)
>>> undo_last("undo-doc", "ana", engine=engine).item.external_id
'a'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, select

from inloop.label.items import _COLUMNS as _ITEM_COLUMNS
from inloop.label.items import Item
from inloop.label.projects import ProjectRef, load_project
from inloop.label.queue import Lease
from inloop.label.tables import label_annotations, label_assignments, label_items
from inloop.store.db import begin_write, get_engine

__all__ = ["undo_last"]


def undo_last(project: ProjectRef, annotator: str, *, engine: Engine | None = None) -> Lease | None:
    """A lease on the item ``annotator`` answered last in ``project``, or None if none.

    When they already hold a live lease on that item (an undo not yet answered),
    that lease is returned instead of a second one.
    """
    engine = engine if engine is not None else get_engine()
    now = datetime.now(UTC)
    with begin_write(engine) as conn:
        record = load_project(conn, project)
        item_id = conn.execute(
            select(label_annotations.c.item_id)
            .where(
                label_annotations.c.project_id == record.project_id,
                label_annotations.c.annotator == annotator,
                label_annotations.c.origin == "human",
            )
            .order_by(label_annotations.c.annotation_id.desc())
            .limit(1)
        ).scalar()
        if item_id is None:
            return None
        if conn.dialect.name == "postgresql":
            # The queue and answers decide on an item under its row lock.
            conn.execute(
                select(label_items.c.item_id)
                .where(label_items.c.item_id == item_id)
                .with_for_update()
            )
        held = conn.execute(
            select(
                label_assignments.c.lease_id,
                label_assignments.c.leased_at,
                label_assignments.c.expires_at,
            ).where(
                and_(
                    label_assignments.c.item_id == item_id,
                    label_assignments.c.annotator == annotator,
                    label_assignments.c.state == "active",
                    label_assignments.c.expires_at > now,
                )
            )
        ).first()
        if held is not None:
            lease_id, leased_at, expires = held.lease_id, held.leased_at, held.expires_at
        else:
            leased_at, expires = now, now + timedelta(seconds=record.lease_seconds)
            lease_id = conn.execute(
                label_assignments.insert().returning(label_assignments.c.lease_id),
                {
                    "item_id": item_id,
                    "project_id": record.project_id,
                    "annotator": annotator,
                    "state": "active",
                    "leased_at": leased_at,
                    "expires_at": expires,
                    "finished_at": None,
                },
            ).scalar_one()
        row = conn.execute(select(*_ITEM_COLUMNS).where(label_items.c.item_id == item_id)).one()
    return Lease(
        lease_id=int(lease_id),
        item_id=int(item_id),
        project_id=record.project_id,
        annotator=annotator,
        leased_at=leased_at,
        expires_at=expires,
        item=Item(*row),
    )
