"""Run one task of a flow: the part of the runtime that executes in a worker.

The coordinator sends a :class:`TaskSpec`; the worker (a local worker process or a
Dask worker) calls :func:`execute_task`, which runs the step, persists the artifacts
it set or touched, and returns a :class:`TaskResult`. Workers never touch the
metadata database: the coordinator records results in batches.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inloop.errors import FlowError
from inloop.flow.capture import OutputCapture
from inloop.flow.current import TaskContext, current
from inloop.flow.spec import FlowSpec, Inputs, _TaskState

if TYPE_CHECKING:
    from inloop.store.artifacts import ArtifactStore

# Artifact name -> (content key, size in bytes).
ArtifactMap = dict[str, tuple[str, int]]

_MAX_LOG_ECHO = 64 * 1024  # bytes of output sent back for the console; the rest is stored


class TaskTimeoutError(FlowError):
    """A step ran longer than its ``@timeout``."""


class CaughtException:
    """What ``@catch(var=...)`` stores when a step fails: the error, kept as text."""

    def __init__(self, exc: BaseException, formatted: str) -> None:
        self.type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        self.message = str(exc)
        self.traceback = formatted

    def __repr__(self) -> str:
        return f"CaughtException({self.type}: {self.message})"

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass
class InputRef:
    """A finished task whose artifacts feed the task to run."""

    task_id: int
    step_name: str
    artifacts: ArtifactMap
    foreach_stack: list[dict[str, Any]]


@dataclass
class TaskSpec:
    """Everything a worker needs to run one attempt of one task."""

    flow_name: str
    run_id: int
    step_name: str
    task_id: int
    attempt: int
    inputs: list[InputRef]
    foreach_stack: list[dict[str, Any]]
    context: TaskContext
    parameter_names: tuple[str, ...] = ()
    is_join: bool = False
    max_num_splits: int = 10_000
    timeout: float | None = None
    catch: dict[str, Any] | None = None  # set only on the last attempt of a @catch step
    static_transition: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.task_id, self.attempt)


@dataclass
class TaskResult:
    """The outcome of one attempt, as sent back to the coordinator."""

    task_id: int
    attempt: int
    ok: bool
    artifacts: ArtifactMap = field(default_factory=dict)
    transition: dict[str, Any] | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_key: str | None = None
    stderr_key: str | None = None
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _alarm(seconds: float | None, step_name: str) -> Iterator[None]:
    # SIGALRM works only in the main thread; elsewhere the coordinator's deadline applies.
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeoutError(f"Step {step_name!r} timed out after {seconds:g} s (@timeout).")

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _format_error(exc: BaseException) -> str:
    # Drop the runtime's own frames so the trace starts in the user's step.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _persist(flow: FlowSpec, state: _TaskState, sizes: dict[str, int]) -> ArtifactMap:
    out: ArtifactMap = {name: (key, sizes.get(key, 0)) for name, key in state.inherited.items()}
    for name, value in list(flow.__dict__.items()):
        if name.startswith("_") or name in state.parameter_names:
            continue
        try:
            stored = state.store.put(value)
        except Exception as exc:
            raise FlowError(
                f"Step {state.step_name!r}: artifact {name!r} of type {type(value).__name__} "
                f"cannot be stored ({exc}). Make it picklable, or `del self.{name}` before "
                "the step ends."
            ) from exc
        out[name] = (stored.key, stored.size)
    return out


def _build(
    flow_cls: type[FlowSpec], spec: TaskSpec, store: ArtifactStore
) -> tuple[FlowSpec, _TaskState, Inputs | None, dict[str, int]]:
    params = frozenset(spec.parameter_names)
    sizes = {key: size for ref in spec.inputs for key, size in ref.artifacts.values()}
    inputs = None
    if spec.is_join:
        first = spec.inputs[0].artifacts
        inherited = {name: first[name][0] for name in spec.parameter_names if name in first}
        inputs = Inputs(
            [
                flow_cls._for_task(
                    _TaskState(
                        store=store,
                        step_name=ref.step_name,
                        inherited={n: k for n, (k, _) in ref.artifacts.items()},
                        foreach_stack=ref.foreach_stack,
                        parameter_names=params,
                    )
                )
                for ref in spec.inputs
            ]
        )
    elif spec.inputs:
        inherited = {n: k for n, (k, _) in spec.inputs[0].artifacts.items()}
    else:
        inherited = {}
    state = _TaskState(
        store=store,
        step_name=spec.step_name,
        inherited=inherited,
        foreach_stack=spec.foreach_stack,
        parameter_names=params,
        is_join=spec.is_join,
        max_num_splits=spec.max_num_splits,
    )
    return flow_cls._for_task(state), state, inputs, sizes


def execute_task(flow_cls: type[FlowSpec], spec: TaskSpec, store: ArtifactStore) -> TaskResult:
    """Run one attempt of a task and persist its artifacts; never raises for step errors."""
    result = TaskResult(task_id=spec.task_id, attempt=spec.attempt, ok=False)
    result.started_at = time.time()
    capture = OutputCapture()
    flow: FlowSpec | None = None
    state: _TaskState | None = None
    sizes: dict[str, int] = {}
    with capture, _environment(spec.env):
        current._set(spec.context)
        try:
            flow, state, inputs, sizes = _build(flow_cls, spec, store)
            func = getattr(flow_cls, spec.step_name)
            with _alarm(spec.timeout, spec.step_name):
                if inputs is not None:
                    func(flow, inputs)
                else:
                    func(flow)
            _check_transition(spec, state)
            result.artifacts = _persist(flow, state, sizes)
            result.transition = state.transition
            result.ok = True
        except BaseException as exc:  # the step's own errors, timeouts, and KeyboardInterrupt
            formatted = _format_error(exc)
            if spec.catch is not None and flow is not None and state is not None:
                _recover(spec, flow, state, sizes, exc, formatted, result)
            else:
                print(formatted, file=sys.stderr, end="")
                result.error = formatted
        finally:
            current._set(None)
    result.finished_at = time.time()
    result.stdout = capture.stdout.getvalue()
    result.stderr = capture.stderr.getvalue()
    if result.stdout:
        result.stdout_key = store.put_bytes(result.stdout.encode()).key
    if result.stderr:
        result.stderr_key = store.put_bytes(result.stderr.encode()).key
    result.stdout = result.stdout[-_MAX_LOG_ECHO:]
    result.stderr = result.stderr[-_MAX_LOG_ECHO:]
    return result


def _check_transition(spec: TaskSpec, state: _TaskState) -> None:
    if spec.step_name == "end":
        if state.transition is not None:
            raise FlowError("The end step must not call self.next().")
    elif state.transition is None:
        raise FlowError(
            f"Step {spec.step_name!r} finished without calling self.next(); call it as the "
            "last statement of the step."
        )


def _recover(
    spec: TaskSpec,
    flow: FlowSpec,
    state: _TaskState,
    sizes: dict[str, int],
    exc: BaseException,
    formatted: str,
    result: TaskResult,
) -> None:
    """Apply ``@catch``: store the error as an artifact and follow the static graph."""
    catch = spec.catch or {}
    if catch.get("print_exception", True):
        print(f"@catch caught an exception in step {spec.step_name!r}:", file=sys.stderr)
        print(formatted, file=sys.stderr, end="")
    transition = spec.static_transition
    if transition is not None and transition.get("kind") == "foreach":
        result.error = (
            f"{formatted}\n@catch cannot recover step {spec.step_name!r}: it fans out with "
            "foreach, so the number of next tasks is unknown."
        )
        return
    var = catch.get("var")
    if var:
        flow.__dict__[var] = CaughtException(exc, formatted)
    try:
        result.artifacts = _persist(flow, state, sizes)
    except FlowError as persist_error:
        result.error = f"{formatted}\n{persist_error}"
        return
    result.transition = transition
    result.error = formatted
    result.ok = True
