"""Serving: feedback as append-only events with who, their role and when; labeling items' count.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

- ``serve_feedback_events`` replaces ``serve_feedback``: one row per label of
  one instance of a request, with who gave it, their role (NULL for labels
  given before roles were recorded), when, and where it came from (``api``,
  or ``review``: a label given in the labeling project the request was
  routed to, with that project and the annotation's id). Every row of
  ``serve_feedback`` is copied, one event per labeled instance (role NULL,
  source ``api``), and the old table is dropped.
- ``label_items.count``: how many times an item was added; serving routes an
  input it has routed before to the same item and counts it. Existing items
  count 1.

Written out column by column rather than from the tables modules, so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

_CHUNK = 500


def _old_feedback() -> sa.TableClause:
    return sa.table(
        "serve_feedback",
        sa.column("feedback_id", sa.Integer()),
        sa.column("request_id", sa.String(64)),
        sa.column("labels", sa.JSON(none_as_null=True)),
        sa.column("given_by", sa.String(255)),
        sa.column("given_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    events = op.create_table(
        "serve_feedback_events",
        sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("given_by", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("project", sa.String(255), nullable=True),
        sa.Column("annotation_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["serve_requests.request_id"],
            name="fk_serve_feedback_events_request",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "request_id", "position", "annotation_id", name="uq_serve_feedback_events_annotation"
        ),
        sqlite_autoincrement=True,
    )
    assert events is not None
    _copy_old_feedback(events)
    op.drop_index("ix_serve_feedback_request", table_name="serve_feedback")
    op.drop_table("serve_feedback")
    # A NOT NULL column with a default is added in place on SQLite and PostgreSQL alike.
    op.add_column(
        "label_items", sa.Column("count", sa.Integer(), nullable=False, server_default="1")
    )


def _copy_old_feedback(events: sa.Table) -> None:
    """One event per labeled instance of every old feedback row, oldest first."""
    conn = op.get_bind()
    old = _old_feedback()
    rows = conn.execute(sa.select(old).order_by(old.c.feedback_id)).all()
    new: list[dict[str, Any]] = []
    for row in rows:
        labels = row.labels if isinstance(row.labels, list) else [row.labels]
        for position, label in enumerate(labels):
            if label is None:
                continue
            new.append(
                {
                    "request_id": row.request_id,
                    "position": position,
                    "label": label,
                    "given_by": row.given_by,
                    "role": None,
                    "given_at": row.given_at,
                    "source": "api",
                    "project": None,
                    "annotation_id": None,
                }
            )
    for start in range(0, len(new), _CHUNK):
        conn.execute(events.insert(), new[start : start + _CHUNK])


def downgrade() -> None:
    # Not batch mode (see 0010): DROP COLUMN in place keeps the items' annotations.
    op.drop_column("label_items", "count")
    op.create_table(
        "serve_feedback",
        sa.Column("feedback_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("given_by", sa.String(255), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["serve_requests.request_id"],
            name="fk_serve_feedback_request",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_serve_feedback_request", "serve_feedback", ["request_id"])
    # Each event becomes a one-label row (None for the request's other instances), oldest first.
    conn = op.get_bind()
    events = sa.table(
        "serve_feedback_events",
        sa.column("event_id", sa.Integer()),
        sa.column("request_id", sa.String(64)),
        sa.column("position", sa.Integer()),
        sa.column("label", sa.JSON(none_as_null=True)),
        sa.column("given_by", sa.String(255)),
        sa.column("given_at", sa.DateTime(timezone=True)),
    )
    requests = sa.table(
        "serve_requests", sa.column("request_id", sa.String(64)), sa.column("n_instances")
    )
    rows = conn.execute(
        sa.select(events, requests.c.n_instances)
        .join(requests, requests.c.request_id == events.c.request_id)
        .order_by(events.c.event_id)
    ).all()
    old = _old_feedback()
    out = []
    for row in rows:
        labels: list[Any] = [None] * int(row.n_instances)
        labels[row.position] = row.label
        out.append(
            {
                "request_id": row.request_id,
                "labels": labels,
                "given_by": row.given_by,
                "given_at": row.given_at,
            }
        )
    for start in range(0, len(out), _CHUNK):
        conn.execute(old.insert(), out[start : start + _CHUNK])
    op.drop_table("serve_feedback_events")
