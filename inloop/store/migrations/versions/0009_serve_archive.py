"""Serving: the request archive (the decoy), scores, feedback, review routing, webhook deliveries.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21

Written out column by column rather than from ``inloop.serve.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _service_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["service_id"],
        ["serve_services.service_id"],
        name=f"fk_{table}_service",
        ondelete="CASCADE",
    )


def _request_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["request_id"],
        ["serve_requests.request_id"],
        name=f"fk_{table}_request",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "serve_requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("received_at", _timestamp(), nullable=False),
        sa.Column("n_instances", sa.Integer(), nullable=False),
        sa.Column("inputs", _json(), nullable=True),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("fallback_used", sa.Boolean(), nullable=False),
        sa.Column("predictions", _json(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _service_fk("serve_requests"),
    )
    op.create_index(
        "ix_serve_requests_service_time", "serve_requests", ["service_id", "received_at"]
    )
    op.create_table(
        "serve_scores",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(300), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("predictions", _json(), nullable=True),
        sa.Column("probabilities", _json(), nullable=True),
        sa.Column("classes", _json(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _request_fk("serve_scores"),
    )
    op.create_table(
        "serve_feedback",
        sa.Column("feedback_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("given_by", sa.String(255), nullable=False),
        sa.Column("given_at", _timestamp(), nullable=False),
        _request_fk("serve_feedback"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_serve_feedback_request", "serve_feedback", ["request_id"])
    op.create_table(
        "serve_review_items",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("routed_at", _timestamp(), nullable=False),
        _service_fk("serve_review_items"),
    )
    op.create_index(
        "ix_serve_review_items_service_time", "serve_review_items", ["service_id", "routed_at"]
    )
    op.create_table(
        "serve_deliveries",
        sa.Column("delivery_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        _service_fk("serve_deliveries"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_serve_deliveries_service_time", "serve_deliveries", ["service_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("serve_deliveries")
    op.drop_table("serve_review_items")
    op.drop_table("serve_feedback")
    op.drop_table("serve_scores")
    op.drop_table("serve_requests")
