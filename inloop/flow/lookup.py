"""Shared machinery of the client API: the current namespace, pathspec parsing,
error listings and the per-run cache that a Run and its children share.

The public names (``namespace``, ``get_namespace``, ``default_namespace``) are
re-exported by :mod:`inloop.flow.client`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from inloop.errors import ClientError, NamespaceMismatchError, NotFoundError
from inloop.flow.user import user_namespace
from inloop.store.artifacts import ArtifactStore, open_artifact_store
from inloop.store.runs import ArtifactRecord, RunRecord, RunStore, TaskRecord

MAX_TAG_LENGTH = 255
# A coordinator writes a heartbeat every 10 s; this much silence means it is gone.
STALE_HEARTBEAT = timedelta(minutes=2)
_LISTED = 10  # how many known names an error message lists

# --------------------------------------------------------------------------- namespace

_UNSET: Any = object()
# Process-wide, as in Metaflow. _UNSET means "the user's own namespace", resolved
# when read so a changed USERNAME/INLOOP_USER is honoured.
_current_namespace: Any = _UNSET


def namespace(ns: str | None) -> str | None:
    """Switch the current namespace; ``None`` means every run of every user.

    >>> namespace("user:ana")
    'user:ana'
    >>> namespace(None) is None
    True
    >>> default_namespace() == user_namespace()
    True
    """
    global _current_namespace
    if ns is not None and (not isinstance(ns, str) or not ns.strip()):
        raise ClientError(
            f"A namespace must be a non-empty tag such as 'user:ana', or None for every run. "
            f"Got {ns!r}."
        )
    _current_namespace = ns
    return ns


def get_namespace() -> str | None:
    """The current namespace: a tag such as ``user:ana``, or ``None`` (global)."""
    if _current_namespace is _UNSET:
        return user_namespace()
    ns: str | None = _current_namespace
    return ns


def default_namespace() -> str:
    """Go back to the default namespace (the current user's) and return it."""
    global _current_namespace
    _current_namespace = _UNSET
    return user_namespace()


# --------------------------------------------------------------------------- helpers


@dataclass
class Stores:
    """The metadata and artifact stores one family of client objects reads."""

    runs: RunStore
    artifacts: ArtifactStore


def open_stores() -> Stores:
    # Built per top-level object, from the settings of that moment.
    return Stores(runs=RunStore(), artifacts=open_artifact_store())


def listing(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:_LISTED])
    more = len(names) - _LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def split_pathspec(pathspec: object, kind: str, parts: tuple[str, ...]) -> list[str]:
    expected = "/".join(parts)
    if not isinstance(pathspec, str):
        raise ClientError(f"A {kind} is named by a pathspec string '{expected}'. Got {pathspec!r}.")
    pieces = pathspec.split("/")
    if len(pieces) != len(parts) or not all(pieces):
        raise ClientError(
            f"A {kind} pathspec has the form '{expected}' ({len(parts)} parts). Got {pathspec!r}."
        )
    return pieces


def parse_int_id(value: str | int, what: str, pathspec: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    if not text.isdigit():
        raise NotFoundError(
            f"No {what} {text!r} in {pathspec!r}: {what} ids are whole numbers such as '12'."
        )
    return int(text)


def check_tag(tag: object) -> str:
    if not isinstance(tag, str):
        raise ClientError(f"A tag must be a string. Got {tag!r} ({type(tag).__name__}).")
    if not tag.strip():
        raise ClientError(f"A tag must be a non-empty string. Got {tag!r}.")
    if len(tag) > MAX_TAG_LENGTH:
        raise ClientError(
            f"A tag must have at most {MAX_TAG_LENGTH} characters. Got {len(tag)}: "
            f"{tag[:40]!r}... Shorten it."
        )
    return tag


def check_tags(tags: Iterable[str], argument: str) -> list[str]:
    if isinstance(tags, str):
        raise ClientError(
            f"{argument} takes a list of tags, not one string ({tags!r}). "
            f"Pass [{tags!r}], or use the singular method."
        )
    return [check_tag(t) for t in tags]


def load_run(stores: Stores, flow_name: str, run_id: int, namespace_check: bool) -> RunRecord:
    record = stores.runs.get_run(run_id, flow_name)
    if record is None:
        raise_run_not_found(stores, flow_name, run_id)
    if namespace_check:
        check_namespace(record)
    return record


def raise_run_not_found(stores: Stores, flow_name: str, run_id: int) -> NoReturn:
    flows = stores.runs.list_flows()
    if flow_name not in flows:
        raise NotFoundError(
            f"No flow named {flow_name!r} has run here.{suggest(flow_name, flows)} "
            f"Known flows: {listing(flows)}."
        )
    recent = [str(r.run_id) for r in stores.runs.list_runs(flow_name, limit=_LISTED)]
    raise NotFoundError(
        f"No run {flow_name}/{run_id}. Latest runs of {flow_name}: {listing(recent)}. "
        f"Flow({flow_name!r}).runs() lists the runs of the current namespace."
    )


def check_namespace(record: RunRecord) -> None:
    ns = get_namespace()
    if ns is None or ns in record.all_tags:
        return
    owner = sorted(t for t in record.system_tags if t.startswith("user:"))
    switch = f"namespace({owner[0]!r})" if owner else "namespace('user:<name>')"
    raise NamespaceMismatchError(
        f"Run {record.flow_name}/{record.run_id} exists but is not in the current namespace "
        f"{ns!r} (it is in {listing(owner)}). Call namespace(None) to see every run, "
        f"or {switch} to switch to its owner's."
    )


class RunCache:
    """What one run's client objects share: its record, task records and artifact records.

    Tasks load with one query on first use; artifact records load a step at a time
    (one query for all tasks of the step) so iterating a foreach stays cheap.
    """

    def __init__(self, stores: Stores, record: RunRecord) -> None:
        self.stores = stores
        self.record = record
        self._tasks: list[TaskRecord] | None = None
        self._by_id: dict[int, TaskRecord] = {}
        self._artifacts: dict[int, dict[str, ArtifactRecord]] = {}

    @property
    def pathspec(self) -> str:
        return f"{self.record.flow_name}/{self.record.run_id}"

    def tasks(self) -> list[TaskRecord]:
        if self._tasks is None:
            self._tasks = self.stores.runs.get_tasks(self.record.run_id)
            self._by_id = {t.task_id: t for t in self._tasks}
        return self._tasks

    def task(self, task_id: int) -> TaskRecord | None:
        self.tasks()
        return self._by_id.get(task_id)

    def step_names(self) -> list[str]:
        """Step names, the most recently started first (Metaflow's order)."""
        first_start: dict[str, tuple[datetime, int]] = {}
        for t in self.tasks():
            key = (t.started_at, t.task_id)
            if t.step_name not in first_start or key < first_start[t.step_name]:
                first_start[t.step_name] = key
        return sorted(first_start, key=lambda s: first_start[s], reverse=True)

    def step_tasks(self, step_name: str) -> list[TaskRecord]:
        return [t for t in self.tasks() if t.step_name == step_name]

    def artifacts(self, task: TaskRecord) -> dict[str, ArtifactRecord]:
        if task.task_id not in self._artifacts:
            wanted = [
                t.task_id
                for t in self.step_tasks(task.step_name)
                if t.task_id not in self._artifacts
            ]
            loaded = self.stores.runs.get_artifacts(self.record.run_id, wanted)
            for task_id in wanted:
                self._artifacts[task_id] = loaded.get(task_id, {})
        return self._artifacts[task.task_id]

    def reload_record(self) -> None:
        record = self.stores.runs.get_run(self.record.run_id, self.record.flow_name)
        if record is not None:
            self.record = record


def run_status(record: RunRecord, now: datetime | None = None) -> str:
    """The run's status as users see it: the stored one, or ``'lost'``.

    A run still marked running whose coordinator has been silent for
    :data:`STALE_HEARTBEAT` died without ending it; it can be resumed like a failed run.
    """
    beat = record.heartbeat_at
    if record.status == "running" and beat is not None:
        return "lost" if (now or datetime.now(UTC)) - beat > STALE_HEARTBEAT else "running"
    return record.status
