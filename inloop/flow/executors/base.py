"""The executor interface: where the runtime sends tasks to run.

An executor takes :class:`~inloop.flow.task.TaskSpec` objects and hands back
:class:`Completion` records. The local pool is the embedded default; Dask runs the
same tasks on a cluster. :func:`make_executor` picks one from a URL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inloop.errors import ConfigError

if TYPE_CHECKING:
    from inloop.flow.spec import FlowSpec
    from inloop.flow.task import TaskResult, TaskSpec
    from inloop.store.artifacts import ArtifactStore

EXECUTOR_SCHEMES = ("local", "dask", "dask://host:port", "tcp://host:port")


@dataclass
class Completion:
    """A finished attempt: its result, or why there is none (worker died, deadline)."""

    spec: TaskSpec
    result: TaskResult | None
    failure: str | None = None


class Executor(ABC):
    """Runs task attempts somewhere and reports when they finish."""

    name: str = "executor"

    @abstractmethod
    def start(self, flow_cls: type[FlowSpec], store: ArtifactStore) -> None:
        """Get workers ready to run tasks of ``flow_cls``."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many attempts may be submitted and unfinished at once."""

    @abstractmethod
    def submit(self, spec: TaskSpec, resources: dict[str, Any] | None = None) -> None:
        """Start an attempt; raise ResourceUnavailableError if no worker can take it."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Completion]:
        """Return finished attempts, waiting up to ``timeout`` seconds for the first."""

    @abstractmethod
    def shutdown(self) -> None:
        """Stop the workers this executor started."""

    def describe(self) -> str:
        return self.name


def make_executor(url: str, max_workers: int) -> Executor:
    """The executor for ``url``: ``local``, ``dask`` (a local cluster) or ``dask://host:port``."""
    if url == "local":
        from inloop.flow.executors.local import LocalExecutor

        return LocalExecutor(max_workers)
    if url == "dask" or url.startswith(("dask://", "tcp://")):
        from inloop.flow.executors.dask import DaskExecutor

        address = None if url == "dask" else "tcp://" + url.split("://", 1)[1]
        return DaskExecutor(address, max_workers)
    raise ConfigError(
        f"Unknown executor {url!r}; use one of {', '.join(EXECUTOR_SCHEMES)} "
        "(INLOOP_EXECUTOR or --executor)."
    )
