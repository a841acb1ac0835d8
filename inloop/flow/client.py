"""The client API: read past runs, their steps, tasks and artifacts.

Names and behaviour follow Metaflow's client, so notebook code written for it
works after changing the import line::

    from inloop.flow.client import Flow, namespace

    run = Flow("TrainFlow").latest_successful_run
    run.data.accuracy                     # an artifact of the end step
    [t.data.score for t in run["train"]]  # one artifact of every foreach task

Every lookup is filtered by the *current namespace*, a tag such as
``user:ana`` (the default: runs you started yourself). ``namespace(None)``
sees every run. Objects are snapshots: a ``Run`` loads its tasks with one
query and the artifact records of a step with one more, on first use, and its
``Step``, ``Task`` and ``DataArtifact`` children share that cache. Artifact
values are loaded only when ``.data`` (or an attribute of ``task.data``) is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from inloop.errors import ClientError, NamespaceMismatchError, NotFoundError
from inloop.flow.lookup import (
    RunCache,
    Stores,
    check_tags,
    default_namespace,
    get_namespace,
    listing,
    load_run,
    namespace,
    open_stores,
    parse_int_id,
    run_status,
    split_pathspec,
    suggest,
)
from inloop.store.runs import ArtifactRecord, RunRecord, TaskRecord

__all__ = [
    "DataArtifact",
    "Flow",
    "Metaflow",
    "Run",
    "Step",
    "Task",
    "TaskArtifacts",
    "TaskData",
    "default_namespace",
    "get_namespace",
    "namespace",
]


# --------------------------------------------------------------------------- objects


class _ClientObject:
    """Shared identity: a pathspec, a Metaflow-style repr, equality by pathspec."""

    pathspec: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pathspec!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(other.pathspec == self.pathspec)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.pathspec))


class _InRun(_ClientObject):
    """An object at run level or below: it sees the run's tags."""

    _cache: RunCache

    @property
    def tags(self) -> frozenset[str]:
        """User and system tags of the run this object belongs to."""
        return self._cache.record.all_tags

    @property
    def user_tags(self) -> frozenset[str]:
        """Tags people added to the run (``--tag`` or ``add_tag``)."""
        return self._cache.record.tags

    @property
    def system_tags(self) -> frozenset[str]:
        """Tags inloop added to the run, such as its namespace ``user:<name>``."""
        return self._cache.record.system_tags


class Metaflow:
    """The root of the hierarchy: every flow that has run here.

    >>> [flow.id for flow in Metaflow()]  # doctest: +SKIP
    ['TrainFlow']
    """

    def __init__(self) -> None:
        self._stores = open_stores()

    @property
    def flows(self) -> list[Flow]:
        """Every flow with at least one recorded run, by name."""
        return [Flow._make(name, self._stores) for name in self._stores.runs.list_flows()]

    def __iter__(self) -> Iterator[Flow]:
        return iter(self.flows)

    def __repr__(self) -> str:
        return "Metaflow()"


class Flow(_ClientObject):
    """All runs of one flow, named by its class name.

    >>> run = Flow("TrainFlow").latest_run  # doctest: +SKIP
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ClientError(
                f"A flow is named by its class name, such as 'TrainFlow'. Got {name!r}."
            )
        self._name = name
        self._stores = open_stores()
        if not self._stores.runs.list_runs(name, limit=1):
            flows = self._stores.runs.list_flows()
            raise NotFoundError(
                f"No run of flow {name!r} is recorded.{suggest(name, flows)} "
                f"Known flows: {listing(flows)}. Flows are named by their class name."
            )

    @classmethod
    def _make(cls, name: str, stores: Stores) -> Flow:
        flow = cls.__new__(cls)
        flow._name = name
        flow._stores = stores
        return flow

    @property
    def id(self) -> str:
        """The flow's name."""
        return self._name

    @property
    def pathspec(self) -> str:  # type: ignore[override]
        return self._name

    def runs(self, *tags: str) -> list[Run]:
        """Runs in the current namespace that carry every given tag, newest first."""
        wanted = check_tags(tags, "runs()")
        return self._runs(wanted)

    def _runs(
        self, tags: list[str], status: str | None = None, limit: int | None = None
    ) -> list[Run]:
        ns = get_namespace()
        if ns is not None:
            tags = [ns, *tags]
        records = self._stores.runs.list_runs(self._name, tags=tags, status=status, limit=limit)
        return [Run._make(RunCache(self._stores, r)) for r in records]

    @property
    def latest_run(self) -> Run | None:
        """The newest run in the current namespace, whatever its status."""
        runs = self._runs([], limit=1)
        return runs[0] if runs else None

    @property
    def latest_successful_run(self) -> Run | None:
        """The newest successful run in the current namespace, or None."""
        runs = self._runs([], status="succeeded", limit=1)
        return runs[0] if runs else None

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __getitem__(self, run_id: str | int) -> Run:
        number = parse_int_id(run_id, "run", self._name)
        record = load_run(self._stores, self._name, number, namespace_check=True)
        return Run._make(RunCache(self._stores, record))

    def __contains__(self, run_id: object) -> bool:
        try:
            self[run_id]  # type: ignore[index]
        except (NotFoundError, NamespaceMismatchError):
            return False
        return True


class Run(_InRun):
    """One execution of a flow, named ``"FlowName/run_id"``.

    >>> run = Run("TrainFlow/12")  # doctest: +SKIP
    >>> run.data.model, run["train"].task.stdout  # doctest: +SKIP
    """

    def __init__(self, pathspec: str, _namespace_check: bool = True) -> None:
        flow_name, run_id = split_pathspec(pathspec, "run", ("FlowName", "RunId"))
        stores = open_stores()
        number = parse_int_id(run_id, "run", pathspec)
        record = load_run(stores, flow_name, number, _namespace_check)
        self._cache = RunCache(stores, record)

    @classmethod
    def _make(cls, cache: RunCache) -> Run:
        run = cls.__new__(cls)
        run._cache = cache
        return run

    @property
    def _record(self) -> RunRecord:
        return self._cache.record

    @property
    def id(self) -> str:
        """The run number, as a string (Metaflow's convention)."""
        return str(self._record.run_id)

    @property
    def pathspec(self) -> str:  # type: ignore[override]
        return self._cache.pathspec

    @property
    def flow_name(self) -> str:
        return self._record.flow_name

    @property
    def status(self) -> str:
        """``'running'``, ``'succeeded'``, ``'failed'``, or ``'lost'``.

        ``'lost'`` is a run still marked running whose coordinator has not written a
        heartbeat for two minutes (it writes one every ten seconds): the process died
        without ending the run. Resume it like a failed run.
        """
        return run_status(self._record)

    @property
    def successful(self) -> bool:
        """True when the run finished and succeeded."""
        return self._record.status == "succeeded"

    @property
    def finished(self) -> bool:
        """True when the run ended, successfully or not."""
        return self._record.status in ("succeeded", "failed")

    @property
    def created_at(self) -> datetime:
        return self._record.created_at

    @property
    def finished_at(self) -> datetime | None:
        """When the run ended (successfully or not); None while it runs."""
        return self._record.finished_at

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameter values the run was started with."""
        return dict(self._record.parameters or {})

    @property
    def user(self) -> str:
        return self._record.user

    @property
    def origin_run_id(self) -> str | None:
        """The id of the run this one resumed, or None."""
        origin = self._record.origin_run_id
        return None if origin is None else str(origin)

    @property
    def error(self) -> str | None:
        """Why the run failed, when it did."""
        return self._record.error

    @property
    def end_task(self) -> Task | None:
        """The task of the ``end`` step, or None if the run has not reached it."""
        tasks = self._cache.step_tasks("end")
        if not tasks:
            return None
        done = [t for t in tasks if t.status == "succeeded"]
        return Task._make(self._cache, (done or tasks)[-1])

    @property
    def data(self) -> TaskData | None:
        """The end step's artifacts (``run.data.x``); None unless ``end`` succeeded."""
        end = self.end_task
        if end is None or not end.successful:
            return None
        return end.data

    def steps(self) -> list[Step]:
        """The run's steps, the most recently started first."""
        return [Step._make(self._cache, name) for name in self._cache.step_names()]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps())

    def __getitem__(self, step_name: str) -> Step:
        if not self._cache.step_tasks(step_name):
            names = self._cache.step_names()[::-1]
            raise NotFoundError(
                f"Run {self.pathspec} has no step {step_name!r}.{suggest(step_name, names)} "
                f"Its steps: {listing(names)}."
            )
        return Step._make(self._cache, step_name)

    def __contains__(self, step_name: object) -> bool:
        return isinstance(step_name, str) and bool(self._cache.step_tasks(step_name))

    # Tags: only user tags change; system tags (namespace and the like) are fixed.

    def add_tag(self, tag: str) -> None:
        """Add one user tag to this run."""
        self.add_tags([tag])

    def add_tags(self, tags: Iterable[str]) -> None:
        """Add user tags to this run; tags it already has are left as they are."""
        new = [t for t in check_tags(tags, "add_tags()") if t not in self.tags]
        if new:
            self._cache.stores.runs.add_tags(self._record.run_id, new)
        self._cache.reload_record()

    def remove_tag(self, tag: str) -> None:
        """Remove one user tag from this run."""
        self.remove_tags([tag])

    def remove_tags(self, tags: Iterable[str]) -> None:
        """Remove user tags from this run; system tags cannot be removed."""
        gone = check_tags(tags, "remove_tags()")
        self._refuse_system_tags(gone)
        present = [t for t in gone if t in self.user_tags]
        if present:
            self._cache.stores.runs.remove_tags(self._record.run_id, present)
        self._cache.reload_record()

    def replace_tag(self, tag_to_remove: str, tag_to_add: str) -> None:
        """Swap one user tag for another."""
        self.replace_tags([tag_to_remove], [tag_to_add])

    def replace_tags(self, tags_to_remove: Iterable[str], tags_to_add: Iterable[str]) -> None:
        """Remove some user tags and add others; a tag in both lists stays."""
        gone = check_tags(tags_to_remove, "replace_tags()")
        new = check_tags(tags_to_add, "replace_tags()")
        self._refuse_system_tags(gone)
        self.add_tags(new)
        self.remove_tags([t for t in gone if t not in new])

    def _refuse_system_tags(self, tags: list[str]) -> None:
        system = [t for t in tags if t in self.system_tags]
        if system:
            raise ClientError(
                f"Cannot remove system tag(s) {', '.join(map(repr, system))} from run "
                f"{self.pathspec}: only user tags can change. Its user tags: "
                f"{listing(sorted(self.user_tags))}."
            )


class Step(_InRun):
    """One step of a run, named ``"FlowName/run_id/step_name"``; holds its tasks."""

    def __init__(self, pathspec: str, _namespace_check: bool = True) -> None:
        flow_name, run_id, step_name = split_pathspec(
            pathspec, "step", ("FlowName", "RunId", "StepName")
        )
        stores = open_stores()
        number = parse_int_id(run_id, "run", pathspec)
        run = Run._make(RunCache(stores, load_run(stores, flow_name, number, _namespace_check)))
        self._cache = run[step_name]._cache
        self._name = step_name

    @classmethod
    def _make(cls, cache: RunCache, step_name: str) -> Step:
        step = cls.__new__(cls)
        step._cache = cache
        step._name = step_name
        return step

    @property
    def id(self) -> str:
        """The step's name."""
        return self._name

    @property
    def pathspec(self) -> str:  # type: ignore[override]
        return f"{self._cache.pathspec}/{self._name}"

    @property
    def task(self) -> Task | None:
        """A task of this step: the only one, unless the step is in a foreach."""
        records = self._cache.step_tasks(self._name)
        return Task._make(self._cache, records[0]) if records else None

    def tasks(self) -> list[Task]:
        """Every task of this step, by task id (foreach order)."""
        return [Task._make(self._cache, t) for t in self._cache.step_tasks(self._name)]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks())

    def __getitem__(self, task_id: str | int) -> Task:
        number = parse_int_id(task_id, "task", self.pathspec)
        record = self._cache.task(number)
        if record is None or record.step_name != self._name:
            ids = [str(t.task_id) for t in self._cache.step_tasks(self._name)]
            raise NotFoundError(
                f"Step {self.pathspec} has no task {task_id!r}. Its tasks: {listing(ids)}."
            )
        return Task._make(self._cache, record)

    def __contains__(self, task_id: object) -> bool:
        try:
            self[task_id]  # type: ignore[index]
        except NotFoundError:
            return False
        return True

    @property
    def created_at(self) -> datetime:
        """When the step's first task started."""
        return min(t.started_at for t in self._cache.step_tasks(self._name))

    @property
    def finished_at(self) -> datetime | None:
        """When the step's last task finished; None while any task still runs."""
        ends = [t.finished_at for t in self._cache.step_tasks(self._name)]
        if any(end is None for end in ends):
            return None
        return max(end for end in ends if end is not None)


class Task(_InRun):
    """One execution of a step, named ``"FlowName/run_id/step_name/task_id"``.

    >>> task = Task("TrainFlow/12/train/7")  # doctest: +SKIP
    >>> task.data.score, task.index, task.stdout  # doctest: +SKIP
    """

    _task: TaskRecord

    def __init__(self, pathspec: str, _namespace_check: bool = True) -> None:
        flow_name, run_id, step_name, task_id = split_pathspec(
            pathspec, "task", ("FlowName", "RunId", "StepName", "TaskId")
        )
        step = Step(f"{flow_name}/{run_id}/{step_name}", _namespace_check)
        task = step[task_id]
        self._cache = task._cache
        self._task = task._task

    @classmethod
    def _make(cls, cache: RunCache, record: TaskRecord) -> Task:
        task = cls.__new__(cls)
        task._cache = cache
        task._task = record
        return task

    @property
    def id(self) -> str:
        return str(self._task.task_id)

    @property
    def step_name(self) -> str:
        return self._task.step_name

    @property
    def pathspec(self) -> str:  # type: ignore[override]
        return f"{self._cache.pathspec}/{self._task.step_name}/{self._task.task_id}"

    @property
    def _artifact_records(self) -> dict[str, ArtifactRecord]:
        return self._cache.artifacts(self._task)

    @property
    def data(self) -> TaskData:
        """The task's artifacts by name: ``task.data.x`` loads ``x`` when read."""
        return TaskData(self)

    @property
    def artifacts(self) -> TaskArtifacts:
        """The task's artifacts as :class:`DataArtifact` objects: ``task.artifacts.x.sha``."""
        return TaskArtifacts(self)

    def __getitem__(self, name: str) -> DataArtifact:
        record = self._artifact_records.get(name)
        if record is None:
            names = sorted(self._artifact_records)
            raise NotFoundError(
                f"Task {self.pathspec} has no artifact {name!r}.{suggest(name, names)} "
                f"Its artifacts: {listing(names)}."
            )
        return DataArtifact._make(self, record)

    def __iter__(self) -> Iterator[DataArtifact]:
        records = self._artifact_records
        return iter([DataArtifact._make(self, records[name]) for name in sorted(records)])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._artifact_records

    @property
    def status(self) -> str:
        """``'running'``, ``'succeeded'`` or ``'failed'``."""
        return self._task.status

    @property
    def successful(self) -> bool:
        return self._task.status == "succeeded"

    @property
    def finished(self) -> bool:
        """True when the task ended, successfully or not."""
        return self._task.status in ("succeeded", "failed")

    @property
    def created_at(self) -> datetime:
        return self._task.started_at

    @property
    def finished_at(self) -> datetime | None:
        return self._task.finished_at

    @property
    def stdout(self) -> str:
        """What the task printed to standard output ('' if nothing was captured)."""
        return self._log(self._task.stdout_key)

    @property
    def stderr(self) -> str:
        """What the task printed to standard error ('' if nothing was captured)."""
        return self._log(self._task.stderr_key)

    def _log(self, key: str | None) -> str:
        if not key:
            return ""
        return self._cache.stores.artifacts.get_bytes(key).decode("utf-8", errors="replace")

    @property
    def exception(self) -> str | None:
        """The error the task failed with (its traceback text), or None."""
        return self._task.error

    @property
    def index(self) -> int | None:
        """Position of this task in its innermost foreach, or None outside a foreach."""
        stack = self._task.foreach_stack or []
        if not stack:
            return None
        index: int | None = stack[-1].get("index")
        return index

    @property
    def retry_count(self) -> int:
        """Which attempt this is: 0 for the first, 1 after one retry, ..."""
        return self._task.attempt

    @property
    def input_task_ids(self) -> list[int]:
        """Ids of the tasks whose outputs this task read."""
        return list(self._task.input_task_ids or [])

    @property
    def parent_task_pathspecs(self) -> list[str]:
        """Pathspecs of the tasks whose outputs this task read."""
        out = []
        for task_id in self.input_task_ids:
            parent = self._cache.task(task_id)
            if parent is not None:
                out.append(f"{self._cache.pathspec}/{parent.step_name}/{task_id}")
        return out


class DataArtifact(_InRun):
    """One named value a task stored; ``.data`` loads it."""

    _task: TaskRecord
    _artifact: ArtifactRecord

    def __init__(self, pathspec: str, _namespace_check: bool = True) -> None:
        *task_parts, name = split_pathspec(
            pathspec, "artifact", ("FlowName", "RunId", "StepName", "TaskId", "Name")
        )
        task = Task("/".join(task_parts), _namespace_check)
        artifact = task[name]
        self._cache = artifact._cache
        self._task = artifact._task
        self._artifact = artifact._artifact

    @classmethod
    def _make(cls, task: Task, record: ArtifactRecord) -> DataArtifact:
        artifact = cls.__new__(cls)
        artifact._cache = task._cache
        artifact._task = task._task
        artifact._artifact = record
        return artifact

    @property
    def id(self) -> str:
        """The artifact's name."""
        return self._artifact.name

    @property
    def pathspec(self) -> str:  # type: ignore[override]
        t = self._task
        return f"{self._cache.pathspec}/{t.step_name}/{t.task_id}/{self._artifact.name}"

    @property
    def data(self) -> Any:
        """The stored value, loaded from the artifact store now (a fresh copy each time)."""
        return self._cache.stores.artifacts.get(self._artifact.key)

    @property
    def sha(self) -> str:
        """The content key: the same value stored twice has the same sha."""
        return self._artifact.key

    @property
    def size(self) -> int:
        """Size of the stored bytes."""
        return self._artifact.size

    @property
    def created_at(self) -> datetime:
        return self._task.started_at

    @property
    def finished_at(self) -> datetime | None:
        """When the task that stored it finished."""
        return self._task.finished_at


class TaskData:
    """A task's artifact values as attributes: ``task.data.x``, ``"x" in task.data``."""

    __slots__ = ("_task",)

    def __init__(self, task: Task) -> None:
        self._task = task

    def _records(self) -> dict[str, ArtifactRecord]:
        return self._task._artifact_records

    def __getattr__(self, name: str) -> Any:
        # Dunder probes (copy, pickle, IPython) and a missing slot must not reach the store.
        if name.startswith("__") or name == "_task":
            raise AttributeError(name)
        record = self._records().get(name)
        if record is None:
            names = sorted(self._records())
            raise AttributeError(
                f"Task {self._task.pathspec} has no artifact {name!r}."
                f"{suggest(name, names)} Its artifacts: {listing(names)}."
            )
        return self._task._cache.stores.artifacts.get(record.key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._records()

    def __dir__(self) -> list[str]:
        return sorted(self._records())

    def __repr__(self) -> str:
        return f"<TaskData {self._task.pathspec}: {', '.join(sorted(self._records()))}>"


class TaskArtifacts:
    """A task's artifacts as :class:`DataArtifact` attributes: ``task.artifacts.x``."""

    __slots__ = ("_task",)

    def __init__(self, task: Task) -> None:
        self._task = task

    def __getattr__(self, name: str) -> DataArtifact:
        if name.startswith("__") or name == "_task":
            raise AttributeError(name)
        try:
            return self._task[name]
        except NotFoundError as exc:
            raise AttributeError(str(exc)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._task

    def __iter__(self) -> Iterator[DataArtifact]:
        return iter(self._task)

    def __dir__(self) -> list[str]:
        return sorted(self._task._artifact_records)

    def __repr__(self) -> str:
        return f"<TaskArtifacts {self._task.pathspec}>"
