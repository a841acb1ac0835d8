"""Serving: the model registry (models and their versions with lineage).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

Written out column by column rather than from ``inloop.serve.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "serve_models",
        sa.Column("model_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.UniqueConstraint("name", name="uq_serve_models_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "serve_model_versions",
        sa.Column("version_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("artifact_key", sa.String(64), nullable=False),
        sa.Column("classes", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("flavor", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("run_pathspec", sa.String(1024), nullable=True),
        sa.Column("task_pathspec", sa.String(1024), nullable=True),
        sa.Column("artifact_name", sa.String(255), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("registered_by", sa.String(255), nullable=False),
        sa.Column("registered_at", _timestamp(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_serve_model_versions_version"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["serve_models.model_id"],
            name="fk_serve_model_versions_model",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("serve_model_versions")
    op.drop_table("serve_models")
