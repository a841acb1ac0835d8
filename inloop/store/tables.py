"""The metadata tables of flows, as SQLAlchemy Core.

Core rather than the ORM because the flow runtime writes thousands of task and
artifact rows per batch and reads whole runs at once; plain rows and
``executemany`` keep that cheap. The schema of a live database is changed only
by the Alembic migrations in ``inloop/store/migrations``; this module must
describe the same schema as the newest migration (a test compares them).

Tables:

``runs``
    one row per flow run; ``status`` is ``running``, ``succeeded`` or ``failed``.
``run_tags``
    tags of a run; ``system`` marks tags inloop set (``user:ana``,
    ``runtime:local``) that users cannot remove. Namespaces are tags.
``tasks``
    one row per task of a run; ``task_id`` is given by the runtime and unique
    within its run.
``artifacts``
    the named values a task produced, each pointing at a content-addressed blob
    (``key`` = hex SHA-256) in the artifact store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)

__all__ = [
    "RUN_STATUSES",
    "TASK_STATUSES",
    "UTCDateTime",
    "artifacts",
    "json_type",
    "metadata",
    "run_tags",
    "runs",
    "tasks",
]

RUN_STATUSES = ("running", "succeeded", "failed")
TASK_STATUSES = ("running", "succeeded", "failed")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no timezone-aware type and returns naive values; PostgreSQL
    returns them in the session's time zone. Both come back as UTC here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # Naive values are taken to be UTC already: that is what inloop writes.
            return value if dialect.name == "sqlite" else value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite would keep the "+00:00" suffix in the text; store naive UTC instead.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> JSON:
    """The JSON column type of inloop's tables: a Python None is SQL NULL."""
    # none_as_null: a Python None is SQL NULL, not the JSON text 'null'.
    return JSON(none_as_null=True)


metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("flow_name", String(255), nullable=False),
    Column("user", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("origin_run_id", Integer, nullable=True),
    Column("parameters", json_type(), nullable=False),
    Column("error", Text, nullable=True),
    Column("executor", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    # (flow_name, run_id) serves both "runs of a flow" and "newest first".
    Index("ix_runs_flow_name", "flow_name", "run_id"),
    # Run ids are never reused, even after deleting the newest run.
    sqlite_autoincrement=True,
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", Integer, nullable=False),
    Column("tag", String(255), nullable=False),
    Column("system", Boolean, nullable=False),
    PrimaryKeyConstraint("run_id", "tag", name="pk_run_tags"),
    ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_tags_run", ondelete="CASCADE"),
    # Finding runs by tag ("user:ana") must not scan every run's tags.
    Index("ix_run_tags_tag", "tag"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("run_id", Integer, nullable=False),
    Column("task_id", Integer, nullable=False),
    Column("step_name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("foreach_stack", json_type(), nullable=False),
    Column("input_task_ids", json_type(), nullable=False),
    Column("transition", json_type(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("stdout_key", String(64), nullable=True),
    Column("stderr_key", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("cloned_from", json_type(), nullable=True),
    PrimaryKeyConstraint("run_id", "task_id", name="pk_tasks"),
    ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_tasks_run", ondelete="CASCADE"),
    Index("ix_tasks_run_step", "run_id", "step_name"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", Integer, nullable=False),
    Column("task_id", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("key", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "task_id", "name", name="pk_artifacts"),
    ForeignKeyConstraint(
        ["run_id", "task_id"],
        ["tasks.run_id", "tasks.task_id"],
        name="fk_artifacts_task",
        ondelete="CASCADE",
    ),
    # Garbage collection asks "is this blob still referenced?".
    Index("ix_artifacts_key", "key"),
)
