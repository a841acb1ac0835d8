"""The local executor: a pool of long-lived worker processes.

Workers are forked once per run and then take task after task over a pipe, so a
task costs a message, not a new interpreter. Each worker may hold a short queue of
tasks so it never waits on the coordinator. A worker that dies (even by SIGKILL)
fails only the task it was running; the others in its queue are sent elsewhere and
a fresh worker takes its place. A ``@timeout`` that the step's own alarm cannot
enforce (a hang in C code) ends with the coordinator killing the worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from inloop.flow.executors.base import Completion, Executor
from inloop.flow.task import execute_task

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from inloop.flow.spec import FlowSpec
    from inloop.flow.task import TaskSpec
    from inloop.store.artifacts import ArtifactStore

_PREFETCH = 2  # tasks queued per worker; 2 hides the coordinator's round trip
_TIMEOUT_GRACE = 5.0  # seconds past @timeout before the worker is killed


def _worker_main(conn: Connection, flow_cls: type[FlowSpec], store: ArtifactStore) -> None:
    # Ctrl-C goes to the coordinator, which decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            break
        if spec is None:
            break
        result = execute_task(flow_cls, spec, store)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            break
    # Skip finalizers inherited from the coordinator (database pools, Rich).
    os._exit(0)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    queue: deque[TaskSpec] = field(default_factory=deque)
    head_started: float = 0.0


def _death_reason(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process (pid {process.pid}) was killed by {name}"
    return f"the worker process (pid {process.pid}) exited with code {code}"


class LocalExecutor(Executor):
    """Run tasks in ``max_workers`` forked worker processes on this machine."""

    name = "local"

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max(1, int(max_workers))
        self._workers: list[_Worker] = []
        self._ctx = mp.get_context("fork")
        self._flow_cls: type[FlowSpec] | None = None
        self._store: ArtifactStore | None = None
        self._orphans: list[TaskSpec] = []

    def describe(self) -> str:
        return f"local ({self.max_workers} worker processes)"

    @property
    def capacity(self) -> int:
        return self.max_workers * _PREFETCH

    def start(self, flow_cls: type[FlowSpec], store: ArtifactStore) -> None:
        self._flow_cls, self._store = flow_cls, store
        for _ in range(self.max_workers):
            self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, self._flow_cls, self._store),
            daemon=True,
            name="inloop-worker",
        )
        process.start()
        child.close()
        return _Worker(process=process, conn=parent)

    def submit(self, spec: TaskSpec, resources: dict[str, Any] | None = None) -> None:
        worker = min(self._workers, key=lambda w: len(w.queue))
        if not worker.queue:
            worker.head_started = time.monotonic()
        worker.queue.append(spec)
        try:
            worker.conn.send(spec)
        except (BrokenPipeError, OSError):
            pass  # the worker is dead; wait() notices and resubmits its queue

    def wait(self, timeout: float) -> list[Completion]:
        done: list[Completion] = []
        if self._orphans:
            orphans, self._orphans = self._orphans, []
            for spec in orphans:
                self.submit(spec)
            timeout = 0
        timeout = min(timeout, self._next_deadline_in())
        by_conn: dict[object, _Worker] = {w.conn: w for w in self._workers}
        by_sentinel: dict[object, _Worker] = {w.process.sentinel: w for w in self._workers}
        ready = wait([*by_conn, *by_sentinel], timeout=max(0.0, timeout))  # type: ignore[list-item]
        for obj in ready:
            worker = by_conn.get(obj)
            if worker is not None:
                self._drain(worker, done)
        for obj in ready:
            worker = by_sentinel.get(obj)
            if worker is not None and worker in self._workers:
                worker.process.join(timeout=1)  # reap it, so its exit code is known
                self._drain(worker, done)
                self._replace(worker, _death_reason(worker.process), done)
        self._enforce_deadlines(done)
        return done

    def _drain(self, worker: _Worker, done: list[Completion]) -> None:
        try:
            while worker.queue and worker.conn.poll():
                result = worker.conn.recv()
                spec = worker.queue.popleft()
                done.append(Completion(spec=spec, result=result))
                worker.head_started = time.monotonic()
        except (EOFError, OSError):
            pass

    def _replace(self, worker: _Worker, reason: str, done: list[Completion]) -> None:
        self._workers.remove(worker)
        if worker.queue:
            head = worker.queue.popleft()
            done.append(Completion(spec=head, result=None, failure=reason))
            self._orphans.extend(worker.queue)
        worker.conn.close()
        worker.process.join(timeout=1)
        self._workers.append(self._spawn())

    def _next_deadline_in(self) -> float:
        now = time.monotonic()
        deadlines = [
            w.head_started + w.queue[0].timeout + _TIMEOUT_GRACE - now
            for w in self._workers
            if w.queue and w.queue[0].timeout
        ]
        return min(deadlines, default=3600.0)

    def _enforce_deadlines(self, done: list[Completion]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            head = worker.queue[0] if worker.queue else None
            if head is None or not head.timeout:
                continue
            if now > worker.head_started + head.timeout + _TIMEOUT_GRACE:
                worker.process.kill()
                worker.process.join(timeout=5)
                self._drain(worker, done)
                if worker.queue and worker.queue[0] is head:
                    self._replace(
                        worker,
                        f"step {head.step_name!r} timed out after {head.timeout:g} s "
                        "(@timeout) and its worker was stopped",
                        done,
                    )

    def shutdown(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 2
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
            worker.conn.close()
        self._workers = []

    def kill_all(self) -> None:
        """Stop every worker at once (Ctrl-C)."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.kill()
        self.shutdown()
