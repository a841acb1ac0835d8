"""Access: disabled users, named tokens, sessions tied to their token, user events.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28

- ``web_users.disabled_at`` (nullable): a disabled user can no longer sign in.
- ``web_tokens.name``: existing tokens are named ``token-<id>``; a name is unique
  among a user's live (not revoked) tokens.
- ``web_sessions.token_id``: the token a session was opened with, so revoking
  the token ends the session. Sessions opened before this revision do not
  know their token, so they end here: their users sign in again.
- ``web_user_events``: who created, disabled, enabled or changed whom, and
  which tokens they made and revoked, when.

Written out column by column rather than from ``inloop.web.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

_LIVE = sa.text("revoked_at IS NULL")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _sessions(with_token: bool) -> None:
    token = [sa.Column("token_id", sa.Integer(), nullable=False)] if with_token else []
    token_fk = (
        [
            sa.ForeignKeyConstraint(
                ["token_id"],
                ["web_tokens.token_id"],
                name="fk_web_sessions_token",
                ondelete="CASCADE",
            )
        ]
        if with_token
        else []
    )
    op.create_table(
        "web_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        *token,
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user"], ["web_users.name"], name="fk_web_sessions_user", ondelete="CASCADE"
        ),
        *token_fk,
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user"])
    if with_token:
        op.create_index("ix_web_sessions_token", "web_sessions", ["token_id"])


def upgrade() -> None:
    op.add_column("web_users", sa.Column("disabled_at", _timestamp(), nullable=True))
    # Sessions go first: nothing may reference web_tokens while SQLite copies it below.
    op.drop_table("web_sessions")
    op.add_column("web_tokens", sa.Column("name", sa.String(255), nullable=True))
    op.execute("UPDATE web_tokens SET name = 'token-' || token_id")
    # SQLite makes a column NOT NULL only by copying the table (nothing references it now).
    with op.batch_alter_table("web_tokens", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("name", existing_type=sa.String(255), nullable=False)
    op.create_index(
        "uq_web_tokens_live_name",
        "web_tokens",
        ["user", "name"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    _sessions(with_token=True)
    op.create_table(
        "web_user_events",
        sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("token_name", sa.String(255), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_web_user_events_user", "web_user_events", ["user", "event_id"])


def downgrade() -> None:
    op.drop_table("web_user_events")
    op.drop_table("web_sessions")
    op.drop_index("uq_web_tokens_live_name", table_name="web_tokens")
    # In place (SQLite 3.35+): a batch copy is not needed to drop a plain column.
    op.drop_column("web_tokens", "name")
    op.drop_column("web_users", "disabled_at")
    _sessions(with_token=False)
