"""The rendezvous: score a request with every live model, answer by the schedule, archive all.

For each request the :class:`Rendezvous` reads the service's current policy
(one small query, so a promotion or rollback applies to the very next
request), hands a :class:`~inloop.serve.scoring.Job` to the transport — every
live model (champion, challengers, canary) scores the same input — and then
walks the policy's :class:`~inloop.serve.policy.Schedule`:

- a ``champion`` step takes the champion's answer if it is there by ``by_ms``;
- a ``best`` step takes the best-priority answer there by ``by_ms`` (the
  champion's, else the canary's), waiting for the champion while it may still
  come;
- at the deadline (or a ``fallback`` step) the fallback answers: a registered
  heuristic, run here, or the policy's default answer.

So every request is answered by the deadline, whatever the models do. Past
saturation, requests queue before they reach the rendezvous; when the event
loop lags half the service's deadline only the champion (and any model whose
call costs next to nothing, see ``Transport.bounded``) scores new requests,
and a whole deadline behind (or for a request that has already waited that
long) the fallback answers at once. An answer for which a model was shed is
marked ``overloaded`` (see :mod:`inloop.serve.overload`). After
answering, the remaining scores are collected in the background (up to
``collect_s``) and the request, every score (a missing one as ``timeout``),
the answer and the latencies go to the :class:`~inloop.serve.archive.ArchiveWriter`.

>>> import asyncio
>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.serve import MajorityClass, create_service, register
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://rdv-doc")
>>> _ = register(MajorityClass(["cat", "dog"], [1, 3]), name="pets", engine=engine,
...              artifacts=store)
>>> _ = create_service("pets", {"champion": "pets@1", "fallback": {"label": "cat"}},
...                    created_by="ana", reason="launch", engine=engine)
>>> async def ask():
...     async with Rendezvous(engine=engine, artifacts=store) as rendezvous:
...         return await rendezvous.predict("pets", [[0.5]])
>>> answer = asyncio.run(ask())
>>> answer.predictions, answer.model, answer.fallback_used
(['dog'], 'pets@1', False)
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from inloop.serve.archive import ArchivedRequest, ArchiveWriter, Hook
from inloop.serve.limits import (
    InputSpec,
    InvalidRequestError,
    Limits,
    RequestTooLargeError,
    ResolvedLimits,
    check_instances,
)
from inloop.serve.models import LoadedModel, ServeError
from inloop.serve.overload import REFUSE_AFTER, LoopLag, refuse, shed_level
from inloop.serve.policy import DefaultAnswer, Policy, current_policy, raise_service_not_found
from inloop.serve.registry import get_version
from inloop.serve.scoring import (
    Job,
    LocalTransport,
    Score,
    Transport,
    as_batch,
    score_model,
    wait_first,
)
from inloop.serve.tables import serve_policies, serve_services
from inloop.store.db import get_engine

__all__ = [
    "MAX_BATCH",
    "Answer",
    "InvalidRequestError",
    "NoAnswerError",
    "Rendezvous",
    "RequestTooLargeError",
    "check_instances",
]

log = logging.getLogger("inloop.serve.rendezvous")

#: The most instances one request may carry by default (``INLOOP_MAX_PREDICT_INSTANCES``).
MAX_BATCH = 10_000

# Request ids are a keyed BLAKE2b of a counter: unique and unguessable like uuid4, but
# with no system call. uuid4 reads os.urandom, which lets go of the GIL, and on a busy
# server the event loop then waits for a model or archive thread to give it back.
_ID_KEY = os.urandom(32)
_id_counter = itertools.count()


def _new_id_key() -> None:
    global _ID_KEY
    _ID_KEY = os.urandom(32)  # a forked child must not repeat its parent's ids


os.register_at_fork(after_in_child=_new_id_key)


def new_request_id() -> str:
    """A new request id: 32 hex digits.

    >>> len(new_request_id()), new_request_id() != new_request_id()
    (32, True)
    """
    n = next(_id_counter).to_bytes(8, "little")
    return hashlib.blake2b(n, key=_ID_KEY, digest_size=16).hexdigest()


class NoAnswerError(ServeError):
    """No model answered in time and the fallback failed too (HTTP 503)."""


@dataclass(frozen=True)
class Answer:
    """What a service answered: the predictions, who gave them, how fast.

    ``model`` is the reference that answered (None for the policy's default
    answer); ``role`` is ``'champion'``, ``'canary'`` or ``'fallback'``;
    ``probabilities`` has one row per instance in the order of ``classes``
    (None for a default answer). ``latency_ms`` runs from the request's
    arrival (at the server, when served over HTTP) to its answer.
    ``overloaded`` is True when the server was too far behind to let every
    model score the request (some did not).
    """

    request_id: str
    service: str
    revision: int
    model: str | None
    role: str
    fallback_used: bool
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None
    latency_ms: float
    overloaded: bool = False

    def to_dict(self, *, single: bool = False) -> dict[str, Any]:
        """The answer as JSON; ``single`` gives ``prediction``/``probabilities`` of one instance."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "service": self.service,
            "revision": self.revision,
            "model": self.model,
            "role": self.role,
            "fallback_used": self.fallback_used,
        }
        if single:
            out["prediction"] = self.predictions[0]
            out["probabilities"] = None if self.probabilities is None else self.probabilities[0]
        else:
            out["predictions"] = self.predictions
            out["probabilities"] = self.probabilities
        out["classes"] = self.classes
        out["latency_ms"] = round(self.latency_ms, 3)
        out["overloaded"] = self.overloaded
        return out


@dataclass(frozen=True)
class _Live:
    """A service's policy as loaded here: what to score and with which roles."""

    service: str
    service_id: int
    revision: int
    policy: Policy
    models: tuple[tuple[str, str], ...]
    fallback: LoadedModel | None
    limits: ResolvedLimits
    spec: InputSpec | None  # what the champion takes, when the registry knows


class Rendezvous:
    """Answer requests for every service in the database by its current policy.

    ``transport`` scores jobs (default :class:`~inloop.serve.scoring.LocalTransport`,
    models in this process); ``archive`` writes requests (default: an
    :class:`~inloop.serve.archive.ArchiveWriter` on ``engine`` with ``hooks``).
    Scores missing ``collect_s`` seconds after a request arrived are archived
    as ``timeout``; every request is served by a policy read at most
    ``policy_check_s`` seconds before it came (see :meth:`live`). With
    ``shed`` (the default) a lagging event loop sheds work, as the module
    says; ``shed=False`` always has every model score. Use as an async
    context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        artifacts: Any = None,
        transport: Transport | None = None,
        archive: ArchiveWriter | None = None,
        hooks: Sequence[Hook] = (),
        collect_s: float = 5.0,
        policy_check_s: float = 0.05,
        shed: bool = True,
    ) -> None:
        self.engine = engine if engine is not None else get_engine()
        self._artifacts = artifacts
        self.transport: Transport = (
            transport if transport is not None else LocalTransport(loader=self._load)
        )
        self.archive = archive if archive is not None else ArchiveWriter(self.engine, hooks=hooks)
        self.collect_s = collect_s
        self.policy_check_s = policy_check_s
        self.lag: LoopLag | None = LoopLag() if shed else None
        # Per service, and only for services that exist (unknown names leave nothing here):
        self._live: dict[str, _Live] = {}
        self._verified: dict[str, float] = {}  # when the check that found _live's revision began
        self._invalidated: dict[str, float] = {}  # when invalidate() was last called
        self._locks: dict[str, asyncio.Lock] = {}
        # Policy checks under way, by service: (when begun, the check). Gone once done.
        self._checks: dict[str, tuple[float, asyncio.Task[_Live]]] = {}
        # Answered requests whose other scores are on their way: key -> archive it now.
        self._collecting: dict[object, Callable[[], None]] = {}
        #: Requests :meth:`refusal` turned away (the web app answered them 503).
        self.refused = 0
        self._refusal_logged = 0.0

    def _load(self, ref: str) -> LoadedModel:
        from inloop.serve.registry import load

        return load(ref, engine=self.engine, artifacts=self._artifacts)

    async def start(self, *, preload: bool = True) -> Rendezvous:
        """Start the archive writer and (``preload``) load every service's models now,
        so that no request pays for loading them."""
        self.archive.start()
        if preload:
            from inloop.serve.policy import list_services

            for service in await asyncio.to_thread(list_services, engine=self.engine):
                try:
                    await self.live(service.name)
                except Exception:
                    log.exception("service %s: could not load its policy", service.name)
        if self.lag is not None:
            self.lag.start()
        return self

    async def close(self, grace_s: float = 2.0) -> None:
        """Archive what is still being collected, then stop.

        Scores still on their way get up to ``grace_s`` seconds (at most
        ``collect_s``); those missing then are archived as timeouts.
        """
        until = time.monotonic() + min(grace_s, self.collect_s)
        while self._collecting and time.monotonic() < until:
            await asyncio.sleep(0.01)
        for finish in list(self._collecting.values()):
            finish()  # archived now, the missing scores as timeouts
        if self.lag is not None:
            await self.lag.stop()
        if self._checks:
            await asyncio.gather(*(t for _, t in self._checks.values()), return_exceptions=True)
        await self.transport.close()
        await asyncio.to_thread(self.archive.close)

    async def __aenter__(self) -> Rendezvous:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- policy ---------------------------------------------------------------------------

    def _current_revision(self, service: str, known: _Live | None) -> tuple[int, int]:
        """The service's id and newest policy revision: one indexed query."""
        with self.engine.connect() as conn:
            if known is not None:
                newest = conn.execute(
                    select(func.max(serve_policies.c.revision)).where(
                        serve_policies.c.service_id == known.service_id
                    )
                ).scalar()
                if newest is not None:
                    return known.service_id, int(newest)
            row = conn.execute(
                select(serve_services.c.service_id, func.max(serve_policies.c.revision))
                .join(serve_policies, serve_policies.c.service_id == serve_services.c.service_id)
                .where(serve_services.c.name == service)
                .group_by(serve_services.c.service_id)
            ).first()
            if row is None:
                raise_service_not_found(conn, service)
            return int(row[0]), int(row[1])

    def invalidate(self, service: str | None = None) -> None:
        """Make the next request of ``service`` (or of every service) re-read its policy first."""
        now = time.monotonic()
        for name in list(self._live) if service is None else [service]:
            if name in self._live or name in self._checks:
                # A check begun before now may have read the policy before the change.
                self._invalidated[name] = now
                self._verified.pop(name, None)
                self._checks.pop(name, None)

    async def live(self, service: str) -> _Live:
        """The service's current policy, loaded (models prepared) if it changed.

        A request is served by a policy read at most ``policy_check_s`` seconds
        before it came, so a promotion or rollback committed anywhere (another
        server, the CLI) applies to every request arriving ``policy_check_s``
        after it, on an idle server too. On a busy one the check (one small
        query, off the event loop) runs in the background from half that age,
        so requests rarely wait for it; after :meth:`invalidate` the next
        request waits for a new check.
        """
        now = time.monotonic()
        known = self._live.get(service)
        if known is not None:
            age = now - self._verified.get(service, -math.inf)
            if age < self.policy_check_s:
                if age >= self.policy_check_s / 2:
                    self._check(service, now - self.policy_check_s / 2)
                return known
        try:
            return await asyncio.shield(self._check(service, now - self.policy_check_s))
        except Exception:
            if known is None:
                raise
            return known  # the database is out of reach: keep serving (the check logged why)

    def _check(self, service: str, since: float) -> asyncio.Task[_Live]:
        """A policy check of ``service`` begun at ``since`` or later (under way, or new)."""
        running = self._checks.get(service)
        if running is not None and running[0] >= since:
            return running[1]
        begun = time.monotonic()
        task = asyncio.create_task(self._reload(service, begun))
        entry = (begun, task)
        self._checks[service] = entry

        def done(task: asyncio.Task[_Live]) -> None:
            if self._checks.get(service) is entry:
                del self._checks[service]
            if not task.cancelled() and task.exception() is not None and service in self._live:
                # The served policy stays as it was; the next request checks again.
                log.error(
                    "service %s: checking for a new policy failed",
                    service,
                    exc_info=task.exception(),
                )

        task.add_done_callback(done)
        return task

    async def _reload(self, service: str, begun: float) -> _Live:
        """Look up the newest revision (in a thread); load it if it is not the one served."""
        known = self._live.get(service)
        service_id, revision = await asyncio.to_thread(self._current_revision, service, known)
        if known is None or known.revision != revision or known.service_id != service_id:
            lock = self._locks.setdefault(service, asyncio.Lock())
            async with lock:
                known = self._live.get(service)
                if known is None or known.revision < revision or known.service_id != service_id:
                    loaded = await self._load_policy(service, service_id)
                    self._live[service] = loaded
                    if known is not None:
                        log.info(
                            "service %s: policy revision %d -> %d (champion %s)",
                            service,
                            known.revision,
                            loaded.revision,
                            loaded.policy.champion,
                        )
                    known = loaded
        if begun > max(
            self._verified.get(service, -math.inf), self._invalidated.get(service, -math.inf)
        ):
            self._verified[service] = begun
        return known

    async def _load_policy(self, service: str, service_id: int) -> _Live:
        record = await asyncio.to_thread(current_policy, service, engine=self.engine)
        policy = record.policy
        models = [(policy.champion, "champion")]
        models += [(ref, "challenger") for ref in policy.challengers]
        if policy.canary is not None:
            models.append((policy.canary, "canary"))
        await self.transport.prepare(service, record.revision, [ref for ref, _ in models])
        fallback = None
        if isinstance(policy.fallback, str):
            fallback = await asyncio.to_thread(self._load, policy.fallback)
        limits = (policy.limits or Limits()).resolved()
        spec = await asyncio.to_thread(self._input_spec, policy.champion)
        return _Live(
            service, service_id, record.revision, policy, tuple(models), fallback, limits, spec
        )

    def _input_spec(self, ref: str) -> InputSpec | None:
        """What the champion ``ref`` takes: a scikit-learn model takes rows of numbers."""
        name, _, number = ref.partition("@")
        version = get_version(name, int(number), engine=self.engine)
        if version.kind != "sklearn":
            return None  # a callable or heuristic may take anything
        n_features = version.flavor.get("n_features")
        return InputSpec(ref, numeric=True, n_features=n_features)

    async def limits(self, service: str) -> ResolvedLimits:
        """The limits of ``service``'s requests (the settings' defaults for an unknown one).

        Reads the service's policy if it is not loaded yet, so a web server
        knows the body limit before it reads the body.
        """
        known = self._live.get(service)
        if known is not None:
            return known.limits
        # Read, not loaded: a name that is no service must leave nothing behind here.
        return await asyncio.to_thread(self._read_limits, service)

    def _read_limits(self, service: str) -> ResolvedLimits:
        try:
            policy = current_policy(service, engine=self.engine).policy
        except ServeError:
            return Limits().resolved()  # the request gets its 404 (or 400) where it is answered
        return (policy.limits or Limits()).resolved()

    # --- requests -------------------------------------------------------------------------

    async def predict(
        self,
        service: str,
        instances: Sequence[Any],
        *,
        request_id: str | None = None,
        arrived: float | None = None,
    ) -> Answer:
        """Answer ``instances`` (a batch) for ``service`` by its current policy.

        ``arrived`` (a :func:`time.perf_counter` reading; default: now) is when
        the request reached the server: the schedule's times count from it, and
        a request that waited long to get here is shed (see the module).

        Raises :class:`InvalidRequestError` when the instances are malformed or
        the champion says they do not fit it, :class:`NoAnswerError` when no
        model answered and the fallback failed,
        :class:`~inloop.serve.policy.ServiceNotFoundError` for an unknown service.
        """
        now = time.perf_counter()
        start = now if arrived is None else min(arrived, now)
        # Time queued before getting here; loading a new policy below does not count.
        waited_ms = (now - start) * 1000.0
        received_at = datetime.now(UTC)
        live = await self.live(service)
        batch = check_instances(instances, live.limits, live.spec)
        job = Job(
            request_id=request_id or new_request_id(),
            service=service,
            revision=live.revision,
            models=live.models,
            instances=batch,
            expires_at=time.time() + self.collect_s,
            deadline_ms=live.policy.schedule.deadline_ms,
        )
        level, behind_ms = 0, 0.0
        if self.lag is not None:
            lag_ms = self.lag.lag_ms()
            level = shed_level(lag_ms, waited_ms, live.policy.schedule.deadline_ms)
            behind_ms = max(lag_ms, waited_ms)
        if level:
            futures, shed = self._shed(job, level, behind_ms)
        else:
            futures, shed = self.transport.submit(job), 0
        # A refused or unanswerable request raises here: nothing is archived for it.
        chosen = await self._choose(live, futures, start)
        answer_score = self._fallback(live, batch) if chosen is None else chosen
        latency = (time.perf_counter() - start) * 1000.0
        answer = Answer(
            request_id=job.request_id,
            service=service,
            revision=live.revision,
            model=answer_score.model or None,
            role=answer_score.role,
            fallback_used=answer_score.role == "fallback",
            predictions=answer_score.predictions or [],
            probabilities=answer_score.probabilities,
            classes=answer_score.classes,
            latency_ms=latency,
            overloaded=shed > 0,
        )
        if self.archive.journal is not None:
            self._journal(live, job, futures, received_at, answer, answer_score)
        self._collect(live, job, futures, received_at, answer, answer_score, start)
        return answer

    def refusal(self, service: str) -> str | None:
        """Why to refuse a request for ``service`` before any work on it, or None to take it.

        Only while shedding is on and the loop lags ``REFUSE_AFTER`` times the
        service's deadline (see :mod:`inloop.serve.overload`); a service whose
        policy is not loaded yet is always taken. The web app answers a
        refused request with HTTP 503 and ``Retry-After``.
        """
        live = self._live.get(service)
        if self.lag is None or live is None:
            return None
        lag_ms = self.lag.lag_ms()
        deadline_ms = live.policy.schedule.deadline_ms
        if not refuse(lag_ms, deadline_ms):
            return None
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 5.0:
            self._refusal_logged = now
            log.warning(
                "overloaded: refusing requests (%d so far); the loop is %.0f ms behind",
                self.refused,
                lag_ms,
            )
        return (
            f"The server is overloaded: it is {lag_ms:.0f} ms behind, {REFUSE_AFTER} or more "
            f"times the {deadline_ms} ms deadline of service {service!r}, so this request "
            "was not taken. Retry after a second, or spread the load over more servers."
        )

    def _shed(
        self, job: Job, level: int, behind_ms: float
    ) -> tuple[dict[str, asyncio.Future[Score]], int]:
        """Submit only the champion (level 1) or nothing (level 2); the rest are ``busy``.

        At level 1 the models whose call costs next to nothing (``bounded``)
        score too: dropping them would save nothing. Returns the futures and
        how many models were shed.
        """
        loop = asyncio.get_running_loop()
        kept: tuple[tuple[str, str], ...] = ()
        if level == 1:
            X = as_batch(job.instances)
            rest = job.models[1:]
            kept = job.models[:1] + tuple(m for m in rest if self.transport.bounded(m[0], X))
        futures = self.transport.submit(replace(job, models=kept)) if kept else {}
        why = f"not scored: the server was {behind_ms:.0f} ms behind (overloaded)"
        for ref, role in job.models:
            if ref not in futures:
                future: asyncio.Future[Score] = loop.create_future()
                future.set_result(Score(ref, role, "busy", error=why))
                futures[ref] = future
        return futures, len(job.models) - len(kept)

    async def _choose(
        self, live: _Live, futures: dict[str, asyncio.Future[Score]], start: float
    ) -> Score | None:
        policy = live.policy
        best = [policy.champion] + ([policy.canary] if policy.canary is not None else [])
        for step in policy.schedule.steps:
            if step.model == "fallback":
                break
            candidates = [policy.champion] if step.model == "champion" else best
            found = await self._first_ok(
                candidates, futures, start + step.by_ms / 1000.0, policy.champion
            )
            if found is not None:
                return found
        return None

    @staticmethod
    async def _first_ok(
        candidates: list[str],
        futures: dict[str, asyncio.Future[Score]],
        until: float,
        champion: str,
    ) -> Score | None:
        """The first candidate (in priority order) with an ok score by ``until``.

        Waits while a higher-priority candidate may still answer; at ``until``
        takes the best answer there is.
        """
        while True:
            pending = []
            for ref in candidates:
                future = futures[ref]
                if not future.done():
                    pending.append(future)
                    continue
                score = future.result()
                if score.status == "invalid" and ref == champion:
                    raise InvalidRequestError(
                        f"The instances do not fit the champion {ref}: {score.error}"
                    )
                if score.ok and not pending:
                    return score
            if not pending:
                return None
            remaining = until - time.perf_counter()
            if remaining <= 0:
                for ref in candidates:
                    future = futures[ref]
                    if future.done() and future.result().ok:
                        return future.result()
                return None
            await wait_first(pending, remaining)

    def _fallback(self, live: _Live, batch: list[Any]) -> Score:
        fallback = live.policy.fallback
        if isinstance(fallback, DefaultAnswer):
            return Score(
                model="",
                role="fallback",
                status="ok",
                predictions=[fallback.label] * len(batch),
            )
        assert live.fallback is not None
        score = score_model(live.fallback, np.asarray(batch), fallback, "fallback")
        if not score.ok:
            raise NoAnswerError(
                f"No model of service {live.service!r} answered by the deadline and its "
                f"fallback {fallback} failed too: {score.error}"
            )
        return score

    # --- archive --------------------------------------------------------------------------

    def _collect(
        self,
        live: _Live,
        job: Job,
        futures: dict[str, asyncio.Future[Score]],
        received_at: datetime,
        answer: Answer,
        answer_score: Score,
        start: float,
    ) -> None:
        """Archive the request once every score is in, or ``collect_s`` after it arrived.

        Callbacks on the futures and one timer, not a task per request: they
        cost the event loop less.
        """
        archive = partial(self._archive, live, job, futures, answer, answer_score, received_at)
        pending = [future for future in futures.values() if not future.done()]
        if not pending:
            archive()
            return
        key = object()
        left = len(pending)

        def finish() -> None:
            if self._collecting.pop(key, None) is None:
                return  # archived already
            timer.cancel()
            for future in pending:
                future.remove_done_callback(scored)
            archive()

        def scored(_: object) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                finish()

        timer = asyncio.get_running_loop().call_later(
            start + self.collect_s - time.perf_counter(), finish
        )
        self._collecting[key] = finish
        for future in pending:
            future.add_done_callback(scored)

    def _journal(
        self,
        live: _Live,
        job: Job,
        futures: dict[str, asyncio.Future[Score]],
        received_at: datetime,
        answer: Answer,
        answer_score: Score,
    ) -> None:
        """Journal the request as it stands, scores still to come as pending, before answering."""
        scores, pending = [], []
        for ref, role in job.models:
            future = futures[ref]
            if future.done() and not future.cancelled():
                scores.append(future.result())
            else:
                pending.append((ref, role))
        if answer.role == "fallback" and answer.model is not None:
            scores.append(answer_score)
        record = _record(live, job, received_at, answer, tuple(scores))
        assert self.archive.journal is not None
        self.archive.journal.append(job.request_id, record.journal_entry(pending))

    def _archive(
        self,
        live: _Live,
        job: Job,
        futures: dict[str, asyncio.Future[Score]],
        answer: Answer,
        answer_score: Score,
        received_at: datetime,
    ) -> None:
        """Hand the request with every score (a missing one as ``timeout``) to the archive."""
        roles = dict(job.models)
        scores = []
        for ref, future in futures.items():
            if future.done() and not future.cancelled():
                scores.append(future.result())
            else:
                scores.append(
                    Score(
                        ref,
                        roles[ref],
                        "timeout",
                        error=f"no score within {self.collect_s:g} s of the request",
                    )
                )
        if answer.role == "fallback" and answer.model is not None:
            scores.append(answer_score)
        self.archive.put(_record(live, job, received_at, answer, tuple(scores)))


def _record(
    live: _Live, job: Job, received_at: datetime, answer: Answer, scores: tuple[Score, ...]
) -> ArchivedRequest:
    return ArchivedRequest(
        request_id=job.request_id,
        service=job.service,
        service_id=live.service_id,
        revision=live.revision,
        policy=live.policy,
        received_at=received_at,
        instances=job.instances,
        n_instances=len(job.instances),
        model=answer.model,
        role=answer.role,
        fallback_used=answer.fallback_used,
        predictions=answer.predictions,
        latency_ms=answer.latency_ms,
        scores=scores,
    )
