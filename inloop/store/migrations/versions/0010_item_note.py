"""Labeling: a note on items, shown to labelers (why the item is in the queue).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21

Adds the nullable text column ``label_items.note``. Review routing of served
requests writes its reason there; existing items keep ``note`` NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A nullable column is added in place on SQLite and PostgreSQL alike: no table copy.
    op.add_column("label_items", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite it copies the table and drops the old one, and with
    # foreign keys on that drop deletes every annotation, lease and review of the items.
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+) removes the column in place.
    op.drop_column("label_items", "note")
