"""The decoy: every request, every model's score and the answer, archived off the critical path.

The rendezvous hands each answered request to an :class:`ArchiveWriter` (a
non-blocking queue put); one background thread writes batches of requests and
their scores in one transaction each, then runs its hooks (review routing,
webhook actions) on what it wrote. In a server the thread hands the writing to
a child process (:mod:`inloop.serve.archive_process`), so that it does not
compete with the event loop for the GIL. A request is in the database a few
tens of milliseconds after it was answered; :meth:`ArchiveWriter.flush` waits
for it.

Reading the archive: :func:`get_request` (a request with its scores and
feedback), :func:`list_requests`, :func:`count_requests`; attaching a true
label later: :func:`add_feedback`.

>>> from inloop.store import get_engine
>>> writer = ArchiveWriter(get_engine("sqlite://"))
>>> writer.stats()
{'queued': 0, 'written': 0, 'dropped': 0, 'failed_batches': 0}
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from inloop.serve.archive_process import ArchiveProcess, ArchiveProcessError
from inloop.serve.feedback import Feedback, check_giver, feedback_of, insert_events
from inloop.serve.journal import Journal, orphans
from inloop.serve.models import ServeError
from inloop.serve.policy import Policy, current_policy, find_service_id
from inloop.serve.queues import drain, take_batch
from inloop.serve.scoring import Score
from inloop.serve.tables import serve_policies, serve_requests, serve_scores
from inloop.store.db import begin_write, get_engine, is_memory_database

__all__ = [
    "ArchiveWriter",
    "ArchivedRequest",
    "Feedback",
    "RequestNotFoundError",
    "RequestView",
    "add_feedback",
    "count_requests",
    "get_request",
    "insert_rows",
    "list_requests",
]

log = logging.getLogger("inloop.serve.archive")

#: A hook runs in the writer thread after each batch is committed.
Hook = Callable[[Sequence["ArchivedRequest"]], None]


class RequestNotFoundError(ServeError, LookupError):
    """No archived request has that id (in that service)."""


@dataclass(frozen=True)
class ArchivedRequest:
    """One answered request as the writer archives it.

    ``instances`` is None when the policy's decoy is off (the inputs are not
    kept); ``model`` is the reference that answered (None for a default
    answer); ``scores`` holds every model's score, the fallback's too when it
    answered.
    """

    request_id: str
    service: str
    service_id: int
    revision: int
    policy: Policy
    received_at: datetime
    instances: list[Any] | None
    n_instances: int
    model: str | None
    role: str
    fallback_used: bool
    predictions: list[Any]
    latency_ms: float
    scores: tuple[Score, ...]

    def request_row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "service_id": self.service_id,
            "revision": self.revision,
            "received_at": self.received_at,
            "n_instances": self.n_instances,
            "inputs": self.instances if self.policy.decoy else None,
            "model": self.model,
            "role": self.role,
            "fallback_used": self.fallback_used,
            "predictions": self.predictions,
            "latency_ms": self.latency_ms,
        }

    def journal_entry(self, pending: Sequence[tuple[str, str]] = ()) -> tuple[Any, ...]:
        """This request as a journal record: plain values, the policy by its revision.

        ``pending`` names the models, ``(ref, role)``, whose scores had not come
        yet; :meth:`from_journal` archives them as ``timeout``.
        """
        return (
            _JOURNAL_FORMAT,
            self.request_id,
            self.service,
            self.service_id,
            self.revision,
            self.received_at.timestamp(),
            self.instances if self.policy.decoy else None,  # no decoy: inputs are not kept
            self.n_instances,
            self.model,
            self.role,
            self.fallback_used,
            self.predictions,
            self.latency_ms,
            tuple(_score_values(s) for s in self.scores),
            tuple(pending),
        )

    @classmethod
    def from_journal(cls, entry: Sequence[Any], policy: Policy) -> ArchivedRequest:
        """The request a :meth:`journal_entry` record holds, under its revision's ``policy``."""
        (_, request_id, service, service_id, revision, received_at, instances, n) = entry[:8]
        model, role, fallback_used, predictions, latency_ms, scores, pending = entry[8:15]
        lost = "the server stopped before this score came"
        return cls(
            request_id=request_id,
            service=service,
            service_id=service_id,
            revision=revision,
            policy=policy,
            received_at=datetime.fromtimestamp(received_at, UTC),
            instances=instances,
            n_instances=n,
            model=model,
            role=role,
            fallback_used=fallback_used,
            predictions=predictions,
            latency_ms=latency_ms,
            scores=(
                *(Score(*values) for values in scores),
                *(Score(ref, model_role, "timeout", error=lost) for ref, model_role in pending),
            ),
        )

    def score_rows(self) -> list[dict[str, Any]]:
        seen: set[str] = set()
        rows = []
        for score in self.scores:
            if score.model in seen:  # a model listed twice (say, fallback and canary) once
                continue
            seen.add(score.model)
            row = score.to_dict()
            row["request_id"] = self.request_id
            rows.append(row)
        return rows


#: The layout of a journal record (the first value of each); a new layout gets a new number.
_JOURNAL_FORMAT = 1


def _score_values(score: Score) -> tuple[Any, ...]:
    # The fields in order: a tuple pickles several times faster than the dataclass.
    return (
        score.model,
        score.role,
        score.status,
        score.predictions,
        score.probabilities,
        score.classes,
        score.latency_ms,
        score.error,
    )


def insert_rows(conn: Any, request_rows: Sequence[Any], score_rows: Sequence[Any]) -> None:
    """Insert archived requests' rows and their scores' rows (in the caller's transaction)."""
    if request_rows:
        conn.execute(serve_requests.insert(), list(request_rows))
    if score_rows:
        conn.execute(serve_scores.insert(), list(score_rows))


def _rows(requests: Sequence[ArchivedRequest]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [r.request_row() for r in requests], [row for r in requests for row in r.score_rows()]


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    written_cond: threading.Condition = field(init=False)
    submitted: int = 0
    written: int = 0  # requests handled (written or given up on), in submission order
    stored: int = 0
    dropped: int = 0
    failed_batches: int = 0

    def __post_init__(self) -> None:
        self.written_cond = threading.Condition(self.lock)


class ArchiveWriter:
    """Write archived requests in batches from one background thread.

    The writer takes whatever is queued, and then waits ``linger_s`` after a
    batch's first request for more (unless :meth:`flush` or :meth:`close`
    hurries it): fewer, larger transactions cost less CPU (the writer's own:
    0.26 ms per request written alone, 0.09 ms in batches of 16). Within a
    batch's one transaction, ``chunk`` requests at a time go to the database,
    with a ``pause_s`` sleep between chunks. A thread that lets go of the GIL
    only for a database call takes it back before a waiting thread wakes, so
    without the pauses the event loop would wait for the whole batch, and
    answers with it.

    ``put`` never blocks: when ``max_queue`` requests wait already, the new
    one is dropped, counted and logged (the server keeps answering). A batch
    that fails to write is retried ``retries`` times, a second apart, before
    it is dropped. ``hooks`` run after each committed batch, in the writer
    thread; an exception in a hook is logged and does not stop the writer.

    With ``process`` the thread has a child process write each batch (see
    :mod:`inloop.serve.archive_process`) and waits for it without holding the
    GIL; the chunks and pauses are not needed then. A child that dies is
    replaced; if none can start, the thread writes itself, with a warning.
    An in-memory SQLite database cannot be shared with a child: ``process``
    is refused for one.

    With a ``journal`` (:class:`~inloop.serve.journal.Journal`, opened by
    :meth:`start`), the rendezvous journals each answered request before its
    answer leaves and the writer tells the journal what it committed. On
    start, the thread first archives what the journals of dead processes in
    the same folder hold and the database does not (their hooks run too);
    :attr:`recovered` counts them.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        hooks: Sequence[Hook] = (),
        max_batch: int = 500,
        max_queue: int = 100_000,
        retries: int = 3,
        linger_s: float = 0.02,
        chunk: int = 4,
        pause_s: float = 0.0002,
        process: bool = False,
        journal: Journal | None = None,
    ) -> None:
        if linger_s < 0 or pause_s < 0 or max_batch < 1 or chunk < 1:
            raise ServeError(
                "ArchiveWriter needs max_batch >= 1, chunk >= 1, linger_s >= 0 and "
                f"pause_s >= 0. Got {max_batch!r}, {chunk!r}, {linger_s!r} and {pause_s!r}."
            )
        self.engine = engine if engine is not None else get_engine()
        self._process: ArchiveProcess | None = None
        if process:
            if is_memory_database(self.engine):
                raise ServeError(
                    "An in-memory SQLite database cannot be written from another process: "
                    "use process=False with it, or a database file or server."
                )
            self._process = ArchiveProcess(self.engine.url.render_as_string(hide_password=False))
        self.hooks = list(hooks)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._chunk = chunk
        self._pause_s = pause_s
        self._hurry = threading.Event()  # set by flush() and close(): write without lingering
        self._retries = retries
        self._queue: queue.Queue[ArchivedRequest | None] = queue.Queue(max_queue)
        self._state = _State()
        self._thread: threading.Thread | None = None
        #: Where answered requests are journaled before their answers leave (None: nowhere).
        self.journal = journal
        #: Requests archived from dead processes' journals since :meth:`start`.
        self.recovered = 0

    def start(self) -> ArchiveWriter:
        """Start the writer thread (once); returns self."""
        if self._thread is None:
            if self.journal is not None and self.journal.path is None:
                self.journal.open()
            self._thread = threading.Thread(target=self._run, name="inloop-archive", daemon=True)
            self._thread.start()
        return self

    def put(self, record: ArchivedRequest) -> bool:
        """Queue ``record`` for writing; False when the queue was full and it was dropped."""
        state = self._state
        with state.lock:
            state.submitted += 1
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            with state.lock:
                state.dropped += 1
                state.written += 1
                state.written_cond.notify_all()
            log.error(
                "archive queue full: request %s of %s dropped", record.request_id, record.service
            )
            return False

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every request put so far is written and the hooks ran; False on timeout."""
        state = self._state
        self._hurry.set()
        with state.lock:
            target = state.submitted
            return state.written_cond.wait_for(lambda: state.written >= target, timeout)

    def stats(self) -> dict[str, int]:
        """Requests queued, written, dropped, and batches that failed for good."""
        state = self._state
        with state.lock:
            return {
                "queued": state.submitted - state.written,
                "written": state.stored,
                "dropped": state.dropped,
                "failed_batches": state.failed_batches,
            }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._hurry.set()
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self.journal is not None:
            self.journal.close()

    @property
    def process_pid(self) -> int | None:
        """The writer process's pid while one is running (None when the thread writes)."""
        return self._process.pid if self._process is not None else None

    def _start_process(self) -> None:
        """Start the writer process; without one, this thread writes from now on."""
        assert self._process is not None
        try:
            self._process.start()
        except ArchiveProcessError as exc:
            log.warning("archive: the writer process did not start (%s); writing here", exc)
            self._process = None

    def _run(self) -> None:
        if self._process is not None:
            self._start_process()
        try:
            if self.journal is not None:
                self._recover(self.journal)
            self._serve()
        finally:
            if self._process is not None:
                self._process.close()

    def _serve(self) -> None:
        stop = False
        while not stop:
            batch, stop = take_batch(self._queue, self._max_batch)
            if batch and not stop and len(batch) < self._max_batch:
                if self._linger_s > 0:
                    self._hurry.wait(self._linger_s)
                # Cleared before draining: a flush() from now on hurries the next batch.
                self._hurry.clear()
                stop = drain(self._queue, batch, self._max_batch)
            if batch:
                self._write(batch)

    def _write_here(self, batch: list[ArchivedRequest]) -> None:
        if not batch:
            return
        with begin_write(self.engine) as conn:
            for i in range(0, len(batch), self._chunk):
                if i and self._pause_s:
                    time.sleep(self._pause_s)  # the event loop's turn for the GIL
                insert_rows(conn, *_rows(batch[i : i + self._chunk]))

    def _write_there(self, batch: list[ArchivedRequest]) -> None:
        assert self._process is not None
        try:
            self._process.write(*_rows(batch))
        except ArchiveProcessError as exc:
            # Gone (killed, crashed): a new one writes the batch, or this thread does. It may
            # have died after committing: what is stored already is not written twice.
            log.warning("archive: %s; starting a new one", exc)
            batch = self._not_stored(batch)
            self._start_process()
            if self._process is None:
                self._write_here(batch)
            elif batch:
                self._process.write(*_rows(batch))

    def _recover(self, journal: Journal) -> None:
        """Archive what dead processes' journals hold and the database does not, then drop them."""
        assert journal.path is not None
        policies: dict[tuple[int, int], Policy | None] = {}
        for orphan in orphans(journal.path.parent, exclude=journal.path):
            try:
                recovered, lost = self._replay(orphan.records(), policies)
            except Exception:
                log.exception("archive: replaying the journal %s failed; kept", orphan.path)
                orphan.release()
                continue
            self.recovered += recovered
            if recovered or lost:
                log.warning(
                    "archive: %d answered requests recovered from the journal of a server that "
                    "stopped before archiving them (%s)%s",
                    recovered,
                    orphan.path.name,
                    f"; {lost} could not be written and are lost" if lost else "",
                )
            orphan.remove()

    def _replay(
        self, entries: Iterator[tuple[Any, ...]], policies: dict[tuple[int, int], Policy | None]
    ) -> tuple[int, int]:
        """Write the journaled requests the database lacks; how many were written and lost."""
        written = lost = 0
        batch: list[ArchivedRequest] = []
        for entry in itertools.chain(entries, [None]):
            if entry is not None:
                record = self._from_journal(entry, policies)
                if record is None:
                    lost += 1
                else:
                    batch.append(record)
            if batch and (entry is None or len(batch) >= self._max_batch):
                todo = self._not_stored(batch)
                batch = []
                if todo and self._commit(todo, 0):
                    written += len(todo)
                    continue
                for one in todo:  # one by one: a request the database refuses costs only itself
                    if not self._not_stored([one]):
                        continue  # written meanwhile, by another process
                    if self._commit([one], 0):
                        written += 1
                    else:
                        lost += 1
        return written, lost

    def _from_journal(
        self, entry: tuple[Any, ...], policies: dict[tuple[int, int], Policy | None]
    ) -> ArchivedRequest | None:
        if not entry or entry[0] != _JOURNAL_FORMAT:
            log.warning("archive: a journal record of an unknown layout was skipped")
            return None
        key = (int(entry[3]), int(entry[4]))  # the service id and policy revision
        if key not in policies:
            with self.engine.connect() as conn:
                body = conn.execute(
                    select(serve_policies.c.body).where(
                        serve_policies.c.service_id == key[0], serve_policies.c.revision == key[1]
                    )
                ).scalar()
            policies[key] = None if body is None else Policy.model_validate(body)
        policy = policies[key]
        if policy is None:
            log.warning("archive: journaled request %s: its service is gone; skipped", entry[1])
            return None
        return ArchivedRequest.from_journal(entry, policy)

    def _not_stored(self, batch: list[ArchivedRequest]) -> list[ArchivedRequest]:
        ids = [r.request_id for r in batch]
        with self.engine.connect() as conn:
            stored = set(
                conn.execute(
                    select(serve_requests.c.request_id).where(serve_requests.c.request_id.in_(ids))
                ).scalars()
            )
        return [r for r in batch if r.request_id not in stored]

    def _commit(self, batch: list[ArchivedRequest], retries: int) -> bool:
        """Write ``batch`` (trying ``retries`` more times), then run the hooks; True if written."""
        ok = False
        for attempt in range(retries + 1):
            try:
                if self._process is not None:
                    self._write_there(batch)
                else:
                    self._write_here(batch)
                ok = True
                break
            except Exception:
                log.exception(
                    "archive: writing %d requests failed (attempt %d of %d)",
                    len(batch),
                    attempt + 1,
                    retries + 1,
                )
                if attempt < retries:
                    time.sleep(1.0)
        if ok and self.journal is not None:
            self.journal.committed([r.request_id for r in batch])
        # Hooks first: a flush() returns once they have seen what it waited for.
        for hook in self.hooks if ok else ():
            try:
                hook(batch)
            except Exception:
                log.exception("archive hook %r failed", hook)
        return ok

    def _write(self, batch: list[ArchivedRequest]) -> None:
        ok = self._commit(batch, self._retries)
        state = self._state
        with state.lock:
            state.written += len(batch)
            if ok:
                state.stored += len(batch)
            else:
                state.failed_batches += 1
                state.dropped += len(batch)
            state.written_cond.notify_all()


# --- reading the archive ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestView:
    """An archived request with every model's score and its feedback (None: none yet)."""

    request_id: str
    service: str
    revision: int
    received_at: datetime
    n_instances: int
    inputs: list[Any] | None
    model: str | None
    role: str
    fallback_used: bool
    predictions: list[Any]
    latency_ms: float
    scores: dict[str, Score]
    feedback: Feedback | None


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def _views(conn: Any, service: str, rows: Sequence[Mapping[Any, Any]]) -> list[RequestView]:
    """The requests of ``rows`` with their scores and feedback: three queries in all."""
    ids = [row["request_id"] for row in rows]
    scores: dict[str, dict[str, Score]] = {request_id: {} for request_id in ids}
    feedback: dict[str, Feedback] = {}
    if ids:
        for s in conn.execute(select(serve_scores).where(serve_scores.c.request_id.in_(ids))):
            scores[s.request_id][s.model] = Score.from_dict(s._mapping)
        feedback = feedback_of(conn, {row["request_id"]: row["n_instances"] for row in rows})
    return [
        RequestView(
            request_id=row["request_id"],
            service=service,
            revision=row["revision"],
            received_at=row["received_at"],
            n_instances=row["n_instances"],
            inputs=row["inputs"],
            model=row["model"],
            role=row["role"],
            fallback_used=bool(row["fallback_used"]),
            predictions=row["predictions"],
            latency_ms=row["latency_ms"],
            scores=scores[row["request_id"]],
            feedback=feedback.get(row["request_id"]),
        )
        for row in rows
    ]


def get_request(service: str, request_id: str, *, engine: Engine | None = None) -> RequestView:
    """The archived request ``request_id`` of ``service``, with its scores and feedback."""
    with _engine(engine).connect() as conn:
        service_id = find_service_id(conn, service)
        row = conn.execute(
            select(serve_requests).where(
                serve_requests.c.request_id == request_id,
                serve_requests.c.service_id == service_id,
            )
        ).first()
        if row is None:
            raise RequestNotFoundError(
                f"Service {service!r} has no archived request {request_id!r}. Use the "
                "request_id a predict answer returned; requests are archived within a "
                "second of their answer."
            )
        return _views(conn, service, [row._mapping])[0]


def list_requests(
    service: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    engine: Engine | None = None,
) -> list[RequestView]:
    """The newest archived requests of ``service`` (at most ``limit``), newest first."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ServeError(f"limit must be a positive int. Got {limit!r}.")
    with _engine(engine).connect() as conn:
        service_id = find_service_id(conn, service)
        query = select(serve_requests).where(serve_requests.c.service_id == service_id)
        if since is not None:
            query = query.where(serve_requests.c.received_at >= since)
        if until is not None:
            query = query.where(serve_requests.c.received_at < until)
        rows = conn.execute(query.order_by(serve_requests.c.received_at.desc()).limit(limit)).all()
        return _views(conn, service, [r._mapping for r in rows])


def count_requests(service: str, *, engine: Engine | None = None) -> int:
    """How many requests of ``service`` the archive holds."""
    with _engine(engine).connect() as conn:
        service_id = find_service_id(conn, service)
        return int(
            conn.execute(
                select(func.count())
                .select_from(serve_requests)
                .where(serve_requests.c.service_id == service_id)
            ).scalar_one()
        )


def _known_classes(scores: Mapping[str, Score]) -> list[Any] | None:
    for role in ("champion", "canary", "challenger", "fallback"):
        for score in scores.values():
            if score.role == role and score.classes:
                return list(score.classes)
    return None


def add_feedback(
    service: str,
    request_id: str,
    labels: Sequence[Any],
    *,
    by: str,
    role: str,
    engine: Engine | None = None,
) -> RequestView:
    """Record the true ``labels`` (one per instance; None: none for it) of an archived request.

    ``by`` gave them with the role ``role``; the service's policy says which
    roles may (``feedback_role``, default reviewer and up): a less trusted
    role raises :class:`~inloop.serve.feedback.FeedbackRoleError`. Every label
    is kept as an event; the one used per instance is the most trusted role's
    latest (see :mod:`inloop.serve.feedback`), so a label may be recorded and
    not used. Labels must be classes the models know. Returns the request with
    its feedback.
    """
    if isinstance(labels, str | bytes) or not isinstance(labels, Sequence):
        raise ServeError(f"labels must be a list with one label per instance. Got {labels!r}.")
    if not isinstance(by, str) or not by.strip():
        raise ServeError(f"Feedback needs 'by': who gave the labels. Got {by!r}.")
    eng = _engine(engine)
    check_giver(role, current_policy(service, engine=eng).policy.feedback_role, service)
    view = get_request(service, request_id, engine=eng)
    if len(labels) != view.n_instances:
        raise ServeError(
            f"Request {request_id!r} had {view.n_instances} instance(s); the feedback has "
            f"{len(labels)} label(s). Send one label per instance, in order."
        )
    classes = _known_classes(view.scores)
    if classes is not None:
        unknown = [label for label in labels if label is not None and label not in classes]
        if unknown:
            raise ServeError(
                f"The labels {unknown[:5]!r} are not classes of the service's models; "
                f"accepted: {classes!r}, or None for an instance without a label."
            )
    now = datetime.now(UTC)
    rows = [
        {
            "request_id": request_id,
            "position": position,
            "label": label,
            "given_by": by,
            "role": role,
            "given_at": now,
            "source": "api",
            "project": None,
            "annotation_id": None,
        }
        for position, label in enumerate(labels)
        if label is not None
    ]
    if not rows:
        raise ServeError(f"The feedback has no label, only None: {list(labels)!r}.")
    with begin_write(eng) as conn:
        insert_events(conn, rows)
        return replace(view, feedback=feedback_of(conn, {request_id: view.n_instances})[request_id])
