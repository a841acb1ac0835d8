"""``current``: what a running task knows about itself.

Inside a step, ``current.run_id``, ``current.step_name`` and friends describe the
task being run. Outside a running flow ``current.is_running_flow`` is False and the
other attributes are None. The state is per thread, so tasks that share a process
(Dask worker threads) do not see each other's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskContext:
    """Facts about one running task, set by the runtime before the step starts."""

    flow_name: str
    run_id: str
    step_name: str
    task_id: str
    username: str
    retry_count: int = 0
    origin_run_id: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    namespace: str | None = None
    project_name: str | None = None
    branch_name: str | None = None


class Current:
    """The ``current`` object; read its attributes inside a step."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _set(self, context: TaskContext | None) -> None:
        self._local.context = context

    @property
    def _context(self) -> TaskContext | None:
        return getattr(self._local, "context", None)

    def _get(self, name: str) -> Any:
        context = self._context
        return None if context is None else getattr(context, name)

    @property
    def is_running_flow(self) -> bool:
        """True while a step of a flow runs in this thread."""
        return self._context is not None

    @property
    def flow_name(self) -> str | None:
        return self._get("flow_name")

    @property
    def run_id(self) -> str | None:
        return self._get("run_id")

    @property
    def step_name(self) -> str | None:
        return self._get("step_name")

    @property
    def task_id(self) -> str | None:
        return self._get("task_id")

    @property
    def username(self) -> str | None:
        return self._get("username")

    @property
    def retry_count(self) -> int:
        context = self._context
        return 0 if context is None else context.retry_count

    @property
    def origin_run_id(self) -> str | None:
        return self._get("origin_run_id")

    @property
    def tags(self) -> frozenset[str]:
        context = self._context
        return frozenset() if context is None else context.tags

    @property
    def namespace(self) -> str | None:
        return self._get("namespace")

    @property
    def project_name(self) -> str | None:
        return self._get("project_name")

    @property
    def branch_name(self) -> str | None:
        return self._get("branch_name")

    @property
    def pathspec(self) -> str | None:
        """``Flow/run_id/step/task_id`` of the running task."""
        context = self._context
        if context is None:
            return None
        return f"{context.flow_name}/{context.run_id}/{context.step_name}/{context.task_id}"

    def __repr__(self) -> str:
        return f"<current {self.pathspec or 'outside a running flow'}>"


current = Current()
