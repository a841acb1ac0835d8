"""Web app: users, API tokens (hashed) and browser sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Written out column by column rather than from ``inloop.web.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user"], ["web_users.name"], name=f"fk_{table}_user", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("user_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("name", name="uq_web_users_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "web_tokens",
        sa.Column("token_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_web_tokens_hash"),
        _user_fk("web_tokens"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_web_tokens_user", "web_tokens", ["user"])
    op.create_table(
        "web_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=False),
        _user_fk("web_sessions"),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user"])


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.drop_table("web_tokens")
    op.drop_table("web_users")
