"""The Dask executor: run tasks on a Dask cluster.

``INLOOP_EXECUTOR=dask://host:port`` sends tasks to an existing scheduler;
``INLOOP_EXECUTOR=dask`` starts a local cluster for the run. The flow class travels
to the workers once (pickled by value, so flows defined in ``__main__`` or a
notebook work) and tasks write artifacts straight to the artifact store, which
must therefore be shared (S3, or a folder every worker sees).

``@resources`` maps to Dask worker resources. Dask would keep a task that asks for
a resource no worker has waiting forever, so each request is checked against the
workers' declared resources first and fails at once with the resource named.
"""

from __future__ import annotations

import hashlib
import queue
import sys
import time
from typing import TYPE_CHECKING, Any

import cloudpickle

from inloop.errors import ConfigError, MissingExtraError, ResourceUnavailableError
from inloop.flow.executors.base import Completion, Executor
from inloop.flow.task import execute_task

if TYPE_CHECKING:
    from inloop.flow.spec import FlowSpec
    from inloop.flow.task import TaskResult, TaskSpec
    from inloop.store.artifacts import ArtifactStore

_TIMEOUT_GRACE = 5.0
_flow_classes: dict[str, type[FlowSpec]] = {}  # per Dask worker process, by blob hash


def _run_on_worker(blob: bytes, blob_hash: str, spec: TaskSpec, store: ArtifactStore) -> TaskResult:
    flow_cls = _flow_classes.get(blob_hash)
    if flow_cls is None:
        flow_cls = _flow_classes[blob_hash] = cloudpickle.loads(blob)
    return execute_task(flow_cls, spec, store)


def dask_resources(
    requested: dict[str, Any] | None, workers: dict[str, dict[str, Any]], step: str
) -> dict[str, float]:
    """Map ``@resources`` to Dask resources, failing if no worker can satisfy them.

    GPUs are always a Dask resource (``--resources GPU=1`` on the worker). CPU and
    memory become Dask resources only when workers declare ``CPU``/``MEMORY``;
    otherwise they are checked against worker threads and memory limits.
    """
    if not requested:
        return {}
    if not workers:
        raise ResourceUnavailableError("The Dask cluster has no workers; start some first.")
    declared: set[str] = set()
    for info in workers.values():
        declared.update(info.get("resources") or {})
    wanted: dict[str, float] = {}
    gpu = requested.get("gpu") or 0
    cpu = requested.get("cpu") or 0
    memory_mb = requested.get("memory") or 0
    if gpu:
        wanted["GPU"] = float(gpu)
    if cpu and "CPU" in declared:
        wanted["CPU"] = float(cpu)
    if memory_mb and "MEMORY" in declared:
        wanted["MEMORY"] = float(memory_mb) * 2**20
    for name, amount in wanted.items():
        best = max(float((w.get("resources") or {}).get(name, 0)) for w in workers.values())
        if best < amount:
            have = f"the most any worker declares is {best:g}" if best else "no worker declares it"
            raise ResourceUnavailableError(
                f"Step {step!r} asks for {name}={amount:g} (@resources) but {have}. Start a "
                f"worker with `dask worker ... --resources {name}={amount:g}` or lower the "
                "request."
            )
    if memory_mb and "MEMORY" not in declared:
        limits = [float(w.get("memory_limit") or 0) for w in workers.values()]
        if all(limits) and max(limits) < memory_mb * 2**20:
            raise ResourceUnavailableError(
                f"Step {step!r} asks for memory={memory_mb} MB (@resources) but the largest "
                f"Dask worker has {max(limits) / 2**20:.0f} MB. Start bigger workers or lower "
                "the request."
            )
    return wanted


class DaskExecutor(Executor):
    """Run tasks on a Dask cluster at ``address``, or on a local cluster if None."""

    name = "dask"

    def __init__(self, address: str | None, max_workers: int) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            where = address or "a local cluster"
            raise MissingExtraError("dask", f"The dask executor ({where})", exc) from None
        self.address = address
        self.max_workers = max(1, int(max_workers))
        self._client: Any = None
        self._cluster: Any = None
        self._done: queue.Queue[tuple[TaskSpec, Any]] = queue.Queue()
        self._submitted: dict[tuple[int, int], tuple[TaskSpec, Any, float]] = {}
        self._blob: Any = None
        self._blob_hash = ""
        self._store: ArtifactStore | None = None

    def describe(self) -> str:
        where = self.address or "a local cluster"
        return f"dask ({where})"

    @property
    def capacity(self) -> int:
        threads = 0
        if self._client is not None:
            info = self._client.scheduler_info()
            threads = sum(int(w.get("nthreads", 1)) for w in info["workers"].values())
        return max(self.max_workers, threads) * 2

    def start(self, flow_cls: type[FlowSpec], store: ArtifactStore) -> None:
        from distributed import Client, LocalCluster

        if self.address is None:
            self._cluster = LocalCluster(
                n_workers=self.max_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
            )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(self.address, timeout="10s")
            except OSError as exc:
                raise ConfigError(
                    f"Cannot reach the Dask scheduler at {self.address}: {exc}. Check "
                    "INLOOP_EXECUTOR and that `dask scheduler` is running."
                ) from None
        module = sys.modules.get(flow_cls.__module__)
        if module is not None and flow_cls.__module__ != "__main__":
            # Flow files loaded by path are not importable on the workers.
            cloudpickle.register_pickle_by_value(module)
        blob = cloudpickle.dumps(flow_cls)
        self._blob_hash = hashlib.sha256(blob).hexdigest()
        self._blob = self._client.scatter(blob, broadcast=True, hash=False)
        self._store = store

    def submit(self, spec: TaskSpec, resources: dict[str, Any] | None = None) -> None:
        workers = self._client.scheduler_info()["workers"] if resources else {}
        wanted = dask_resources(resources, workers, spec.step_name)
        future = self._client.submit(
            _run_on_worker,
            self._blob,
            self._blob_hash,
            spec,
            self._store,
            key=f"inloop-{spec.run_id}-{spec.task_id}-{spec.attempt}",
            resources=wanted or None,
            pure=False,
        )
        self._submitted[spec.key] = (spec, future, time.monotonic())
        future.add_done_callback(lambda f, s=spec: self._done.put((s, f)))

    def wait(self, timeout: float) -> list[Completion]:
        done: list[Completion] = []
        try:
            spec, future = self._done.get(timeout=max(0.0, min(timeout, self._next_deadline())))
            self._complete(spec, future, done)
            while True:
                spec, future = self._done.get_nowait()
                self._complete(spec, future, done)
        except queue.Empty:
            pass
        self._enforce_deadlines(done)
        return done

    def _complete(self, spec: TaskSpec, future: Any, done: list[Completion]) -> None:
        if self._submitted.pop(spec.key, None) is None:
            return  # already given up on (deadline)
        try:
            done.append(Completion(spec=spec, result=future.result()))
        except Exception as exc:  # KilledWorker, cancelled, pickling errors
            done.append(
                Completion(spec=spec, result=None, failure=f"Dask: {type(exc).__name__}: {exc}")
            )

    def _next_deadline(self) -> float:
        now = time.monotonic()
        return min(
            (
                t + s.timeout + _TIMEOUT_GRACE - now
                for s, _, t in self._submitted.values()
                if s.timeout
            ),
            default=3600.0,
        )

    def _enforce_deadlines(self, done: list[Completion]) -> None:
        now = time.monotonic()
        for key, (spec, future, started) in list(self._submitted.items()):
            if spec.timeout and now > started + spec.timeout + _TIMEOUT_GRACE:
                del self._submitted[key]
                future.cancel()
                done.append(
                    Completion(
                        spec=spec,
                        result=None,
                        failure=f"step {spec.step_name!r} timed out after {spec.timeout:g} s "
                        "(@timeout) on Dask",
                    )
                )

    def shutdown(self) -> None:
        for _, future, _ in self._submitted.values():
            future.cancel()
        self._submitted.clear()
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
