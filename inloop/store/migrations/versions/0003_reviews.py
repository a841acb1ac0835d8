"""Review queues: labels an audit suspects and items whose annotators disagree.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Written out column by column rather than from ``inloop.label.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "label_reviews",
        sa.Column("review_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("given_label", sa.String(255), nullable=True),
        sa.Column("suggested_label", sa.String(255), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("decided_at", _timestamp(), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_label", sa.String(255), nullable=True),
        sa.Column("annotation_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["label_items.item_id"],
            name="fk_label_reviews_item",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["label_projects.project_id"],
            name="fk_label_reviews_project",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_label_reviews_item", "label_reviews", ["item_id", "kind", "state"])
    op.create_index(
        "ix_label_reviews_queue",
        "label_reviews",
        ["project_id", "state", sa.text("score DESC"), "review_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_label_reviews_queue", table_name="label_reviews")
    op.drop_index("ix_label_reviews_item", table_name="label_reviews")
    op.drop_table("label_reviews")
