"""Runs, their tags, tasks and artifacts.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Written out column by column rather than from ``inloop.store.tables`` so this
revision keeps creating the same schema when the tables change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("heartbeat_at", _timestamp(), nullable=False),
        sa.Column("origin_run_id", sa.Integer(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("executor", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_flow_name", "runs", ["flow_name", "run_id"])

    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("system", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "tag", name="pk_run_tags"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name="fk_run_tags_run", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag"])

    op.create_table(
        "tasks",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("foreach_stack", sa.JSON(), nullable=False),
        sa.Column("input_task_ids", sa.JSON(), nullable=False),
        sa.Column("transition", sa.JSON(), nullable=True),
        sa.Column("started_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.Column("stdout_key", sa.String(64), nullable=True),
        sa.Column("stderr_key", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cloned_from", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "task_id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name="fk_tasks_run", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tasks_run_step", "tasks", ["run_id", "step_name"])

    op.create_table(
        "artifacts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "task_id", "name", name="pk_artifacts"),
        sa.ForeignKeyConstraint(
            ["run_id", "task_id"],
            ["tasks.run_id", "tasks.task_id"],
            name="fk_artifacts_task",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_artifacts_key", "artifacts", ["key"])


def downgrade() -> None:
    op.drop_table("artifacts")
    op.drop_table("tasks")
    op.drop_table("run_tags")
    op.drop_table("runs")
