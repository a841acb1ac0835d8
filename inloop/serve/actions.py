"""Webhook actions: which answered instances trigger one, and their delivery with retries.

A service's policy may list :class:`~inloop.serve.policy.Action` webhooks.
Once a request is answered and archived, :meth:`ActionDispatcher.dispatch`
finds the instances each action matches (:func:`matching`), records one
``serve_deliveries`` row per match (status ``'pending'``) and hands them to a
few worker threads, so the caller never waits on a receiver.

An action makes at most ``max_per_request`` deliveries for one request and
``max_per_second`` a second (a token bucket per action, in this process):
the matches past either limit are not sent, and one ``'dropped'`` row per
request and action counts them (its payload's ``dropped``,
``over_request_limit`` and ``over_rate_limit``). A delivery goes only where
:mod:`inloop.serve.destinations` allows, checked against the addresses the
host resolves to at each connection; a refused one is recorded
``'refused'``, and nothing is sent.

A delivery is an HTTP POST of the row's JSON payload with the action's
headers plus ``X-Inloop-Delivery`` (the delivery id, for the receiver to drop
duplicates) and ``X-Inloop-Attempt`` (1, 2, ...). A 2xx answer marks it
``'delivered'``. A failure (another status, a connection error, a timeout) is
retried after ``backoff_s * 2**(attempt - 1)`` seconds, at most
``max_backoff_s``, until the action's ``max_attempts``, then marked
``'failed'``; a 4xx other than 408 and 429 fails at once, since the receiver
said the request itself is wrong. Waiting retries sit in a heap, not in a
thread. The row is updated after every attempt; :func:`list_deliveries`
reads them back.

>>> from inloop.serve.policy import Action
>>> hook = Action(name="alert", url="http://127.0.0.1:9/hook",
...               when={"label": "spam", "min_probability": 0.8})
>>> [(a.name, i, p) for a, i, p in matching([hook], ["spam", "ham", "spam"],
...                                         [[0.1, 0.9], [0.7, 0.3], [0.3, 0.7]],
...                                         ["ham", "spam"])]
[('alert', 0, 0.9)]
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Connection, Engine, bindparam, select

from inloop.serve.destinations import AllowList, DestinationRefusedError, GuardedTransport
from inloop.serve.models import ServeError
from inloop.serve.policy import Action, Policy, find_service_id
from inloop.serve.redaction import mask_url
from inloop.serve.tables import (
    DELIVERY_STATUSES,
    serve_deliveries,
    serve_policies,
)
from inloop.store.db import begin_write, get_engine

if TYPE_CHECKING:
    from inloop.serve.archive import ArchivedRequest

__all__ = [
    "ActionDispatcher",
    "Delivery",
    "list_deliveries",
    "matching",
]

logger = logging.getLogger("inloop.serve.actions")

# Receivers answering these 4xx may accept the same request later (timeout, rate limit).
_RETRYABLE_4XX = (408, 429)
_Match = tuple[Action, int, float | None]  # (action, position, probability), as matching gives
_BODY_CHARS = 200
_ERROR_CHARS = 1000


def _same(label: Any, prediction: Any) -> bool:
    # Exact equality, except that True must not match 1 (Python says True == 1).
    return bool(label == prediction) and isinstance(label, bool) == isinstance(prediction, bool)


def _probability(
    probabilities: Sequence[Sequence[float]] | None,
    classes: Sequence[Any] | None,
    position: int,
    prediction: Any,
) -> float | None:
    if probabilities is None or classes is None:
        return None
    for column, label in enumerate(classes):
        if _same(label, prediction):
            return float(probabilities[position][column])
    return None  # the prediction is not one of the classes: nothing to read


def matching(
    actions: Sequence[Action],
    predictions: Sequence[Any],
    probabilities: Sequence[Sequence[float]] | None,
    classes: Sequence[Any] | None,
) -> list[tuple[Action, int, float | None]]:
    """The ``(action, position, probability)`` of every instance each action matches.

    Instance ``i`` matches an action when ``when.label`` is None or equals
    ``predictions[i]`` exactly (``"3"`` does not match ``3``, nor ``True``
    ``1``), and the probability of the predicted class is at least
    ``when.min_probability``. The probability is None when the answer has
    none (a default answer) or does not list the predicted class; such an
    instance matches only actions whose ``min_probability`` is 0. Results
    are by instance, then in the order of ``actions``.

    >>> from inloop.serve.policy import Action
    >>> any_ = Action(name="any", url="http://127.0.0.1:9/")
    >>> sure = Action(name="sure", url="http://127.0.0.1:9/", when={"min_probability": 0.5})
    >>> [(a.name, i, p) for a, i, p in matching([any_, sure], [3, "3"], None, None)]
    [('any', 0, None), ('any', 1, None)]
    """
    out: list[tuple[Action, int, float | None]] = []
    if not actions:
        return out
    for position, prediction in enumerate(predictions):
        probability = _probability(probabilities, classes, position, prediction)
        for action in actions:
            rule = action.when
            if rule.label is not None and not _same(rule.label, prediction):
                continue
            if probability is None:
                if rule.min_probability > 0:
                    continue
            elif probability < rule.min_probability:
                continue
            out.append((action, position, probability))
    return out


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: what was (or will be) posted where, and how it went.

    ``status`` is one of ``DELIVERY_STATUSES``; ``attempts`` counts the POSTs
    made so far; ``response_status`` and ``error`` describe the last one
    (both None before the first).
    """

    delivery_id: int
    request_id: str
    service: str
    action: str
    url: str
    payload: dict[str, Any]
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The delivery as JSON, its URL masked past the host (the REST API's shape)."""
        shown = mask_url(self.url)
        return {
            "delivery_id": self.delivery_id,
            "request_id": self.request_id,
            "action": self.action,
            "url": shown,
            "status": self.status,
            "attempts": self.attempts,
            "response_status": self.response_status,
            "error": None if self.error is None else self.error.replace(self.url, shown),
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass
class _Task:
    """A delivery waiting for, or making, its next attempt."""

    delivery_id: int
    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    timeout_s: float
    max_attempts: int
    attempt: int  # the number of the next attempt, from 1


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    task: _Task = field(compare=False)


class ActionDispatcher:
    """Delivers webhook actions on worker threads, retrying with backoff, recording each try.

    One ``httpx.Client`` (``client``, or one the dispatcher makes and closes)
    is shared by the ``threads`` workers, so connections are reused. The
    dispatcher's own client connects only where ``INLOOP_WEBHOOK_ALLOW``
    allows (see :mod:`inloop.serve.destinations`); a ``client`` given is used
    as it is. Use it as
    a context manager, or call :meth:`start` and :meth:`stop`. Deliveries
    queued before :meth:`start` wait for it; deliveries still queued at
    :meth:`stop` stay ``'pending'`` in the database, for
    :meth:`resume_pending` to pick up (the server calls it on startup).

    >>> from inloop.store import get_engine
    >>> with ActionDispatcher(get_engine("sqlite://"), threads=1) as dispatcher:
    ...     dispatcher.dispatch(service_id=1, service="s", request_id="r-1", revision=1,
    ...                         model="m@1", actions=[], predictions=["a"],
    ...                         probabilities=None, classes=None)
    []
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        threads: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ServeError(
                f"The 'threads' of ActionDispatcher must be an int >= 1. Got {threads!r}."
            )
        for name, value in (("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ServeError(
                    f"The {name!r} of ActionDispatcher must be a number of seconds >= 0. "
                    f"Got {value!r}."
                )
        self.engine = engine if engine is not None else get_engine()
        self.threads = threads
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._owns_client = client is None
        if client is None:
            transport = GuardedTransport(AllowList.from_settings())
            client = httpx.Client(transport=transport, follow_redirects=False)
        self._client = client
        # (service id, action) -> (tokens, when counted): each action's deliveries a second.
        self._buckets: dict[tuple[int, str], tuple[float, float]] = {}
        self._limits = threading.Lock()
        self._cond = threading.Condition()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._known: set[int] = set()  # queued or in flight: resume_pending must skip them
        # Deliveries settled while a resume_pending reads the table: its rows may be stale.
        self._resuming = 0
        self._settled: set[int] = set()
        self._workers: list[threading.Thread] = []
        self._alive = 0
        self._started = False
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> ActionDispatcher:
        """Start the worker threads (once); returns the dispatcher."""
        with self._cond:
            if self._stopping:
                raise ServeError(
                    "This ActionDispatcher was stopped and cannot start again; "
                    "create a new one (and call resume_pending() to requeue its deliveries)."
                )
            if self._started:
                return self
            self._started = True
            self._alive = self.threads
        for n in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"inloop-actions-{n}", daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking deliveries; wait up to ``timeout`` s for the attempts in progress.

        Deliveries still queued (or waiting for a retry) are dropped from
        memory and stay ``'pending'`` in the database.
        """
        with self._cond:
            self._stopping = True
            dropped = len(self._heap)
            for due in self._heap:
                self._forget(due.task.delivery_id)
            self._heap.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + max(0.0, timeout)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            # Dropped tasks are no longer ours; an attempt still running removes its own.
            close_now = self._alive == 0 and self._owns_client
            self._owns_client = self._owns_client and not close_now
        if dropped:
            logger.info("stopped with %d deliveries left pending", dropped)
        if close_now:
            self._client.close()

    def __enter__(self) -> ActionDispatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queueing ------------------------------------------------------------------

    def dispatch(
        self,
        *,
        service_id: int,
        service: str,
        request_id: str,
        revision: int,
        model: str | None,
        actions: Sequence[Action],
        predictions: list[Any],
        probabilities: list[list[float]] | None,
        classes: list[Any] | None,
    ) -> list[int]:
        """Record a delivery for every instance an action matches, and queue them; their ids.

        The rows are inserted in one transaction, status ``'pending'``, their
        payload the JSON body to POST. Matches past an action's
        ``max_per_request`` or ``max_per_second`` are not sent: one
        ``'dropped'`` row per action counts them. Nothing touches the database
        when no action matches. Returns at once: delivery happens on the workers.
        """
        matches = matching(actions, predictions, probabilities, classes)
        if not matches:
            return []
        matches, dropped = self._limit(service_id, matches)
        now = datetime.now(UTC)
        about = {"service": service, "request_id": request_id, "model": model, "revision": revision}
        bodies = [
            {
                **about,
                "action": action.name,
                "position": position,
                "prediction": predictions[position],
                "probability": probability,
            }
            for action, position, probability in matches
        ]
        rows = [
            _row(service_id, action, body, now, status="pending")
            for (action, _, _), body in zip(matches, bodies, strict=True)
        ]
        drops = [_dropped_row(service_id, about, now, *counts) for counts in dropped]
        with begin_write(self.engine) as conn:
            ids = self._insert(conn, rows, bodies) if rows else []
            if drops:
                conn.execute(serve_deliveries.insert(), drops)
        if drops:
            logger.info(
                "request %s: %d webhook deliveries dropped by the actions' limits",
                request_id,
                sum(row["payload"]["dropped"] for row in drops),
            )
        self._enqueue(
            _task(delivery_id, action, body, attempts=0)
            for delivery_id, (action, _, _), body in zip(ids, matches, bodies, strict=True)
        )
        return ids

    @staticmethod
    def _insert(
        conn: Connection, rows: list[dict[str, Any]], bodies: list[dict[str, Any]]
    ) -> list[int]:
        ids = [
            int(i)
            for i in conn.execute(
                serve_deliveries.insert().returning(
                    serve_deliveries.c.delivery_id, sort_by_parameter_order=True
                ),
                rows,
            ).scalars()
        ]
        # The payload names its own delivery id, known only once the row exists.
        for body, delivery_id in zip(bodies, ids, strict=True):
            body["delivery_id"] = delivery_id
        conn.execute(
            serve_deliveries.update()
            .where(serve_deliveries.c.delivery_id == bindparam("b_id"))
            .values(payload=bindparam("b_payload")),
            [{"b_id": i, "b_payload": b} for i, b in zip(ids, bodies, strict=True)],
        )
        return ids

    def _limit(
        self, service_id: int, matches: list[_Match]
    ) -> tuple[list[_Match], list[tuple[Action, int, int]]]:
        """The matches each action may send now, and ``(action, past per request, past rate)``.

        Each action's ``max_per_second`` is a token bucket holding at most one
        second's worth (and at least one delivery).
        """
        by_action: dict[str, list[_Match]] = {}
        for match in matches:
            by_action.setdefault(match[0].name, []).append(match)
        kept: set[tuple[str, int]] = set()
        dropped = []
        now = time.monotonic()
        with self._limits:
            for name, found in by_action.items():
                action = found[0][0]
                allowed = found[: action.max_per_request]
                rate, key = action.max_per_second, (service_id, name)
                tokens, counted = self._buckets.get(key, (max(1.0, rate), now))
                tokens = min(max(1.0, rate), tokens + (now - counted) * rate)
                n = min(len(allowed), int(tokens))
                self._buckets[key] = (tokens - n, now)
                kept.update((name, position) for _, position, _ in allowed[:n])
                if n < len(found):
                    dropped.append((action, len(found) - len(allowed), len(allowed) - n))
        return [m for m in matches if (m[0].name, m[1]) in kept], dropped

    def on_archived(self, batch: Sequence[ArchivedRequest]) -> None:
        """An :class:`~inloop.serve.archive.ArchiveWriter` hook: dispatch each request's matches."""
        for record in batch:
            if not record.policy.actions:
                continue
            answering = next(
                (s for s in record.scores if record.model is not None and s.model == record.model),
                None,
            )
            self.dispatch(
                service_id=record.service_id,
                service=record.service,
                request_id=record.request_id,
                revision=record.revision,
                model=record.model,
                actions=record.policy.actions,
                predictions=record.predictions,
                probabilities=None if answering is None else answering.probabilities,
                classes=None if answering is None else answering.classes,
            )

    def resume_pending(self, service: str | None = None) -> int:
        """Queue again every delivery still ``'pending'`` in the database; how many.

        For deliveries a stopped or crashed process left behind. Those this
        dispatcher already has queued or in flight are skipped. The action's
        headers, timeout and attempts come from the policy revision that
        triggered the delivery. Two processes resuming the same rows at once
        would both deliver them: receivers drop duplicates by
        ``X-Inloop-Delivery``.
        """
        with self._cond:
            self._resuming += 1
            skip = set(self._known)
        try:
            tasks = self._pending_tasks(service)
        finally:
            with self._cond:
                skip |= self._settled
                self._resuming -= 1
                if self._resuming == 0:
                    self._settled.clear()
        return self._enqueue(t for t in tasks if t.delivery_id not in skip)

    def _pending_tasks(self, service: str | None) -> list[_Task]:
        """A task for every pending row (of ``service``), configured by its policy's action."""
        query = select(
            serve_deliveries.c.delivery_id,
            serve_deliveries.c.service_id,
            serve_deliveries.c.action,
            serve_deliveries.c.url,
            serve_deliveries.c.payload,
            serve_deliveries.c.attempts,
        ).where(serve_deliveries.c.status == "pending")
        with self.engine.connect() as conn:
            if service is not None:
                service_id = find_service_id(conn, service)
                query = query.where(serve_deliveries.c.service_id == service_id)
            rows = conn.execute(query.order_by(serve_deliveries.c.delivery_id)).all()
            policies: dict[tuple[int, int], Policy | None] = {}
            for row in rows:
                key = (int(row.service_id), int(row.payload.get("revision", 0)))
                if key not in policies:
                    body = conn.execute(
                        select(serve_policies.c.body).where(
                            serve_policies.c.service_id == key[0],
                            serve_policies.c.revision == key[1],
                        )
                    ).scalar()
                    policies[key] = None if body is None else Policy.model_validate(body)
        tasks = []
        for row in rows:
            policy = policies[(int(row.service_id), int(row.payload.get("revision", 0)))]
            action = next(
                (a for a in (policy.actions if policy else ()) if a.name == row.action), None
            )
            if action is None:
                # The policy no longer says how: deliver with the defaults.
                action = Action(name=row.action, url=row.url)
            elif action.url != row.url:
                action = action.model_copy(update={"url": row.url})
            tasks.append(_task(int(row.delivery_id), action, row.payload, int(row.attempts)))
        return tasks

    def _forget(self, delivery_id: int) -> None:
        """The delivery is no longer queued here (call holding the lock)."""
        self._known.discard(delivery_id)
        if self._resuming:
            self._settled.add(delivery_id)

    def _enqueue(self, tasks: Iterable[_Task]) -> int:
        n = 0
        with self._cond:
            if self._stopping:
                return 0  # recorded as pending; a later resume_pending delivers them
            now = time.monotonic()
            for task in tasks:
                if task.delivery_id in self._known:
                    continue
                self._known.add(task.delivery_id)
                heapq.heappush(self._heap, _Due(now, next(self._seq), task))
                n += 1
            self._cond.notify(n)
        return n

    # -- the workers ---------------------------------------------------------------

    def _next(self) -> _Task | None:
        """The next task due, waiting for it; None once stopping."""
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].at - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap).task
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        try:
            while (task := self._next()) is not None:
                try:
                    self._attempt(task)
                except Exception:
                    # A database fault must not kill the worker; the row stays as it was.
                    logger.exception("delivery %d: could not record an attempt", task.delivery_id)
                    with self._cond:
                        self._forget(task.delivery_id)
        finally:
            with self._cond:
                self._alive -= 1
                close = self._alive == 0 and self._stopping and self._owns_client
                if close:
                    self._owns_client = False
            if close:
                self._client.close()

    def _attempt(self, task: _Task) -> None:
        attempt = task.attempt
        headers = {
            **task.headers,
            "X-Inloop-Delivery": str(task.delivery_id),
            "X-Inloop-Attempt": str(attempt),
        }
        status_code: int | None = None
        error: str | None
        refused = False
        try:
            response = self._client.post(
                task.url, json=task.payload, headers=headers, timeout=task.timeout_s
            )
        except DestinationRefusedError as exc:
            error, retry, refused = str(exc), False, True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            retry = True
        else:
            status_code = response.status_code
            if 200 <= status_code < 300:
                error, retry = None, False
            else:
                error = f"HTTP {status_code}: {response.text[:_BODY_CHARS]}"
                retry = not (400 <= status_code < 500 and status_code not in _RETRYABLE_4XX)
        if error is None:
            status = "delivered"
        elif refused:
            status = "refused"
        elif retry and attempt < task.max_attempts:
            status = "pending"
        else:
            status = "failed"
        with begin_write(self.engine) as conn:
            conn.execute(
                serve_deliveries.update()
                .where(serve_deliveries.c.delivery_id == task.delivery_id)
                .values(
                    status=status,
                    attempts=attempt,
                    response_status=status_code,
                    error=None if error is None else error[:_ERROR_CHARS],
                    updated_at=datetime.now(UTC),
                )
            )
        if status in ("failed", "refused"):
            logger.warning(
                "delivery %d of %s to %s %s after %d attempt(s): %s",
                task.delivery_id,
                task.payload.get("action"),
                mask_url(task.url),  # the rest of the URL may hold a token
                status,
                attempt,
                error,
            )
        with self._cond:
            if status != "pending" or self._stopping:
                self._forget(task.delivery_id)
                return
            task.attempt = attempt + 1
            delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
            heapq.heappush(self._heap, _Due(time.monotonic() + delay, next(self._seq), task))
            self._cond.notify()


def _row(
    service_id: int, action: Action, body: dict[str, Any], now: datetime, *, status: str
) -> dict[str, Any]:
    return {
        "request_id": body["request_id"],
        "service_id": service_id,
        "action": action.name,
        "url": action.url,
        "payload": body,
        "status": status,
        "attempts": 0,
        "response_status": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def _dropped_row(
    service_id: int,
    about: dict[str, Any],
    now: datetime,
    action: Action,
    past_request: int,
    past_rate: int,
) -> dict[str, Any]:
    """The ``'dropped'`` row counting one request's matches of ``action`` that were not sent."""
    body = {
        **about,
        "action": action.name,
        "dropped": past_request + past_rate,
        "over_request_limit": past_request,
        "over_rate_limit": past_rate,
    }
    row = _row(service_id, action, body, now, status="dropped")
    row["error"] = (
        f"{past_request + past_rate} matching instance(s) not sent: {past_request} past "
        f"max_per_request={action.max_per_request}, {past_rate} past "
        f"max_per_second={action.max_per_second:g}"
    )
    return row


def _task(delivery_id: int, action: Action, payload: Mapping[str, Any], attempts: int) -> _Task:
    return _Task(
        delivery_id=delivery_id,
        url=action.url,
        payload=dict(payload),
        headers=dict(action.headers),
        timeout_s=action.timeout_s,
        max_attempts=action.max_attempts,
        attempt=attempts + 1,
    )


def list_deliveries(
    service: str,
    *,
    status: str | None = None,
    limit: int = 100,
    engine: Engine | None = None,
) -> list[Delivery]:
    """The service's newest ``limit`` deliveries, newest first; only ``status`` ones if given.

    Raises :class:`~inloop.serve.policy.ServiceNotFoundError` for an unknown
    service and :class:`~inloop.serve.models.ServeError` for a bad ``status``
    or ``limit``.
    """
    if status is not None and status not in DELIVERY_STATUSES:
        raise ServeError(
            f"The 'status' of list_deliveries must be one of {', '.join(DELIVERY_STATUSES)} "
            f"or None for all. Got {status!r}."
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ServeError(f"The 'limit' of list_deliveries must be an int >= 1. Got {limit!r}.")
    eng = engine if engine is not None else get_engine()
    with eng.connect() as conn:
        service_id = find_service_id(conn, service)
        query = select(serve_deliveries).where(serve_deliveries.c.service_id == service_id)
        if status is not None:
            query = query.where(serve_deliveries.c.status == status)
        rows = conn.execute(
            query.order_by(
                serve_deliveries.c.created_at.desc(), serve_deliveries.c.delivery_id.desc()
            ).limit(limit)
        ).all()
    return [
        Delivery(
            delivery_id=int(r.delivery_id),
            request_id=r.request_id,
            service=service,
            action=r.action,
            url=r.url,
            payload=dict(r.payload),
            status=r.status,
            attempts=int(r.attempts),
            response_status=r.response_status,
            error=r.error,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
