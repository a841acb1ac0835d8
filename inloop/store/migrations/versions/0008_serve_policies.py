"""Serving: services and their append-only, versioned policies.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Written out column by column rather than from ``inloop.serve.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "serve_services",
        sa.Column("service_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.UniqueConstraint("name", name="uq_serve_services_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "serve_policies",
        sa.Column("policy_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("previous_revision", sa.Integer(), nullable=True),
        sa.Column("restored_revision", sa.Integer(), nullable=True),
        sa.UniqueConstraint("service_id", "revision", name="uq_serve_policies_revision"),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["serve_services.service_id"],
            name="fk_serve_policies_service",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("serve_policies")
    op.drop_table("serve_services")
