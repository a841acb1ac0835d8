"""The metadata tables of the web app's users and sign-ins, on the store's ``metadata``.

Revision ``0004_web_auth`` creates them in older databases; this module must
describe the same schema as the newest migration.

Tables:

``web_users``
    one row per person or client: a unique ``name`` and a ``role``
    (annotator, reviewer, scientist or admin); ``disabled_at`` set means the
    user can no longer sign in (revision ``0011_access_life_cycle``).
``web_tokens``
    API tokens, stored as the SHA-256 hex digest of the token (the token itself
    is shown once, when it is made), each with a ``name`` unique among the
    user's live tokens. ``revoked_at`` ends a token.
``web_sessions``
    browser sessions made by signing in with a token: the SHA-256 hex of the
    session cookie as ``session_id``, the token it was opened with, the CSRF
    token pages must echo, and when the session ends.
``web_user_events``
    append-only history of user administration: who (``actor``) did what
    (``action``) to which user (and token), and when.
``web_project_members``
    who may work in which labeling project (revision ``0005_project_members``):
    annotators and reviewers see only the projects they are members of;
    scientists and admins see every project.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    text,
)

from inloop.store.tables import UTCDateTime, metadata

__all__ = [
    "ROLES",
    "web_project_members",
    "web_sessions",
    "web_tokens",
    "web_user_events",
    "web_users",
]

#: Roles from least to most trusted; each may do what the ones before it may.
ROLES = ("annotator", "reviewer", "scientist", "admin")

web_users = Table(
    "web_users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("disabled_at", UTCDateTime(), nullable=True),
    UniqueConstraint("name", name="uq_web_users_name"),
    sqlite_autoincrement=True,
)

web_tokens = Table(
    "web_tokens",
    metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    UniqueConstraint("token_hash", name="uq_web_tokens_hash"),
    ForeignKeyConstraint(
        ["user"], ["web_users.name"], name="fk_web_tokens_user", ondelete="CASCADE"
    ),
    Index("ix_web_tokens_user", "user"),
    # A name picks one live token of a user; a revoked token's name may be used again.
    Index(
        "uq_web_tokens_live_name",
        "user",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("user", String(255), nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["user"], ["web_users.name"], name="fk_web_sessions_user", ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["token_id"], ["web_tokens.token_id"], name="fk_web_sessions_token", ondelete="CASCADE"
    ),
    Index("ix_web_sessions_user", "user"),
    Index("ix_web_sessions_token", "token_id"),
)

web_user_events = Table(
    "web_user_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("user", String(255), nullable=False),
    Column("token_name", String(255), nullable=True),
    Column("detail", String(255), nullable=True),
    Index("ix_web_user_events_user", "user", "event_id"),
    sqlite_autoincrement=True,
)

web_project_members = Table(
    "web_project_members",
    metadata,
    Column("project_id", Integer, nullable=False),
    Column("user", String(255), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    Column("added_by", String(255), nullable=False),
    PrimaryKeyConstraint("project_id", "user", name="pk_web_project_members"),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_web_project_members_project",
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["user"], ["web_users.name"], name="fk_web_project_members_user", ondelete="CASCADE"
    ),
    Index("ix_web_project_members_user", "user"),
)
