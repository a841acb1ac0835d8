"""Lineage: from one answered request back to the people whose labels trained its models.

:func:`lineage` follows every arrow the metadata store records, from a
request id alone: the request and its answer, its feedback, and for every
model that scored it, the registered version (who registered it, when, its
metrics), the flow run and task it came from, the dataset snapshot that task
trained on, and the annotators and reviewers of that snapshot's labels with
counts (:func:`inloop.label.snapshot_contributors`). An arrow the store does
not know (a model registered from a notebook has no run; a run that took no
snapshot has none) is None, and so is one whose record was deleted since.

>>> from inloop.store import get_engine
>>> lineage("0" * 32, engine=get_engine("sqlite://"))
Traceback (most recent call last):
...
inloop.serve.archive.RequestNotFoundError: No archived request '000...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from inloop.label.contributors import SnapshotContributors, snapshot_contributors
from inloop.label.projects import LabelNotFoundError
from inloop.serve.archive import RequestNotFoundError, RequestView, get_request
from inloop.serve.models import ModelNotFoundError
from inloop.serve.registry import ModelVersion, get_version
from inloop.serve.tables import serve_requests, serve_services
from inloop.store.db import get_engine
from inloop.store.runs import RunStore

__all__ = ["Lineage", "ModelLineage", "RunLineage", "TaskLineage", "lineage"]

_ROLE_ORDER = {"champion": 0, "canary": 1, "challenger": 2, "fallback": 3}


@dataclass(frozen=True)
class RunLineage:
    """The flow run a model version came from."""

    pathspec: str
    status: str
    user: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class TaskLineage:
    """The task of that run whose artifact the model is."""

    pathspec: str
    step: str
    status: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ModelLineage:
    """One model that scored the request, and where it came from.

    ``role`` and ``status`` are its part in the request (``answered``: the
    answer is its); ``version`` is the registered version; ``run``, ``task``
    and ``snapshot`` its training lineage, None where not known.
    """

    ref: str
    role: str
    status: str
    predictions: list[Any] | None
    answered: bool
    version: ModelVersion | None
    run: RunLineage | None
    task: TaskLineage | None
    snapshot: SnapshotContributors | None

    def to_dict(self) -> dict[str, Any]:
        """As JSON values (the REST API's shape)."""
        version = self.version
        snapshot = self.snapshot
        return {
            "model": self.ref,
            "role": self.role,
            "status": self.status,
            "predictions": self.predictions,
            "answered": self.answered,
            "version": None
            if version is None
            else {
                "kind": version.kind,
                "registered_by": version.registered_by,
                "registered_at": version.registered_at.isoformat(),
                "metrics": version.metrics,
                "note": version.note,
                "artifact": version.artifact_name,
            },
            "run": None if self.run is None else _dated(self.run.__dict__),
            "task": None if self.task is None else _dated(self.task.__dict__),
            "snapshot": None
            if snapshot is None
            else {
                **_dated({k: v for k, v in snapshot.__dict__.items() if k != "contributors"}),
                "contributors": [p.__dict__ for p in snapshot.contributors],
            },
        }


def _dated(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


@dataclass(frozen=True)
class Lineage:
    """A request (with its scores and feedback) and the lineage of every model that scored it,
    the one that answered first."""

    request: RequestView
    models: tuple[ModelLineage, ...]

    def to_dict(self) -> dict[str, Any]:
        """As JSON values (the REST API's shape; the request's inputs left out)."""
        r = self.request
        return {
            "request_id": r.request_id,
            "service": r.service,
            "revision": r.revision,
            "received_at": r.received_at.isoformat(),
            "n_instances": r.n_instances,
            "answer": {
                "model": r.model,
                "role": r.role,
                "fallback_used": r.fallback_used,
                "predictions": r.predictions,
                "latency_ms": r.latency_ms,
            },
            "feedback": None if r.feedback is None else r.feedback.to_dict(),
            "models": [m.to_dict() for m in self.models],
        }


def _run(store: RunStore, pathspec: str | None) -> RunLineage | None:
    if pathspec is None:
        return None
    flow, _, number = pathspec.partition("/")
    record = store.get_run(int(number), flow) if number.isdigit() else None
    if record is None:
        return None
    return RunLineage(pathspec, record.status, record.user, record.created_at, record.finished_at)


def _task(store: RunStore, pathspec: str | None) -> TaskLineage | None:
    parts = (pathspec or "").split("/")
    if len(parts) != 4 or not parts[1].isdigit() or not parts[3].isdigit():
        return None
    record = store.get_task(int(parts[1]), int(parts[3]))
    if record is None:
        return None
    return TaskLineage(
        str(pathspec), record.step_name, record.status, record.started_at, record.finished_at
    )


def _model(ref: str, engine: Engine, store: RunStore) -> tuple[Any, ...]:
    """The registered version of ``ref`` and its run, task and snapshot (None where unknown)."""
    name, _, number = ref.partition("@")
    try:
        version = get_version(name, int(number), engine=engine)
    except (ModelNotFoundError, ValueError):
        return None, None, None, None
    snapshot = None
    if version.snapshot_id is not None:
        try:
            snapshot = snapshot_contributors(version.snapshot_id, engine=engine)
        except LabelNotFoundError:
            snapshot = None
    return (
        version,
        _run(store, version.run_pathspec),
        _task(store, version.task_pathspec),
        snapshot,
    )


def lineage(request_id: str, *, engine: Engine | None = None) -> Lineage:
    """Everything the store knows about how the request ``request_id`` was answered.

    The request id alone finds its service. Raises
    :class:`~inloop.serve.archive.RequestNotFoundError` for an id the
    archive does not hold.
    """
    eng = engine if engine is not None else get_engine()
    with eng.connect() as conn:
        service = conn.execute(
            select(serve_services.c.name)
            .join(serve_requests, serve_requests.c.service_id == serve_services.c.service_id)
            .where(serve_requests.c.request_id == request_id)
        ).scalar()
    if service is None:
        raise RequestNotFoundError(
            f"No archived request {request_id!r}. Use the request_id a predict answer "
            "returned; requests are archived within a second of their answer."
        )
    view = get_request(service, request_id, engine=eng)
    store = RunStore(eng)
    models = []
    for ref, score in view.scores.items():
        version, run, task, snapshot = _model(ref, eng, store)
        models.append(
            ModelLineage(
                ref=ref,
                role=score.role,
                status=score.status,
                predictions=score.predictions,
                answered=ref == view.model,
                version=version,
                run=run,
                task=task,
                snapshot=snapshot,
            )
        )
    models.sort(key=lambda m: (not m.answered, _ROLE_ORDER.get(m.role, 9), m.ref))
    return Lineage(view, tuple(models))
