"""Runs, their tags, tasks and artifact references in the metadata database.

:class:`RunStore` is what the flow runtime writes through and what the client
API reads through. Records are frozen dataclasses; the runtime builds
:class:`TaskRecord` and :class:`ArtifactRecord` values and hands them to
:meth:`RunStore.write_tasks` in batches, which writes each batch in one
transaction with one ``executemany`` per table.

>>> store = RunStore(get_engine("sqlite://"))
>>> run = store.create_run("HelloFlow", "ana", system_tags=["user:ana"])
>>> store.get_run(run.run_id).all_tags
frozenset({'user:ana'})
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, select, update
from sqlalchemy.sql.dml import Insert

from inloop.errors import StoreError
from inloop.store.db import begin_write, get_engine
from inloop.store.tables import RUN_STATUSES, TASK_STATUSES, artifacts, run_tags, runs, tasks

__all__ = ["ArtifactRecord", "RunRecord", "RunStore", "TaskRecord"]

_MAX_TAG_LENGTH = 255
# Ids per IN (...) list: SQLite caps bound parameters per statement.
_IN_CHUNK = 900


@dataclass(frozen=True)
class RunRecord:
    """One run of a flow as stored.

    ``tags`` are the user's tags (removable); ``system_tags`` are the ones
    inloop set, such as ``user:ana``, that say who ran it and how.
    """

    run_id: int
    flow_name: str
    user: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime
    origin_run_id: int | None
    parameters: dict[str, Any]
    tags: frozenset[str]
    system_tags: frozenset[str]
    error: str | None
    executor: str
    host: str

    @property
    def all_tags(self) -> frozenset[str]:
        """User and system tags together: what namespaces and tag filters match."""
        return self.tags | self.system_tags


@dataclass(frozen=True)
class TaskRecord:
    """One task of a run: which step it ran, where it sits in foreaches, how it ended.

    ``foreach_stack`` lists the enclosing foreaches outermost first, each as
    ``{"step", "var", "index", "num_splits"}``; ``input_task_ids`` are the tasks
    this one read its inputs from; ``cloned_from`` is ``{"run_id", "task_id"}``
    when ``resume`` reused a task of an earlier run.
    """

    run_id: int
    task_id: int
    step_name: str
    status: str
    attempt: int
    foreach_stack: list[dict[str, Any]]
    input_task_ids: list[int]
    transition: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None = None
    stdout_key: str | None = None
    stderr_key: str | None = None
    error: str | None = None
    cloned_from: dict[str, int] | None = None


@dataclass(frozen=True)
class ArtifactRecord:
    """A named value a task produced: ``key`` addresses its blob in the artifact store."""

    run_id: int
    task_id: int
    name: str
    key: str
    size: int


_TASK_FIELDS = tuple(TaskRecord.__dataclass_fields__)
_TASK_COLUMNS = tuple(tasks.c[name] for name in _TASK_FIELDS)
_ARTIFACT_FIELDS = tuple(ArtifactRecord.__dataclass_fields__)
_ARTIFACT_COLUMNS = tuple(artifacts.c[name] for name in _ARTIFACT_FIELDS)
_RUN_COLUMNS = (
    runs.c.run_id,
    runs.c.flow_name,
    runs.c.user,
    runs.c.status,
    runs.c.created_at,
    runs.c.finished_at,
    runs.c.heartbeat_at,
    runs.c.origin_run_id,
    runs.c.parameters,
    runs.c.error,
    runs.c.executor,
    runs.c.host,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _upsert(engine: Engine, table: Any, keys: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` every other column, for this dialect."""
    # Dialect modules are imported here: loading both at start-up costs ~50 ms per run.
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg_stmt = postgresql.insert(table)
        excluded: Any = pg_stmt.excluded
        update_cols = {c.name: excluded[c.name] for c in table.c if c.name not in keys}
        return pg_stmt.on_conflict_do_update(index_elements=list(keys), set_=update_cols)
    from sqlalchemy.dialects import sqlite

    lite_stmt = sqlite.insert(table)
    excluded = lite_stmt.excluded
    update_cols = {c.name: excluded[c.name] for c in table.c if c.name not in keys}
    return lite_stmt.on_conflict_do_update(index_elements=list(keys), set_=update_cols)


def _check_tags(tags: Iterable[str], what: str) -> list[str]:
    if isinstance(tags, str):
        # A bare string would be split into letters.
        raise StoreError(
            f"{what} must be a list of strings, not the string {tags!r}. Pass [{tags!r}]."
        )
    checked = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > _MAX_TAG_LENGTH:
            raise StoreError(
                f"Invalid tag {tag!r} in {what}: a tag must be a non-empty string of at most "
                f"{_MAX_TAG_LENGTH} characters, such as 'baseline' or 'user:ana'."
            )
        checked.append(tag)
    return list(dict.fromkeys(checked))  # drop repeats, keep order


def _chunks(values: Sequence[int], size: int = _IN_CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class RunStore:
    """Runs, tags, tasks and artifact references in one metadata database.

    Cheap to create: it holds the engine (default :func:`get_engine`) and a few
    prepared statements. Safe to share between threads.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine if engine is not None else get_engine()
        self._task_upsert = _upsert(self.engine, tasks, ("run_id", "task_id"))
        self._artifact_upsert = _upsert(self.engine, artifacts, ("run_id", "task_id", "name"))

    def __repr__(self) -> str:
        return f"RunStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- runs -----------------------------------------------------------------------------

    def create_run(
        self,
        flow_name: str,
        user: str,
        *,
        tags: Iterable[str] = (),
        system_tags: Iterable[str] = (),
        parameters: dict[str, Any] | None = None,
        origin_run_id: int | None = None,
        executor: str = "local",
        host: str | None = None,
    ) -> RunRecord:
        """Record a new run in status ``running`` and return it with its new ``run_id``.

        ``parameters`` must be JSON-serializable (they are shown and compared,
        not loaded back as objects). ``host`` defaults to this machine's name.
        """
        if not isinstance(flow_name, str) or not flow_name or len(flow_name) > 255:
            raise StoreError(
                f"Invalid flow name {flow_name!r}: expected a non-empty string of at most "
                "255 characters, such as the flow class name."
            )
        user_tags = _check_tags(tags, "tags")
        sys_tags = _check_tags(system_tags, "system_tags")
        params = dict(parameters or {})
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            bad = [k for k, v in params.items() if not _json_ok(v)]
            raise StoreError(
                f"The parameters {bad or list(params)} of run of {flow_name!r} cannot be stored "
                f"as JSON ({exc}). Store such values as artifacts and pass a JSON-friendly "
                "form (str, number, bool, list, dict)."
            ) from None
        now = _now()
        host = host if host is not None else socket.gethostname()
        row = {
            "flow_name": flow_name,
            "user": user,
            "status": "running",
            "created_at": now,
            "finished_at": None,
            "heartbeat_at": now,
            "origin_run_id": origin_run_id,
            "parameters": params,
            "error": None,
            "executor": executor,
            "host": host,
        }
        system = set(sys_tags)
        with begin_write(self.engine) as conn:
            result = conn.execute(runs.insert(), row)
            run_id = _new_id(result.inserted_primary_key)
            tag_rows = [{"run_id": run_id, "tag": t, "system": True} for t in sys_tags]
            tag_rows += [
                {"run_id": run_id, "tag": t, "system": False} for t in user_tags if t not in system
            ]
            if tag_rows:
                conn.execute(run_tags.insert(), tag_rows)
        return RunRecord(
            run_id=run_id,
            flow_name=flow_name,
            user=user,
            status="running",
            created_at=now,
            finished_at=None,
            heartbeat_at=now,
            origin_run_id=origin_run_id,
            parameters=params,
            tags=frozenset(user_tags) - system,
            system_tags=frozenset(sys_tags),
            error=None,
            executor=executor,
            host=host,
        )

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        """Mark a run ``succeeded`` or ``failed`` (with ``error``), stamping ``finished_at``."""
        if status not in RUN_STATUSES or status == "running":
            raise StoreError(
                f"Cannot finish run {run_id} with status {status!r}: expected 'succeeded' or "
                "'failed'."
            )
        now = _now()
        values = {"status": status, "finished_at": now, "heartbeat_at": now, "error": error}
        self._update_run(run_id, values)

    def heartbeat(self, run_id: int) -> None:
        """Stamp ``heartbeat_at`` with now: the run's coordinator is alive."""
        self._update_run(run_id, {"heartbeat_at": _now()})

    def _update_run(self, run_id: int, values: dict[str, Any]) -> None:
        with begin_write(self.engine) as conn:
            result = conn.execute(update(runs).where(runs.c.run_id == run_id).values(values))
            if result.rowcount == 0:
                raise StoreError(
                    f"No run with id {run_id} in {self!r}. Check the id with list_runs()."
                )

    def add_tags(self, run_id: int, tags: Iterable[str], *, system: bool = False) -> None:
        """Add tags to a run; tags it already has (user or system) are left as they are.

        ``system=True`` is for inloop's own records made while a run goes (e.g. the
        dataset snapshot a step loaded): users cannot remove those.
        """
        new = _check_tags(tags, "tags")
        with begin_write(self.engine) as conn:
            self._require_run(conn, run_id)
            have = set(
                conn.execute(select(run_tags.c.tag).where(run_tags.c.run_id == run_id)).scalars()
            )
            rows = [{"run_id": run_id, "tag": t, "system": system} for t in new if t not in have]
            if rows:
                conn.execute(run_tags.insert(), rows)

    def remove_tags(self, run_id: int, tags: Iterable[str]) -> None:
        """Remove user tags from a run. System tags cannot be removed; absent tags are ignored."""
        gone = _check_tags(tags, "tags")
        if not gone:
            return
        with begin_write(self.engine) as conn:
            self._require_run(conn, run_id)
            system = set(
                conn.execute(
                    select(run_tags.c.tag).where(
                        run_tags.c.run_id == run_id,
                        run_tags.c.system.is_(True),
                        run_tags.c.tag.in_(gone),
                    )
                ).scalars()
            )
            if system:
                raise StoreError(
                    f"Cannot remove {sorted(system)} from run {run_id}: they are system tags, "
                    "set by inloop to record who ran it and how. Only user tags can be removed."
                )
            conn.execute(
                delete(run_tags).where(run_tags.c.run_id == run_id, run_tags.c.tag.in_(gone))
            )

    def _require_run(self, conn: Connection, run_id: int) -> None:
        found = conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
        if found is None:
            raise StoreError(f"No run with id {run_id} in {self!r}. Check the id with list_runs().")

    def get_run(self, run_id: int, flow_name: str | None = None) -> RunRecord | None:
        """The run with this id, or None; also None when it is not a run of ``flow_name``."""
        query = select(*_RUN_COLUMNS).where(runs.c.run_id == run_id)
        if flow_name is not None:
            query = query.where(runs.c.flow_name == flow_name)
        found = self._read_runs(query)
        return found[0] if found else None

    def list_runs(
        self,
        flow_name: str | None = None,
        *,
        tags: Iterable[str] = (),
        status: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, optionally of one flow, in one status, having ALL ``tags``."""
        wanted = _check_tags(tags, "tags")
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(
                f"Unknown run status {status!r}: expected one of {', '.join(RUN_STATUSES)}."
            )
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise StoreError(f"limit must be an int >= 0 or None. Got {limit!r}.")
        query = select(*_RUN_COLUMNS)
        if flow_name is not None:
            query = query.where(runs.c.flow_name == flow_name)
        if status is not None:
            query = query.where(runs.c.status == status)
        if wanted:
            having_all = (
                select(run_tags.c.run_id)
                .where(run_tags.c.tag.in_(wanted))
                .group_by(run_tags.c.run_id)
                .having(func.count() == len(wanted))
            )
            query = query.where(runs.c.run_id.in_(having_all))
        query = query.order_by(runs.c.run_id.desc())
        if limit is not None:
            query = query.limit(limit)
        return self._read_runs(query)

    def _read_runs(self, query: Select[Any]) -> list[RunRecord]:
        # One query for the runs and one for all their tags, in one snapshot.
        ids = query.with_only_columns(runs.c.run_id).subquery()
        tag_query = select(run_tags.c.run_id, run_tags.c.tag, run_tags.c.system).where(
            run_tags.c.run_id.in_(select(ids.c.run_id))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            tag_rows = conn.execute(tag_query).all()
        user_tags: dict[int, set[str]] = {}
        sys_tags: dict[int, set[str]] = {}
        for rid, tag, system in tag_rows:
            (sys_tags if system else user_tags).setdefault(rid, set()).add(tag)
        empty: frozenset[str] = frozenset()
        return [
            RunRecord(
                run_id=r.run_id,
                flow_name=r.flow_name,
                user=r.user,
                status=r.status,
                created_at=r.created_at,
                finished_at=r.finished_at,
                heartbeat_at=r.heartbeat_at,
                origin_run_id=r.origin_run_id,
                parameters=r.parameters,
                tags=frozenset(user_tags.get(r.run_id, empty)),
                system_tags=frozenset(sys_tags.get(r.run_id, empty)),
                error=r.error,
                executor=r.executor,
                host=r.host,
            )
            for r in rows
        ]

    def list_flows(self) -> list[str]:
        """Names of every flow with at least one run, sorted."""
        query = select(runs.c.flow_name).distinct().order_by(runs.c.flow_name)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- tasks and artifacts --------------------------------------------------------------

    def write_tasks(
        self, tasks: Sequence[TaskRecord], artifacts: Sequence[ArtifactRecord] = ()
    ) -> None:
        """Insert or update tasks (by run and task id) and their artifacts, in one transaction.

        Artifacts are written after the tasks, so a batch may hold a task and
        its artifacts together. Either the whole batch is stored or none of it.
        """
        if not tasks and not artifacts:
            return
        task_rows = []
        for t in tasks:
            if t.status not in TASK_STATUSES:
                raise StoreError(
                    f"Task {t.run_id}/{t.step_name}/{t.task_id} has status {t.status!r}: "
                    f"expected one of {', '.join(TASK_STATUSES)}. Nothing was written."
                )
            # Attribute access, not dataclasses.asdict: asdict deep-copies every value.
            task_rows.append({name: getattr(t, name) for name in _TASK_FIELDS})
        artifact_rows = [
            {"run_id": a.run_id, "task_id": a.task_id, "name": a.name, "key": a.key, "size": a.size}
            for a in artifacts
        ]
        with begin_write(self.engine) as conn:
            if task_rows:
                conn.execute(self._task_upsert, task_rows)
            if artifact_rows:
                conn.execute(self._artifact_upsert, artifact_rows)

    def get_tasks(self, run_id: int, step_name: str | None = None) -> list[TaskRecord]:
        """The run's tasks (of one step, if given) ordered by task id."""
        query = select(*_TASK_COLUMNS).where(tasks.c.run_id == run_id)
        if step_name is not None:
            query = query.where(tasks.c.step_name == step_name)
        query = query.order_by(tasks.c.task_id)
        with self.engine.connect() as conn:
            return [TaskRecord(*row) for row in conn.execute(query)]

    def get_task(self, run_id: int, task_id: int) -> TaskRecord | None:
        """One task, or None when the run has no task with that id."""
        query = select(*_TASK_COLUMNS).where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else TaskRecord(*row)

    def get_artifacts(
        self, run_id: int, task_ids: Iterable[int] | None = None
    ) -> dict[int, dict[str, ArtifactRecord]]:
        """Artifact references of a run as ``{task_id: {name: record}}``.

        With ``task_ids``, only those tasks, each present in the result (with an
        empty dict when it stored nothing); without, every task that stored any.
        """
        base = select(*_ARTIFACT_COLUMNS).where(artifacts.c.run_id == run_id)
        result: dict[int, dict[str, ArtifactRecord]] = {}
        with self.engine.connect() as conn:
            if task_ids is None:
                rows = list(conn.execute(base.order_by(artifacts.c.task_id, artifacts.c.name)))
            else:
                wanted = sorted(set(task_ids))
                result = {tid: {} for tid in wanted}
                rows = []
                for chunk in _chunks(wanted):
                    rows.extend(conn.execute(base.where(artifacts.c.task_id.in_(chunk))))
        for row in rows:
            record = ArtifactRecord(*row)
            result.setdefault(record.task_id, {})[record.name] = record
        return result


def _new_id(primary_key: Any) -> int:
    # Both dialects report the new key (lastrowid / RETURNING); None would be a driver fault.
    if primary_key is None or primary_key[0] is None:
        raise StoreError("The database did not report the id of the new run; nothing to retry.")
    return int(primary_key[0])


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
