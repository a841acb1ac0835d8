"""Web app: project memberships (who may work in which labeling project).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

Written out column by column rather than from ``inloop.web.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "web_project_members",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "user", name="pk_web_project_members"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["label_projects.project_id"],
            name="fk_web_project_members_project",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user"], ["web_users.name"], name="fk_web_project_members_user", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_web_project_members_user", "web_project_members", ["user"])


def downgrade() -> None:
    op.drop_table("web_project_members")
