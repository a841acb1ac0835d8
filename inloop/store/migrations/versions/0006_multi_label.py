"""Labeling: multi-label answers (a set of classes per annotation).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

Adds the nullable JSON column ``label_annotations.labels``: the sorted list of
classes an answer in a ``multi_label`` project gives (``label`` stays NULL
there). Existing single-label events keep ``labels`` NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("label_annotations") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_annotations") as batch:
        batch.drop_column("labels")
