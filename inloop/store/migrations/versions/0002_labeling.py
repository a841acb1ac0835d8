"""Labeling: projects, items, annotation events, leases and snapshots.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-28

Written out column by column rather than from ``inloop.label.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _project_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name=f"fk_{table}_project",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "label_projects",
        sa.Column("project_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.UniqueConstraint("name", name="uq_label_projects_name"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "label_items",
        sa.Column("item_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("payload_key", sa.String(64), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.UniqueConstraint("project_id", "external_id", name="uq_label_items_external_id"),
        _project_fk("label_items"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_label_items_queue",
        "label_items",
        ["project_id", sa.text("priority DESC"), "item_id"],
    )

    op.create_table(
        "label_annotations",
        sa.Column("annotation_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["label_items.item_id"],
            name="fk_label_annotations_item",
            ondelete="CASCADE",
        ),
        _project_fk("label_annotations"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_label_annotations_item", "label_annotations", ["item_id", "annotator"])
    op.create_index(
        "ix_label_annotations_project", "label_annotations", ["project_id", "annotation_id"]
    )

    op.create_table(
        "label_assignments",
        sa.Column("lease_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("leased_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["label_items.item_id"],
            name="fk_label_assignments_item",
            ondelete="CASCADE",
        ),
        _project_fk("label_assignments"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_label_assignments_item", "label_assignments", ["item_id", "state", "annotator"]
    )
    op.create_index(
        "ix_label_assignments_annotator",
        "label_assignments",
        ["project_id", "annotator", "state"],
    )

    op.create_table(
        "label_snapshots",
        sa.Column("snapshot_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("as_of", _timestamp(), nullable=False),
        sa.Column("last_annotation_id", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("artifact_keys", sa.JSON(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("name", name="uq_label_snapshots_name"),
        _project_fk("label_snapshots"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_label_snapshots_project", "label_snapshots", ["project_id", "snapshot_id"])


def downgrade() -> None:
    op.drop_table("label_snapshots")
    op.drop_table("label_assignments")
    op.drop_table("label_annotations")
    op.drop_table("label_items")
    op.drop_table("label_projects")
