"""The coordinator: schedules a run's tasks and records what happens.

One process (the one that ran ``python flow.py run``, or a notebook calling
``Runner``) owns a run. It walks the graph: a finished task's ``self.next(...)``
decides which tasks come next; a join waits until all its inputs are done. Tasks go
to an executor; their results are written to the metadata store in batches, so a
thousand trivial tasks cost a few queries, not thousands.

``resume`` is the same loop with one difference: a task whose step is not being
rerun, whose inputs were themselves reused, and which succeeded in the origin run
is *cloned* — recorded again with the origin's artifact keys — instead of run.
"""

from __future__ import annotations

import collections
import heapq
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from inloop.errors import FlowDefinitionError, FlowError, ResumeError, TaskFailedError
from inloop.flow.current import TaskContext
from inloop.flow.decorators import flow_decorators, get_decorator, ignored_decorator_warning
from inloop.flow.executors.base import Completion, Executor, make_executor
from inloop.flow.graph import FlowGraph, build_graph, check_graph
from inloop.flow.parameters import flow_parameters, resolve_parameters
from inloop.flow.progress import RunProgress
from inloop.flow.spec import FlowSpec
from inloop.flow.task import ArtifactMap, InputRef, TaskResult, TaskSpec
from inloop.flow.user import get_username, user_namespace
from inloop.settings import Settings, get_settings
from inloop.store import ArtifactRecord, RunRecord, RunStore, TaskRecord, open_artifact_store
from inloop.store.artifacts import ArtifactStore

_FLUSH_SECONDS = 0.25
_FLUSH_ROWS = 2000
_HEARTBEAT_SECONDS = 10.0
_PARAMS_TASK = 0  # pseudo task whose "artifacts" are the run's parameters


class InloopWarning(UserWarning):
    """A flow uses something inloop accepts but ignores (cloud-only decorators)."""


@dataclass
class RunOptions:
    """How to run a flow; every field has a laptop default."""

    tags: Sequence[str] = ()
    max_workers: int | None = None
    max_num_splits: int | None = None
    with_decorators: Sequence[str] = ()  # e.g. "retry", "retry:times=2,minutes_between_retries=0"
    executor: str | None = None
    quiet: bool = False
    run_id_file: str | None = None
    origin_run_id: int | None = None  # resume: the run to reuse
    resume_step: str | None = None  # resume: rerun from this step (default: what failed)
    console: Console | None = None


@dataclass
class _Task:
    task_id: int
    step: str
    stack: list[dict[str, Any]]
    input_ids: list[int]
    attempt: int = 0
    status: str = "pending"
    artifacts: ArtifactMap = field(default_factory=dict)
    transition: dict[str, Any] | None = None
    cloned: bool = False
    started_at: datetime | None = None
    record: TaskRecord | None = None


def _stack_key(stack: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((str(f["step"]), int(f["index"])) for f in stack)


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        text = repr(value)
        return text if len(text) <= 200 else text[:197] + "..."


def parse_with(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``--with retry:times=2,minutes_between_retries=0`` into a name and arguments."""
    name, _, rest = spec.partition(":")
    args: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, raw = part.partition("=")
        if not sep:
            raise FlowError(f"--with {spec!r}: expected name:key=value,...; got {part!r}.")
        try:
            args[key.strip()] = json.loads(raw)
        except ValueError:
            args[key.strip()] = raw
    if name not in ("retry", "catch", "timeout", "environment", "resources"):
        raise FlowError(
            f"--with {name!r} is not a decorator inloop can add to every step; use one of "
            "retry, catch, timeout, environment, resources."
        )
    # Validate through the decorator itself so --with gets the same checks as @retry(...).
    from inloop.flow import decorators

    def probe() -> None:
        return None

    factory = getattr(decorators, name)
    factory(**args)(probe) if args or name == "timeout" else factory(probe)
    deco = decorators.get_decorator(probe, name)
    return name, dict(deco.attributes) if deco is not None else args


class Runtime:
    """Runs (or resumes) one flow once. Use :func:`run_flow` or :func:`resume_flow`."""

    def __init__(
        self,
        flow_cls: type[FlowSpec],
        options: RunOptions,
        *,
        settings: Settings | None = None,
        run_store: RunStore | None = None,
        artifact_store: ArtifactStore | None = None,
        graph: FlowGraph | None = None,
    ) -> None:
        self.flow_cls = flow_cls
        self.flow_name = flow_cls.__name__
        self.options = options
        self.settings = settings or get_settings()
        self.graph = graph or build_graph(flow_cls)
        problems = check_graph(self.graph, flow_parameters(flow_cls))
        if problems:
            raise FlowDefinitionError(
                f"{self.flow_name} breaks {len(problems)} rule(s):\n"
                + "\n".join(f"  - {p}" for p in problems),
                step=problems[0].step,
                line=problems[0].line,
            )
        self.run_store = run_store or RunStore()
        self.artifacts = artifact_store or open_artifact_store()
        self.artifacts.check_backend()  # a missing s3fs fails here, not in every task
        self.console = options.console or Console(stderr=False)
        self.max_workers = options.max_workers or self.settings.max_workers or os.cpu_count() or 1
        self.max_num_splits = options.max_num_splits or self.settings.max_num_splits
        self.username = get_username()
        self.param_names = tuple(flow_parameters(flow_cls))
        self._step_options = self._collect_step_options()
        self._join_kind = self._join_kinds()
        self._tasks: dict[int, _Task] = {}
        self._next_task_id = 1
        self._ready: collections.deque[_Task] = collections.deque()
        self._delayed: list[tuple[float, int, _Task]] = []
        self._joins: dict[tuple[Any, ...], dict[Any, int]] = {}
        self._in_flight = 0
        self._failed: list[_Task] = []
        self._pending_tasks: dict[int, TaskRecord] = {}
        self._pending_artifacts: list[ArtifactRecord] = []
        self._last_flush = time.monotonic()
        self._last_heartbeat = time.monotonic()
        self._origin: dict[tuple[str, tuple[tuple[str, int], ...]], TaskRecord] = {}
        self._origin_artifacts: dict[int, ArtifactMap] = {}
        self._forced: set[str] = set()
        self.run: RunRecord | None = None

    # -- set-up --------------------------------------------------------------
    def _collect_step_options(self) -> dict[str, dict[str, Any]]:
        added = [parse_with(spec) for spec in self.options.with_decorators]
        result: dict[str, dict[str, Any]] = {}
        for name, node in self.graph.nodes.items():
            opts: dict[str, Any] = {}
            for deco_name in ("retry", "catch", "timeout", "resources", "environment"):
                deco = get_decorator(node.func, deco_name)
                if deco is not None:
                    opts[deco_name] = dict(deco.attributes)
            for deco_name, args in added:
                opts.setdefault(deco_name, args)
            result[name] = opts
        return result

    def _join_kinds(self) -> dict[str, str]:
        kinds: dict[str, str] = {}
        for node in self.graph.nodes.values():
            if node.matching_join:
                kinds[node.matching_join] = node.transition
        return kinds

    def _max_attempts(self, step: str) -> int:
        retry = self._step_options[step].get("retry")
        return 1 + int(retry.get("times", 3)) if retry is not None else 1

    def _retry_delay(self, step: str) -> float:
        retry = self._step_options[step].get("retry") or {}
        return 60.0 * float(retry.get("minutes_between_retries", 2))

    def _timeout(self, step: str) -> float | None:
        t = self._step_options[step].get("timeout")
        if not t:
            return None
        total = (
            float(t.get("seconds", 0) or 0)
            + 60 * float(t.get("minutes", 0) or 0)
            + 3600 * float(t.get("hours", 0) or 0)
        )
        return total or None

    # -- the run ---------------------------------------------------------------
    def execute(self, parameters: Mapping[str, Any] | None = None) -> RunRecord:
        """Run (or resume) the flow to the end; returns the finished run's record."""
        warning = ignored_decorator_warning(self.flow_cls)
        if warning:
            warnings.warn(warning, InloopWarning, stacklevel=3)
        origin = self._load_origin() if self.options.origin_run_id is not None else None
        if origin is not None:
            param_map, param_json = self._origin_parameters(origin)
        else:
            param_map, param_json = self._store_parameters(parameters or {})
        project = self._project()
        system_tags = {user_namespace(self.username), "runtime:inloop"}
        system_tags.add(f"python_version:{sys.version.split()[0]}")
        if project:
            system_tags |= {f"project:{project[0]}", f"project_branch:{project[1]}"}
        if origin is not None:
            system_tags.add(f"origin_run_id:{origin.run_id}")
        executor = make_executor(self.options.executor or self.settings.executor, self.max_workers)
        self.run = self.run_store.create_run(
            self.flow_name,
            self.username,
            tags=list(self.options.tags),
            system_tags=sorted(system_tags),
            parameters=param_json,
            origin_run_id=origin.run_id if origin else None,
            executor=executor.name,
            host=socket.gethostname(),
        )
        if self.options.run_id_file:
            with open(self.options.run_id_file, "w") as fh:
                fh.write(str(self.run.run_id))
        self._context_base: dict[str, Any] = {
            "flow_name": self.flow_name,
            "run_id": str(self.run.run_id),
            "username": self.username,
            "origin_run_id": str(origin.run_id) if origin else None,
            "tags": frozenset(self.run.tags | self.run.system_tags),
            "namespace": user_namespace(self.username),
            "project_name": project[0] if project else None,
            "branch_name": project[1] if project else None,
        }
        verb = "Resuming" if origin else "Running"
        progress = RunProgress(
            self.console,
            f"{verb} {self.flow_name}/{self.run.run_id}",
            self.graph.topological(),
            quiet=self.options.quiet,
        )
        self.progress = progress
        progress.note(
            f"[bold]{verb} {self.flow_name}/{self.run.run_id}[/bold] on {executor.describe()}"
            + (f", reusing run {origin.run_id}" if origin else "")
        )
        status, error = "failed", None
        started = time.monotonic()
        try:
            executor.start(self.flow_cls, self.artifacts)
            with progress:
                self._schedule("start", [], [_PARAMS_TASK], inputs_override=param_map)
                self._loop(executor, progress)
            if self._failed:
                error = self._failure_summary()
            else:
                status = "succeeded"
        except KeyboardInterrupt:
            error = "interrupted (Ctrl-C)"
            kill = getattr(executor, "kill_all", None)
            if kill is not None:
                kill()
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            executor.shutdown()
            self._flush(force=True)
            self.run_store.finish_run(self.run.run_id, status, error)
            elapsed = time.monotonic() - started
            count = len(self._tasks)
            if status == "succeeded":
                progress.note(
                    f"[green]Run {self.flow_name}/{self.run.run_id} succeeded[/green] "
                    f"in {elapsed:.2f} s ({count} tasks)."
                )
            else:
                progress.note(
                    f"[red]Run {self.flow_name}/{self.run.run_id} failed[/red] after "
                    f"{elapsed:.2f} s: {error}"
                )
        record = self.run_store.get_run(self.run.run_id)
        assert record is not None  # written above by this process
        return record

    def _failure_summary(self) -> str:
        task = self._failed[0]
        names = ", ".join(sorted({t.step for t in self._failed}))
        pathspec = f"{self.flow_name}/{self.run.run_id if self.run else '?'}"
        return (
            f"step(s) {names} failed (first: {pathspec}/{task.step}/{task.task_id}). Fix it and "
            f"resume with `python {self._flow_file()} resume --origin-run-id "
            f"{self.run.run_id if self.run else '?'}`."
        )

    def _flow_file(self) -> str:
        module = sys.modules.get(self.flow_cls.__module__)
        path = getattr(module, "__file__", None)
        return os.path.basename(path) if path else "flow.py"

    def _project(self) -> tuple[str, str] | None:
        for deco in flow_decorators(self.flow_cls):
            if deco.name == "project":
                return str(deco.attributes["name"]), f"user.{self.username}"
        return None

    def _store_parameters(self, given: Mapping[str, Any]) -> tuple[ArtifactMap, dict[str, Any]]:
        values = resolve_parameters(self.flow_cls, given)
        stored: ArtifactMap = {}
        for name, value in values.items():
            item = self.artifacts.put(value)
            stored[name] = (item.key, item.size)
        return stored, {name: _jsonable(value) for name, value in values.items()}

    # -- scheduling --------------------------------------------------------------
    def _schedule(
        self,
        step: str,
        stack: list[dict[str, Any]],
        input_ids: list[int],
        inputs_override: ArtifactMap | None = None,
    ) -> None:
        task = _Task(task_id=self._next_task_id, step=step, stack=stack, input_ids=input_ids)
        self._next_task_id += 1
        self._tasks[task.task_id] = task
        if inputs_override is not None:
            task.artifacts = inputs_override  # start: its inputs are the parameters
        self._ready.append(task)

    def _loop(self, executor: Executor, progress: RunProgress) -> None:
        capacity = executor.capacity
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                self._ready.append(heapq.heappop(self._delayed)[2])
            while self._ready and not self._failed:
                task = self._ready[0]
                if self._try_clone(task):
                    self._ready.popleft()
                    continue
                if self._in_flight >= capacity:
                    break
                self._ready.popleft()
                self._submit(executor, task)
            if self._failed:
                self._ready.clear()
                self._delayed.clear()
            if self._in_flight == 0 and not self._ready and not self._delayed:
                break
            wait_for = 1.0
            if self._delayed:
                wait_for = min(wait_for, max(0.0, self._delayed[0][0] - time.monotonic()))
            for completion in executor.wait(wait_for if self._in_flight else min(wait_for, 0.05)):
                self._complete(completion)
            self._flush()
            progress.refresh()

    def _submit(self, executor: Executor, task: _Task) -> None:
        node = self.graph[task.step]
        options = self._step_options[task.step]
        last_attempt = task.attempt == self._max_attempts(task.step) - 1
        catch = options.get("catch") if last_attempt else None
        if task.input_ids == [_PARAMS_TASK]:
            inputs = [InputRef(_PARAMS_TASK, "_parameters", task.artifacts, [])]
        else:
            inputs = [
                InputRef(i, self._tasks[i].step, self._tasks[i].artifacts, self._tasks[i].stack)
                for i in task.input_ids
            ]
        static = None
        if node.transition != "end":
            static = {"kind": node.transition, "out": list(node.out)}
        spec = TaskSpec(
            flow_name=self.flow_name,
            run_id=self.run.run_id if self.run else 0,
            step_name=task.step,
            task_id=task.task_id,
            attempt=task.attempt,
            inputs=inputs,
            foreach_stack=task.stack,
            context=TaskContext(
                step_name=task.step,
                task_id=str(task.task_id),
                retry_count=task.attempt,
                **self._context_base,
            ),
            parameter_names=self.param_names,
            is_join=node.is_join,
            max_num_splits=self.max_num_splits,
            timeout=self._timeout(task.step),
            catch=dict(catch) if catch is not None else None,
            static_transition=static,
            env={
                str(k): str(v)
                for k, v in (options.get("environment") or {}).get("vars", {}).items()
            }
            if options.get("environment")
            else {},
        )
        executor.submit(spec, options.get("resources"))
        self._in_flight += 1
        task.status = "running"
        task.started_at = _now()
        self.progress.started_task(task.step)
        self._record(task)

    def _complete(self, completion: Completion) -> None:
        self._in_flight -= 1
        spec = completion.spec
        task = self._tasks[spec.task_id]
        result = completion.result
        if result is not None and (result.stdout or result.stderr):
            self._echo(task, result)
        if result is not None and result.ok:
            task.status = "succeeded"
            task.artifacts = result.artifacts
            task.transition = result.transition
            self.progress.finished_task(task.step, ok=True)
            self._record(task, result)
            self._follow(task)
            return
        reason = result.error if result is not None else completion.failure
        if task.attempt + 1 < self._max_attempts(task.step):
            self.progress.retrying_task(task.step)
            self.progress.note(
                f"[yellow]{self._pathspec(task)} failed (attempt {task.attempt + 1}); "
                f"retrying[/yellow]: {self._last_line(reason)}"
            )
            self._record(task, result, error=reason, status="running")
            task.attempt += 1
            delay = self._retry_delay(task.step)
            heapq.heappush(self._delayed, (time.monotonic() + delay, task.task_id, task))
            return
        catches = self._step_options[task.step].get("catch") is not None
        if result is None and catches and self._catch_lost_worker(task, reason or "lost"):
            return
        task.status = "failed"
        self._failed.append(task)
        self.progress.finished_task(task.step, ok=False)
        self._record(task, result, error=reason, status="failed")
        self.progress.note(f"[red]{self._pathspec(task)} failed[/red]:")
        self.progress.print((reason or "").rstrip())

    def _catch_lost_worker(self, task: _Task, reason: str) -> bool:
        """Apply @catch when the worker died or was stopped, so no step code could."""
        node = self.graph[task.step]
        if node.transition == "foreach" or node.is_join:
            return False
        from inloop.flow.task import CaughtException

        catch = self._step_options[task.step]["catch"] or {}
        parent = self._tasks[task.input_ids[0]] if task.input_ids != [_PARAMS_TASK] else task
        artifacts = dict(parent.artifacts)
        if catch.get("var"):
            item = self.artifacts.put(CaughtException(FlowError(reason), reason))
            artifacts[str(catch["var"])] = (item.key, item.size)
        task.status = "succeeded"
        task.artifacts = artifacts
        task.transition = (
            {"kind": node.transition, "out": list(node.out)} if node.transition != "end" else None
        )
        self.progress.finished_task(task.step, ok=True)
        self._record(task, None, error=reason, status="succeeded")
        self._follow(task)
        return True

    def _pathspec(self, task: _Task) -> str:
        return f"{self.flow_name}/{self.run.run_id if self.run else '?'}/{task.step}/{task.task_id}"

    @staticmethod
    def _last_line(text: str | None) -> str:
        lines = [line for line in (text or "").strip().splitlines() if line.strip()]
        return lines[-1] if lines else "unknown error"

    def _echo(self, task: _Task, result: TaskResult) -> None:
        prefix = f"[{task.step}/{task.task_id}]"
        stderr = result.stderr
        if result.error and not result.ok:
            stderr = stderr.replace(result.error, "")  # printed once, with the failure
        for stream in (result.stdout, stderr):
            for line in stream.rstrip("\n").splitlines():
                self.progress.print(f"{prefix} {line}")

    def _follow(self, task: _Task) -> None:
        """Schedule what comes after a finished task."""
        transition = task.transition
        if task.step == "end" or transition is None:
            return
        out = list(transition["out"])
        if transition["kind"] == "foreach":
            n = int(transition["num_splits"])
            var = str(transition["var"])
            for i in range(n):
                frame = {"step": task.step, "var": var, "index": i, "num_splits": n}
                self._next(out[0], [*task.stack, frame], task)
        else:
            for target in out:
                self._next(target, list(task.stack), task)

    def _next(self, step: str, stack: list[dict[str, Any]], parent: _Task) -> None:
        node = self.graph[step]
        if not node.is_join:
            self._schedule(step, stack, [parent.task_id])
            return
        if self._join_kind.get(step) == "foreach":
            inner = stack[-1]
            key: tuple[Any, ...] = (step, _stack_key(stack[:-1]))
            slot: Any = int(inner["index"])
            expected = int(inner["num_splits"])
            join_stack = stack[:-1]
        else:
            key = (step, _stack_key(stack))
            slot = parent.step
            expected = len(node.in_steps)
            join_stack = stack
        arrived = self._joins.setdefault(key, {})
        arrived[slot] = parent.task_id
        if len(arrived) == expected:
            del self._joins[key]
            if isinstance(slot, int):
                order = [arrived[i] for i in sorted(arrived)]
            else:
                order = [arrived[s] for s in node.in_steps if s in arrived]
            self._schedule(step, join_stack, order)

    # -- resume ------------------------------------------------------------------
    def _load_origin(self) -> RunRecord:
        origin_id = self.options.origin_run_id
        assert origin_id is not None
        origin = self.run_store.get_run(int(origin_id))
        if origin is None or origin.flow_name != self.flow_name:
            raise ResumeError(
                f"No run {self.flow_name}/{origin_id} to resume. List runs with "
                f"`inloop runs {self.flow_name}`."
            )
        step = self.options.resume_step
        if step is not None and step not in self.graph:
            raise ResumeError(
                f"Cannot resume from step {step!r}: {self.flow_name} has steps "
                f"{', '.join(self.graph.topological())}."
            )
        records = self.run_store.get_tasks(origin.run_id)
        artifacts = self.run_store.get_artifacts(origin.run_id)
        for record in records:
            if record.status == "succeeded" and record.step_name in self.graph:
                self._origin[(record.step_name, _stack_key(record.foreach_stack))] = record
                self._origin_artifacts[record.task_id] = {
                    name: (a.key, a.size) for name, a in artifacts.get(record.task_id, {}).items()
                }
        if step is not None:
            self._forced = self._descendants(step)
        return origin

    def _descendants(self, step: str) -> set[str]:
        seen, todo = set(), [step]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.graph[name].out)
        return seen

    def _origin_parameters(self, origin: RunRecord) -> tuple[ArtifactMap, dict[str, Any]]:
        start = self._origin.get(("start", ()))
        source: ArtifactMap = {}
        if start is not None:
            source = self._origin_artifacts[start.task_id]
        else:
            for record in self.run_store.get_tasks(origin.run_id, "start"):
                arts = self.run_store.get_artifacts(origin.run_id, [record.task_id])
                source = {n: (a.key, a.size) for n, a in arts.get(record.task_id, {}).items()}
        missing = [n for n in self.param_names if n not in source]
        if missing and self.param_names:
            if not source:
                return self._store_parameters(origin.parameters or {})
            raise ResumeError(
                f"Run {self.flow_name}/{origin.run_id} has no value for parameter(s) "
                f"{', '.join(missing)}; start a new run instead."
            )
        return {n: source[n] for n in self.param_names}, dict(origin.parameters or {})

    def _try_clone(self, task: _Task) -> bool:
        if not self._origin or task.step in self._forced or task.attempt:
            return False
        if task.input_ids != [_PARAMS_TASK] and not all(
            self._tasks[i].cloned for i in task.input_ids
        ):
            return False
        record = self._origin.get((task.step, _stack_key(task.stack)))
        if record is None:
            return False
        task.cloned = True
        task.status = "succeeded"
        task.artifacts = self._origin_artifacts[record.task_id]
        task.transition = record.transition
        task.started_at = record.started_at
        self.progress.finished_task(task.step, ok=True, cloned=True)
        self._record(task, origin=record)
        self._follow(task)
        return True

    # -- recording -----------------------------------------------------------------
    def _record(
        self,
        task: _Task,
        result: TaskResult | None = None,
        *,
        error: str | None = None,
        status: str | None = None,
        origin: TaskRecord | None = None,
    ) -> None:
        run_id = self.run.run_id if self.run else 0
        finished = None
        if result is not None and status in (None, "succeeded", "failed"):
            finished = datetime.fromtimestamp(result.finished_at, UTC)
        elif task.status in ("succeeded", "failed") and origin is None:
            finished = _now()
        record = TaskRecord(
            run_id=run_id,
            task_id=task.task_id,
            step_name=task.step,
            status=status or task.status,
            attempt=task.attempt,
            foreach_stack=task.stack,
            input_task_ids=[i for i in task.input_ids if i != _PARAMS_TASK],
            transition=task.transition,
            started_at=task.started_at or _now(),
            finished_at=origin.finished_at if origin else finished,
            stdout_key=origin.stdout_key if origin else (result.stdout_key if result else None),
            stderr_key=origin.stderr_key if origin else (result.stderr_key if result else None),
            error=error if error is not None else (result.error if result else None),
            cloned_from={"run_id": origin.run_id, "task_id": origin.task_id} if origin else None,
        )
        self._pending_tasks[task.task_id] = record
        if record.status == "succeeded":
            self._pending_artifacts.extend(
                ArtifactRecord(run_id, task.task_id, name, key, size)
                for name, (key, size) in task.artifacts.items()
            )
        rows = len(self._pending_tasks) + len(self._pending_artifacts)
        if rows >= _FLUSH_ROWS:
            self._flush(force=True)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.run is not None and now - self._last_heartbeat > _HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            self.run_store.heartbeat(self.run.run_id)
        if not force and now - self._last_flush < _FLUSH_SECONDS:
            return
        self._last_flush = now
        if self._pending_tasks or self._pending_artifacts:
            tasks, arts = list(self._pending_tasks.values()), self._pending_artifacts
            self._pending_tasks, self._pending_artifacts = {}, []
            self.run_store.write_tasks(tasks, arts)


def run_flow(
    flow_cls: type[FlowSpec],
    parameters: Mapping[str, Any] | None = None,
    options: RunOptions | None = None,
    **kwargs: Any,
) -> RunRecord:
    """Run ``flow_cls`` to the end and return its run record; raises if it failed."""
    runtime = Runtime(flow_cls, options or RunOptions(), **kwargs)
    record = runtime.execute(parameters)
    if record.status != "succeeded":
        raise TaskFailedError(f"Run {record.flow_name}/{record.run_id} failed: {record.error}")
    return record
