"""Scoring jobs: what the rendezvous asks every live model, and how a transport answers.

A :class:`Job` is one request as the models see it: its id, the service and
policy revision, the model versions to score (each with its role) and the
instances exactly as they arrived. A transport turns a job into one
:class:`Score` per model, delivered through ``asyncio`` futures:

- :class:`LocalTransport` (the embedded default) scores in this process, off
  the event loop: fast models on one shared scorer thread, slow ones each in
  its own small thread pool, so a slow or hung model stalls neither the event
  loop nor the other models; a model with too many calls in flight is marked
  ``busy`` at once instead of queueing without bound. Only calls whose cost
  inloop knows to be tiny (a logistic regression on a small batch) are made
  on the loop itself.
- ``RedisTransport`` (:mod:`inloop.serve.streams`) puts the job on a Redis
  Stream for ``inloop serve worker`` processes.

Both score through :func:`score_model`, so a model answers the same way on
either transport.

>>> from inloop.serve.models import MajorityClass, as_model
>>> score = score_model(as_model(MajorityClass(["a", "b"], [1, 3])), [[0.0], [1.0]], "m@1",
...                     "champion")
>>> score.status, score.predictions, score.probabilities
('ok', ['b', 'b'], [[0.25, 0.75], [0.25, 0.75]])
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from inloop.serve.models import LoadedModel, ServeError

__all__ = [
    "ROLES",
    "SCORE_STATUSES",
    "Job",
    "LocalTransport",
    "Score",
    "ScoreFuture",
    "Transport",
    "as_batch",
    "score_model",
    "wait_first",
]

log = logging.getLogger("inloop.serve.scoring")

#: The role a model plays in a request. The fallback is scored only when it answers.
ROLES = ("champion", "challenger", "canary", "fallback")
#: ``ok``: scored; ``invalid``: the input does not fit the model (the caller's
#: fault); ``error``: the model raised, or gave NaN probabilities; ``busy``: too
#: many calls in flight, not scored; ``timeout``: no score by the end of the
#: collection window.
SCORE_STATUSES = ("ok", "invalid", "error", "busy", "timeout")


@dataclass(frozen=True)
class Job:
    """One request as the models see it.

    ``models`` pairs each model version reference (``"name@N"``) with its role;
    ``instances`` is the batch exactly as the caller sent it (JSON values).
    ``expires_at`` (Unix time, 0 for never) is when the rendezvous stops
    waiting for scores: a worker that reaches the job later skips it.
    ``deadline_ms`` (0 for none) is the service's deadline: in process, a model
    whose every thread has been in one call for longer is not asked (``busy``).
    """

    request_id: str
    service: str
    revision: int
    models: tuple[tuple[str, str], ...]
    instances: list[Any]
    expires_at: float = 0.0
    deadline_ms: float = 0.0


@dataclass(frozen=True)
class Score:
    """What one model said about one request.

    ``predictions`` and ``probabilities`` (one row per instance, columns in
    the order of ``classes``) are set when ``status`` is ``'ok'``; ``error``
    says what went wrong otherwise. ``latency_ms`` is the time the model took
    (None when it was not called).
    """

    model: str
    role: str
    status: str
    predictions: list[Any] | None = None
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    latency_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """The score as JSON values (for streams and the archive)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        """The inverse of :meth:`to_dict`."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**values)


class ScoreFuture(asyncio.Future[Score]):
    """A model's score to come, whose :func:`wait_first` waiters wake with it, in the same turn.

    An asyncio future runs its done callbacks one loop turn after it is set,
    and a task waiting on several futures (:func:`asyncio.wait`) resumes one
    turn after that. Under load every turn of the loop also serves the other
    requests' I/O, so each costs a request a tenth of a millisecond at the
    median and half a millisecond at p99. Both transports hand out these.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._waiters: list[asyncio.Future[None]] = []

    def set_result(self, result: Score) -> None:
        super().set_result(result)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


async def wait_first(futures: Sequence[asyncio.Future[Score]], timeout: float) -> None:
    """Return once one of ``futures`` is done, or after ``timeout`` seconds; cancels none.

    For :class:`ScoreFuture`\\ s the caller resumes one loop turn after the
    score is set; other futures go through :func:`asyncio.wait`.
    """
    if not all(isinstance(future, ScoreFuture) for future in futures):
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return
    if any(future.done() for future in futures):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    watched: list[ScoreFuture] = list(futures)  # type: ignore[arg-type]  # checked above
    for future in watched:
        future._waiters.append(waiter)
    timer = loop.call_later(timeout, _wake, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        for future in watched:
            future._waiters.remove(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def as_batch(instances: Sequence[Any]) -> np.ndarray:
    """The instances as the array models score: numbers stay numeric, text stays text.

    >>> as_batch([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    return np.asarray(instances)


def _plain(values: np.ndarray) -> list[Any]:
    return values.tolist()  # numpy scalars -> JSON-friendly Python values


def score_model(model: LoadedModel, X: Any, ref: str, role: str) -> Score:
    """Score the batch ``X`` with ``model``; never raises.

    One ``predict_proba`` call gives both the probabilities and the prediction
    (the most probable class), so the two always agree. A
    :class:`~inloop.serve.models.ServeError` (the input does not fit the model)
    gives status ``'invalid'``; any other exception ``'error'``, and so do
    probabilities that are NaN or infinite (no answer can be read from them).
    """
    start = time.perf_counter()
    try:
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        if not np.isfinite(proba).all():
            raise ValueError("the model gave NaN or infinite probabilities")
        classes = np.asarray(model.classes)
        predictions = _plain(classes[np.argmax(proba, axis=1)])
        elapsed = (time.perf_counter() - start) * 1000.0
        return Score(
            model=ref,
            role=role,
            status="ok",
            predictions=predictions,
            probabilities=proba.tolist(),
            classes=_plain(classes),
            latency_ms=elapsed,
        )
    except ServeError as exc:
        status, message = "invalid", str(exc)
    except Exception as exc:  # a served model may raise anything; the request must go on
        status, message = "error", f"{type(exc).__name__}: {exc}"
    return Score(
        model=ref,
        role=role,
        status=status,
        latency_ms=(time.perf_counter() - start) * 1000.0,
        error=message,
    )


class Transport(Protocol):
    """How jobs reach the models. The rendezvous calls, in order:

    ``await prepare(service, revision, refs)`` whenever it (re)loads a policy,
    ``submit(job)`` for every request (must not block: it returns at once with
    a future per model of ``job.models``; the futures are never cancelled by
    the transport and every one ends with a :class:`Score` or stays pending;
    a :class:`ScoreFuture` wakes the request waiting for it a loop turn sooner),
    and ``await close()`` when the server stops. ``bounded(ref, X)`` says
    whether scoring ``ref`` on the batch ``X`` costs next to nothing here: a
    server that is behind still has such a model score a request.
    """

    async def prepare(self, service: str, revision: int, refs: Sequence[str]) -> None: ...

    def submit(self, job: Job) -> dict[str, asyncio.Future[Score]]: ...

    def bounded(self, ref: str, X: np.ndarray) -> bool: ...

    async def close(self) -> None: ...


#: A champion whose last call took at most this many ms is scored on a shared thread (the
#: scorer here, a worker's reader); another model within _SHARED_OTHER_MS (the next
#: requests' champions wait for it).
_SHARED_MS = 5.0
_SHARED_OTHER_MS = 1.0


def fast_enough_to_share(last_ms: float, role: str) -> bool:
    """Whether a model whose last call took ``last_ms`` is scored on a thread shared by all.

    Handing a call to a thread of its own costs more than such a model does.

    >>> fast_enough_to_share(0.5, "challenger"), fast_enough_to_share(3.0, "challenger")
    (True, False)
    """
    return last_ms <= (_SHARED_MS if role == "champion" else _SHARED_OTHER_MS)


#: A scorer that has been in one call this long is stuck: a new scorer takes over, and that
#: model is scored on its own lane from then on.
_STUCK_S = 0.25

_LaneCall = tuple[Any, str, str, asyncio.AbstractEventLoop, "asyncio.Future[Score]"]


@dataclass
class _Lane:
    """One model's threads, their queue and the number of its calls in flight.

    ``last_ms`` is how long its last call took (unknown until it has answered
    once); ``shared`` turns False for good once the model has held up the
    shared scorer. The threads are daemons (not a ThreadPoolExecutor, whose
    threads are joined at exit): a model that never returns must not keep the
    process alive.
    """

    model: LoadedModel
    calls: queue.SimpleQueue[_LaneCall | None] = field(default_factory=queue.SimpleQueue)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_ms: float = math.inf
    shared: bool = True
    running: dict[int, float] = field(default_factory=dict)  # lane thread -> its call's start

    def stalled(self, threads: int, after_s: float) -> bool:
        """Whether each of the lane's ``threads`` has been in one call for over ``after_s``.

        A new call would wait behind them, for as long as the model stays stuck.
        """
        starts = list(self.running.values())  # a copy: the lane threads change it
        return len(starts) >= threads and time.monotonic() - max(starts) > after_s

    def start(self, threads: int, name: str) -> None:
        for i in range(threads):
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True).start()

    def score(self, X: Any, ref: str, role: str) -> Score:
        try:
            score = score_model(self.model, X, ref, role)
        finally:
            with self.lock:
                self.in_flight -= 1
        self.last_ms = score.latency_ms or 0.0
        return score

    def _loop(self) -> None:
        me = threading.get_ident()
        while (call := self.calls.get()) is not None:
            X, ref, role, loop, future = call
            self.running[me] = time.monotonic()
            try:
                score = self.score(X, ref, role)
            finally:
                del self.running[me]
            _post(loop, _settle, future, score)


@dataclass(frozen=True)
class _Call:
    """One model to score for one request, on the shared scorer or on its lane."""

    lane: _Lane
    ref: str
    role: str
    future: asyncio.Future[Score]
    shared: bool


class LocalTransport:
    """Score in this process: fast models on one shared thread, the others on their own.

    A model whose call on a batch is *bounded* (:meth:`LoadedModel.bounded`:
    inloop's own arithmetic on a small batch, such as a logistic regression
    on one request's rows) is scored at once in :meth:`submit`, on the event
    loop: that takes a few microseconds, far less than handing the call to a
    thread and waking the loop for its answer. Every other call goes to a
    thread, as follows.

    Each model version has a *lane*: ``threads_per_model`` threads of its own.
    A model is scored there until it has shown it is fast; from then on,
    while its last call took at most 5 ms (a champion) or 1 ms (another
    model), it is scored on the *scorer*, one thread shared by all models,
    champion first. Handing a call to another thread costs more than such a
    model does, and every thread that wakes makes the event loop wait longer
    for the GIL. A scorer that has been in one call for 0.25 s is replaced by a
    new one, and that model is scored on its lane from then on; so a hung
    model costs its own threads and nothing else.

    When ``max_in_flight`` calls of a model are running or queued, the next
    request gets a ``busy`` score at once instead of queueing without bound;
    so does a request whose model has had every thread of its lane in one
    call for longer than the job's ``deadline_ms`` (hung, or far too slow
    for the service): its answer cannot come in time, and the other models
    answer without waiting for it.
    The champion gets a head start: the other models of a job start when it
    has answered, or after ``head_start_ms``, whichever comes first; on the
    scorer they simply come after it. ``loader`` turns a reference into a
    :class:`LoadedModel` (default: :func:`inloop.serve.registry.load` on the
    configured stores).

    >>> import asyncio
    >>> from inloop.serve.models import MajorityClass, as_model
    >>> models = {"m@1": as_model(MajorityClass(["a", "b"], [3, 1]))}
    >>> async def demo():
    ...     transport = LocalTransport(loader=models.__getitem__)
    ...     await transport.prepare("svc", 1, ["m@1"])
    ...     futures = transport.submit(Job("r1", "svc", 1, (("m@1", "champion"),), [[0.0]]))
    ...     score = await futures["m@1"]
    ...     await transport.close()
    ...     return score.predictions
    >>> asyncio.run(demo())
    ['a']
    """

    def __init__(
        self,
        *,
        loader: Callable[[str], LoadedModel] | None = None,
        threads_per_model: int = 2,
        max_in_flight: int = 32,
        head_start_ms: float = 5.0,
    ) -> None:
        if threads_per_model < 1 or max_in_flight < threads_per_model:
            raise ServeError(
                "LocalTransport needs threads_per_model >= 1 and max_in_flight >= "
                f"threads_per_model. Got {threads_per_model} and {max_in_flight}."
            )
        self._loader = loader
        self._threads = threads_per_model
        self._max_in_flight = max_in_flight
        self._head_start = head_start_ms / 1000.0
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._scorers: set[object] = set()  # the scorer threads not retired
        self._scoring: dict[object, tuple[float, _Call]] = {}  # scorer -> (since, call) in a call

    def _load(self, ref: str) -> LoadedModel:
        if self._loader is not None:
            return self._loader(ref)
        from inloop.serve.registry import load

        return load(ref)

    async def prepare(self, service: str, revision: int, refs: Sequence[str]) -> None:
        """Load every model of ``refs`` not loaded yet (in a thread; loading may be slow)."""
        missing = [ref for ref in refs if ref not in self._lanes]
        if not missing:
            return
        loaded = await asyncio.to_thread(lambda: {ref: self._load(ref) for ref in missing})
        with self._lock:
            if not self._scorers:
                self._start_scorer()
            for ref, model in loaded.items():
                if ref not in self._lanes:
                    lane = _Lane(model)
                    lane.start(self._threads, f"inloop-{ref}")
                    self._lanes[ref] = lane

    def submit(self, job: Job) -> dict[str, asyncio.Future[Score]]:
        loop = asyncio.get_running_loop()
        X = as_batch(job.instances)
        futures: dict[str, asyncio.Future[Score]] = {
            ref: ScoreFuture(loop=loop) for ref, _ in job.models
        }
        if self._scoring:
            self._replace_stuck_scorers()
        first: list[_Call] = []  # the champion
        then: list[_Call] = []  # the others, once the champion has answered
        for ref, role in job.models:
            if self.bounded(ref, X):
                # Cheaper here than the hop to a thread and back, and it cannot hang.
                futures[ref].set_result(score_model(self._lanes[ref].model, X, ref, role))
                continue
            call = self._call(ref, role, futures[ref], job.deadline_ms)
            if call is not None:
                (first if role == "champion" else then).append(call)
        riding: list[_Call] = []
        if not first or first[0].shared:
            # On the scorer, the others come after the champion anyway.
            riding = [c for c in then if c.shared]
            then = [c for c in then if not c.shared]
        self._dispatch(first + riding, X, loop)
        if not then:
            return futures
        if not first or self._head_start <= 0:
            self._dispatch(then, X, loop)
            return futures
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                timer.cancel()
                self._dispatch(then, X, loop)

        def champion_done(_: object) -> None:
            # One loop turn later, so the waiting request answers before the others start.
            loop.call_soon(release)

        timer = loop.call_later(self._head_start, release)
        first[0].future.add_done_callback(champion_done)
        return futures

    def bounded(self, ref: str, X: np.ndarray) -> bool:
        """Whether ``ref`` is loaded and scores ``X`` on the loop (see the class)."""
        lane = self._lanes.get(ref)
        return lane is not None and lane.model.bounded(X)

    def _call(
        self, ref: str, role: str, future: asyncio.Future[Score], deadline_ms: float
    ) -> _Call | None:
        """Where to score ``ref`` for this request; None when its score is settled already."""
        lane = self._lanes.get(ref)
        if lane is None:
            future.set_result(
                Score(ref, role, "error", error=f"Model {ref} is not loaded on this server.")
            )
            return None
        if deadline_ms and lane.stalled(self._threads, deadline_ms / 1000.0):
            future.set_result(
                Score(
                    ref,
                    role,
                    "busy",
                    error=f"each of the {self._threads} threads of {ref} has been in one call "
                    f"for over the {deadline_ms:g} ms deadline (hung or too slow)",
                )
            )
            return None
        with lane.lock:
            busy = lane.in_flight >= self._max_in_flight
            if not busy:
                lane.in_flight += 1
        if busy:
            future.set_result(
                Score(
                    ref,
                    role,
                    "busy",
                    error=f"{self._max_in_flight} calls of {ref} were already in flight.",
                )
            )
            return None
        shared = lane.shared and fast_enough_to_share(lane.last_ms, role) and lane.calls.empty()
        return _Call(lane, ref, role, future, shared)

    def _dispatch(self, calls: list[_Call], X: np.ndarray, loop: asyncio.AbstractEventLoop) -> None:
        """Shared calls go to the scorer as one piece of work, in order; the rest to their lanes."""
        shared = [c for c in calls if c.shared]
        if shared:
            self._work.put((shared, X, loop))
        for c in calls:
            if not c.shared:
                c.lane.calls.put((X, c.ref, c.role, loop, c.future))

    # --- the scorer -------------------------------------------------------------------------

    def _start_scorer(self) -> None:
        token = object()  # stands for the thread in _scorers and _scoring
        self._scorers.add(token)
        threading.Thread(
            target=self._scorer_loop, args=(token,), name="inloop-scorer", daemon=True
        ).start()

    def _scorer_loop(self, me: object) -> None:
        while me in self._scorers and (work := self._work.get()) is not None:
            calls, X, loop = work
            scored: list[tuple[asyncio.Future[Score], Score]] = []
            for call in calls:
                self._scoring[me] = (time.monotonic(), call)
                try:
                    score = call.lane.score(X, call.ref, call.role)
                finally:
                    self._scoring.pop(me, None)
                if call.role == "champion":
                    _post(loop, _settle, call.future, score)  # the caller waits for this one
                else:
                    scored.append((call.future, score))
            if scored:
                _post(loop, _settle_all, scored)
        self._scorers.discard(me)

    def _replace_stuck_scorers(self) -> None:
        """Retire every scorer stuck in one call for ``_STUCK_S``; start a new one for each."""
        now = time.monotonic()
        for scorer, (since, call) in list(self._scoring.items()):
            if now - since < _STUCK_S or self._scoring.pop(scorer, None) is None:
                continue
            call.lane.shared = False
            with self._lock:
                self._scorers.discard(scorer)
                self._start_scorer()
            log.warning(
                "%s has not answered in %.2f s: a new scorer takes over, and %s is scored on "
                "its own threads from now on",
                call.ref,
                now - since,
                call.ref,
            )

    async def close(self) -> None:
        """Stop taking work; threads stuck in a hung model are left to die with the process."""
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
            scorers = len(self._scorers)
        for lane in lanes:
            for _ in range(self._threads):
                lane.calls.put(None)
        for _ in range(scorers):
            self._work.put(None)


_Work = tuple[list[_Call], np.ndarray, asyncio.AbstractEventLoop]


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass  # the loop has closed: nobody waits for this score any more


def _settle_all(scored: list[tuple[asyncio.Future[Score], Score]]) -> None:
    for future, score in scored:
        _settle(future, score)


def _settle(future: asyncio.Future[Score], score: Score) -> None:
    if not future.done():
        future.set_result(score)
