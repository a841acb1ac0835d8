"""The model worker: scores a service's jobs from Redis Streams (``inloop serve worker``).

Every worker of a service reads the service's requests stream through one
consumer group (:data:`~inloop.serve.streams.WORKER_GROUP`), so each job goes
to one worker, which scores it with every model the job names. One reader
thread takes jobs (many per call under load) and scores the fast models
itself: a hand-over to another thread costs more than such a model does. The
champions' answers go out first, unless the other models take less time than
a second round trip to Redis; what a worker scored together goes to each
server as one reply entry, in the same round trip as the reader's next
XREADGROUP. A model is scored on its *lane* (its own queue and
``threads_per_model`` threads, as in
:class:`~inloop.serve.scoring.LocalTransport`) until it has shown it is
fast, whenever its last call took over 5 ms (a champion) or 1 ms (another
model), and for good once it has hung the reader. A slow or hung model
holds up only its own lane: once ``max_in_flight`` of its calls are
waiting, the next ones get ``busy`` at once, and a reader stuck in a model
for a second is replaced by a new one (that model is then scored on its
lane). While a lane that is making progress has a full queue the reader
takes no more jobs, so a backlog waits in the stream, where idle workers can
take it. A job is acknowledged when every model has replied.

A worker that dies loses nothing: the others claim its unacknowledged jobs
once they have been idle ``claim_idle_ms`` (a job may so be scored twice; the
rendezvous takes the first score), and forget dead workers' names once they
hold no jobs. A job past its ``expires_at`` (the rendezvous has archived it
by then) is acknowledged without scoring, so a worker that fell behind
catches up instead of scoring answers nobody waits for. The policy is
re-read every ``policy_check_s``, and at once when a job names a newer
revision: new models start and retired ones stop without a restart.

Run one per host or core with ``inloop serve worker SERVICE`` (see
:mod:`inloop.cli.serve_worker`); the server side is
:class:`~inloop.serve.streams.RedisTransport`.

>>> policy_refs(Policy(champion="d@3", challengers=["d@4"], canary="d@1", fallback="h@1"))
('d@3', 'd@4', 'd@1')
>>> default_consumer().endswith(f"-{os.getpid()}")
True
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inloop.errors import MissingExtraError

try:
    import redis
except ImportError as exc:  # an ImportError too, with the pip install to run
    raise MissingExtraError(
        "redis", "Serving over Redis Streams (INLOOP_STREAM_URL)", exc
    ) from None

from inloop.serve.models import LoadedModel, ServeError
from inloop.serve.policy import Policy, current_policy
from inloop.serve.queues import take_batch
from inloop.serve.resp import (
    Address,
    BlockingConnection,
    RedisReplyError,
    hiredis_available,
    pack,
    parse_address,
)
from inloop.serve.scoring import Job, Score, as_batch, fast_enough_to_share, score_model
from inloop.serve.streams import (
    REPLY_TTL_S,
    WORKER_GROUP,
    check_reachable,
    create_group,
    decode_job,
    dumps_json,
    job_key,
    resolve_stream_url,
    safe_url,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from inloop.store.artifacts import ArtifactStore

__all__ = ["default_consumer", "policy_refs", "run_worker"]

logger = logging.getLogger("inloop.serve.worker")

#: How long one XREADGROUP call waits for jobs: also how soon the reader sees ``stop``.
_BLOCK_MS = 500
#: Jobs read (or claimed) per call.
_COUNT = 16
#: Scores a lane sends in one round trip when jobs queue up behind each other.
_LANE_BATCH = 8
#: The reader takes no more jobs while a lane that is making progress has this many queued,
#: so that a backlog waits in the stream, where idle workers can take it.
_QUEUE_DEPTH = 16
#: A lane that has finished nothing for this long is stuck: the reader no longer waits for it.
#: A reader that has scored one champion call for this long is replaced by a new one.
_STUCK_S = 1.0
#: The champions' answers wait for the other models scored on the reader while those take
#: less than this many ms together (less than a second round trip to Redis costs).
_TOGETHER_MS = 0.5
#: A reply stream is capped near this length, should its server be gone.
_REPLY_MAXLEN = 100_000
#: How often a reply stream's expiry is pushed back (it expires after REPLY_TTL_S).
_EXPIRE_EVERY_S = 60.0
#: How often the names of dead workers are looked for (and forgotten).
_FORGET_EVERY_S = 30.0
#: A model that failed to load is not tried again for a job sooner than this.
_RELOAD_AFTER_S = 10.0


def default_consumer() -> str:
    """This process's consumer name: ``{hostname}-{pid}``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def policy_refs(policy: Policy) -> tuple[str, ...]:
    """The model versions a worker scores for ``policy``: all but the fallback."""
    refs = [policy.champion, *policy.challengers]
    if policy.canary is not None:
        refs.append(policy.canary)
    return tuple(refs)


@dataclass
class _Entry:
    """A job taken from the stream; acknowledged once every model it names has replied."""

    entry_id: str
    job: Job
    reply: str
    remaining: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expired(self) -> bool:
        return 0 < self.job.expires_at < time.time()

    def replied(self) -> bool:
        """Count one model as done; True for the last one (which acknowledges the job)."""
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0


@dataclass
class _Replies:
    """Scores and acknowledgements that go out in one round trip (see ``_Worker._send``)."""

    scores: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # reply stream ->
    acks: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(scores) for scores in self.scores.values())

    def add(self, entry: _Entry, score: Score) -> None:
        """Add ``score`` (and the job's acknowledgement if it is the job's last)."""
        payload = {**score.to_dict(), "request_id": entry.job.request_id}
        self.scores.setdefault(entry.reply, []).append(payload)
        self.skip(entry)

    def skip(self, entry: _Entry) -> None:
        """Count one model of ``entry`` as done without a score (the job expired)."""
        if entry.replied():
            self.acks.append(entry.entry_id)

    def merge(self, other: _Replies) -> None:
        """Add ``other``'s scores and acknowledgements to these."""
        for reply, scores in other.scores.items():
            self.scores.setdefault(reply, []).extend(scores)
        self.acks.extend(other.acks)


_Call = tuple[_Entry, str, Any]  # (entry, role, the instances as an array)
_Inline = tuple[_Entry, str, Any, "_Lane"]  # a call scored on the reader


@dataclass
class _Lane:
    """One model's queue and threads, and the number of its calls in flight."""

    ref: str
    model: LoadedModel
    calls: queue.SimpleQueue[_Call | None] = field(default_factory=queue.SimpleQueue)
    in_flight: int = 0
    progress: float = field(default_factory=time.monotonic)  # when it last finished a call
    # How long its last call took: none yet, so its first call goes to the lane.
    last_ms: float = math.inf
    inline: bool = True  # False once it hung the reader
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)


class _Worker:
    """The reader, the lanes and what they share; :func:`run_worker` drives it."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        consumer: str,
        loader: Callable[[str], LoadedModel],
        *,
        threads_per_model: int,
        max_in_flight: int,
        claim_idle_ms: int,
        forget_after_s: float,
        address: Address | None = None,
    ) -> None:
        self.client = client
        # Where the reader opens its own connection (None: it reads through redis-py's).
        self.address = address
        self.stream = stream
        self.consumer = consumer
        self.loader = loader
        self.threads_per_model = threads_per_model
        self.max_in_flight = max_in_flight
        self.claim_idle_ms = claim_idle_ms
        self.forget_after_s = forget_after_s
        self.lanes: dict[str, _Lane] = {}
        self.revision = 0  # of the policy the lanes follow
        self.policy_due = threading.Event()  # set by the reader when a job is newer
        self._progress = threading.Event()  # set by a lane when it finishes calls
        # Reader thread id -> (since when, lane) while that reader scores a champion itself.
        self._inline: dict[int, tuple[float, _Lane]] = {}
        self._lanes_lock = threading.Lock()
        self._failed: dict[str, tuple[float, str]] = {}  # ref -> (when, why) of a failed load
        self._refreshed: dict[str, float] = {}  # reply stream -> when its expiry was pushed back
        self._refreshed_lock = threading.Lock()

    # --- lanes ----------------------------------------------------------------------------

    def start_lane(self, ref: str) -> _Lane:
        """The lane of ``ref``, loading the model and starting its threads if needed."""
        with self._lanes_lock:
            lane = self.lanes.get(ref)
            if lane is not None:
                return lane
            lane = _Lane(ref, self.loader(ref))
            for i in range(self.threads_per_model):
                thread = threading.Thread(
                    target=self._lane_loop,
                    args=(lane,),
                    name=f"inloop-worker-{ref}-{i}",
                    daemon=True,  # a hung model must not keep the process alive
                )
                thread.start()
                lane.threads.append(thread)
            self.lanes[ref] = lane
            self._failed.pop(ref, None)
            return lane

    def stop_lane(self, ref: str) -> None:
        """Stop ``ref``'s lane once the calls already queued on it are scored."""
        with self._lanes_lock:
            lane = self.lanes.pop(ref, None)
        if lane is not None:
            for _ in lane.threads:
                lane.calls.put(None)

    def _lane_for(self, ref: str, job: Job) -> _Lane | str:
        """The lane to score ``ref`` on, or why there is none (sent back as an error)."""
        lane = self.lanes.get(ref)
        if lane is not None:
            return lane
        if job.revision < self.revision:
            return (
                f"Model {ref} is not in policy revision {self.revision} that worker "
                f"{self.consumer} follows (the job is of revision {job.revision})."
            )
        failed = self._failed.get(ref)
        if failed is not None and time.monotonic() - failed[0] < _RELOAD_AFTER_S:
            return failed[1]
        # A job of a policy this worker has not read yet: load the model now.
        self.policy_due.set()
        try:
            return self.start_lane(ref)
        except Exception as exc:
            why = f"Model {ref} could not be loaded on worker {self.consumer}: {exc}"
            logger.exception("%s: could not be loaded", ref)
            self._failed[ref] = (time.monotonic(), why)
            return why

    # --- reading --------------------------------------------------------------------------

    def _full(self) -> bool:
        """Whether a lane that is making progress has a full queue (hung lanes do not count)."""
        now = time.monotonic()
        return any(
            lane.in_flight >= _QUEUE_DEPTH and now - lane.progress < _STUCK_S
            for lane in list(self.lanes.values())
        )

    def read_loop(self, stop: threading.Event) -> None:
        """Take jobs until ``stop``; now and then claim those of dead workers.

        The replies to the jobs last taken go out in the same round trip as the
        next XREADGROUP: one wait on Redis per batch of jobs, not two.
        """
        claim_every = self.claim_idle_ms / 2000.0
        next_claim = time.monotonic() + claim_every
        cursor = "0-0"
        out = _Replies()  # scored, not sent yet
        conn: BlockingConnection | None = None  # this reader's own (see _read)
        while not stop.is_set():
            if self._full():
                self._send(out)
                out = _Replies()
                self._progress.wait(0.05)
                self._progress.clear()
                continue
            try:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every
                    pipe = self._pipeline(out)
                    out = _Replies()
                    pipe.xautoclaim(
                        self.stream,
                        WORKER_GROUP,
                        self.consumer,
                        self.claim_idle_ms,
                        start_id=cursor,
                        count=_COUNT,
                    )
                    claimed: Any = self._execute(pipe)
                    cursor, entries = claimed[0], claimed[1]
                    if entries:
                        logger.info("claimed %d idle job(s) from other workers", len(entries))
                        out.merge(self._take(entries))
                    if cursor != "0-0":
                        next_claim = 0.0  # more to claim: go on at once
                if self.address is not None:
                    if conn is None or not conn.is_open:
                        conn = BlockingConnection(self.address, f"inloop-worker:{self.consumer}")
                    response = self._read(conn, out)
                else:
                    pipe = self._pipeline(out)
                    pipe.execute_command(*self._xreadgroup_args())
                    response = self._execute(pipe)
                out = _Replies()
                for _stream, entries in response or ():
                    out.merge(self._take(entries))
            except (redis.ResponseError, RedisReplyError) as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group was deleted under us: create it again.
                    logger.warning("consumer group missing on %s; recreating it", self.stream)
                    create_group(self.client, self.stream)
                else:
                    logger.exception("redis refused a command")
                    stop.wait(0.5)
            except (redis.RedisError, OSError) as exc:
                # Replies lost with the connection leave their jobs unacknowledged: they are
                # claimed and scored again.
                logger.warning("redis error (%s); retrying in 0.5 s", exc)
                stop.wait(0.5)
        self._send(out)

    def _read(self, conn: BlockingConnection, out: _Replies) -> Any:
        """Send ``out`` and the next XREADGROUP in one write; the jobs read, as redis-py gives them.

        That is ``[(stream, [(entry id, fields or None), ...])]``, or None when
        no job came within ``_BLOCK_MS``.
        """
        commands = self._commands(out)
        commands.append(pack(*self._xreadgroup_args()))
        *sent, last = conn.call_all(commands)
        _log_refusals(sent)
        if isinstance(last, Exception):
            raise last
        return [
            (
                stream,
                [
                    (i, None if f is None else dict(zip(f[::2], f[1::2], strict=True)))
                    for i, f in items
                ],
            )
            for stream, items in last or ()
        ]

    def _xreadgroup_args(self) -> tuple[str | int, ...]:
        """The reader's next read: up to ``_COUNT`` new jobs, waiting up to ``_BLOCK_MS``."""
        group = ("GROUP", WORKER_GROUP, self.consumer, "COUNT", _COUNT, "BLOCK", _BLOCK_MS)
        return ("XREADGROUP", *group, "STREAMS", self.stream, ">")

    def _take(self, entries: Iterable[tuple[str, dict[str, str] | None]]) -> _Replies:
        """Score the entries' fast models here, champions first; hand the rest to their lanes.

        Returns the replies not sent yet (the caller sends them).
        """
        out = _Replies()
        champions: list[_Inline] = []
        others: list[_Inline] = []
        for entry_id, fields in entries:
            try:
                if fields is None:
                    raise ValueError("the entry was deleted")
                job = decode_job(fields["job"])
                reply = fields["reply"]
            except (KeyError, TypeError, ValueError) as exc:
                logger.warning("dropping malformed entry %s on %s: %s", entry_id, self.stream, exc)
                out.acks.append(entry_id)
                continue
            entry = _Entry(entry_id, job, reply, len(job.models))
            if entry.expired() or not job.models:
                # Archived as a timeout already (or nothing to score): do not score it.
                out.acks.append(entry_id)
                continue
            if job.revision > self.revision:
                self.policy_due.set()
            X = as_batch(job.instances)
            for ref, role in job.models:
                lane = self._lane_for(ref, job)
                if isinstance(lane, str):
                    out.add(entry, Score(ref, role, "error", error=lane))
                    continue
                with lane.lock:
                    busy = lane.in_flight >= self.max_in_flight
                    if not busy:
                        if lane.in_flight == 0:
                            lane.progress = time.monotonic()  # idle until now, not stuck
                        lane.in_flight += 1
                if busy:
                    message = f"{self.max_in_flight} calls of {ref} were already in flight."
                    out.add(entry, Score(ref, role, "busy", error=message))
                elif self._inline_ok(lane, role):
                    (champions if role == "champion" else others).append((entry, role, X, lane))
                else:
                    lane.calls.put((entry, role, X))
        # A thread hand-over costs more than these models do: they are scored on this thread.
        # The champions' answers, which callers wait for, go out first, unless the other
        # models take less time than a second round trip would.
        for entry, role, X, lane in champions:
            self._score_inline(out, entry, lane, role, X)
        if sum(lane.last_ms for *_, lane in others) > _TOGETHER_MS:
            self._send(out)
            out = _Replies()
        for entry, role, X, lane in others:
            self._score_inline(out, entry, lane, role, X)
        return out

    def _inline_ok(self, lane: _Lane, role: str) -> bool:
        """Whether to score on the reader: a fast model that has not hung it, nothing queued."""
        return lane.inline and fast_enough_to_share(lane.last_ms, role) and lane.calls.empty()

    def _score_inline(self, out: _Replies, entry: _Entry, lane: _Lane, role: str, X: Any) -> None:
        me = threading.get_ident()
        self._inline[me] = (time.monotonic(), lane)
        try:
            score = None if entry.expired() else score_model(lane.model, X, lane.ref, role)
        finally:
            self._inline.pop(me, None)
            with lane.lock:
                lane.in_flight -= 1
                lane.progress = time.monotonic()
        if score is None:
            out.skip(entry)
            return
        lane.last_ms = score.latency_ms or 0.0
        out.add(entry, score)

    def stuck_readers(self) -> int:
        """How many readers have been scoring one champion call for ``_STUCK_S``.

        Their models are scored on their lanes from now on; the caller starts a
        new reader for each (the stuck one is left to finish or die with the process).
        """
        now = time.monotonic()
        stuck = 0
        for ident, (since, lane) in list(self._inline.items()):
            if now - since >= _STUCK_S and self._inline.pop(ident, None) is not None:
                lane.inline = False
                stuck += 1
                logger.warning(
                    "%s has not answered in %.1f s; a new reader takes over, and %s is "
                    "scored on its own threads from now on",
                    lane.ref,
                    now - since,
                    lane.ref,
                )
        return stuck

    # --- scoring --------------------------------------------------------------------------

    def _lane_loop(self, lane: _Lane) -> None:
        stop = False
        while not stop:
            # Jobs queued behind each other go out in one round trip.
            calls, stop = take_batch(lane.calls, _LANE_BATCH)
            if not calls:
                break
            out = _Replies()
            for entry, role, X in calls:
                try:
                    if entry.expired():
                        out.skip(entry)
                    else:
                        score = score_model(lane.model, X, lane.ref, role)
                        lane.last_ms = score.latency_ms or 0.0
                        out.add(entry, score)
                finally:
                    with lane.lock:
                        lane.in_flight -= 1
                        lane.progress = time.monotonic()
            self._progress.set()
            self._send(out)

    def _send(self, out: _Replies) -> None:
        """Send ``out`` in one round trip: an entry per reply stream, then the acknowledgements."""
        if not out.scores and not out.acks:
            return
        try:
            _log_refusals(self._pipeline(out).execute(raise_on_error=False))
        except (redis.RedisError, OSError) as exc:
            # Unacknowledged: another worker (or this one) scores the jobs again.
            logger.warning("could not send %d score(s): %s", out.count, exc)

    @staticmethod
    def _execute(pipe: Any) -> Any:
        """Run ``pipe``; the reply of its last command (a read), raised if it is an error."""
        *sent, last = pipe.execute(raise_on_error=False)
        _log_refusals(sent)
        if isinstance(last, Exception):
            raise last
        return last

    def _pipeline(self, out: _Replies) -> Any:
        """A redis-py pipeline holding :meth:`_commands` of ``out``."""
        pipe = self.client.pipeline(transaction=False)
        for args in self._command_args(out):
            pipe.execute_command(*args)
        return pipe

    def _commands(self, out: _Replies) -> list[bytes]:
        """``out`` as commands for a :class:`BlockingConnection`."""
        return [pack(*args) for args in self._command_args(out)]

    def _command_args(self, out: _Replies) -> list[tuple[str | int | bytes, ...]]:
        """What sends ``out``: an entry per reply stream, then the acknowledgements."""
        commands: list[tuple[str | int | bytes, ...]] = []
        now = time.monotonic()
        for reply, scores in out.scores.items():
            payload = dumps_json(scores)  # finite: score_model makes NaN an error
            commands.append(("XADD", reply, "MAXLEN", "~", _REPLY_MAXLEN, "*", "scores", payload))
            with self._refreshed_lock:
                due = now - self._refreshed.get(reply, -_EXPIRE_EVERY_S) >= _EXPIRE_EVERY_S
                if due:
                    self._refreshed[reply] = now
            if due:
                # Set here too: a reply stream whose server died must still expire.
                commands.append(("EXPIRE", reply, REPLY_TTL_S))
        if out.acks:
            commands.append(("XACK", self.stream, WORKER_GROUP, *out.acks))
        return commands

    # --- housekeeping ---------------------------------------------------------------------

    def forget_dead_consumers(self) -> list[str]:
        """Delete the names of workers idle ``forget_after_s`` that hold no jobs; return them."""
        forgotten = []
        info: Any = self.client.xinfo_consumers(self.stream, WORKER_GROUP)
        for consumer in info:
            name = consumer["name"]
            idle_s = int(consumer.get("inactive", consumer["idle"])) / 1000.0
            if name == self.consumer or int(consumer["pending"]) or idle_s < self.forget_after_s:
                continue
            # Deleting a consumer drops its pending jobs: only those holding none go.
            self.client.xgroup_delconsumer(self.stream, WORKER_GROUP, name)
            forgotten.append(name)
        if forgotten:
            logger.info("forgot %d dead worker(s): %s", len(forgotten), ", ".join(forgotten))
        with self._refreshed_lock:
            # Reply streams not written to for an hour have expired: forget them too.
            old = time.monotonic() - REPLY_TTL_S
            self._refreshed = {k: t for k, t in self._refreshed.items() if t > old}
        return forgotten


def _log_refusals(replies: Iterable[Any]) -> None:
    """Log what Redis refused of a batch of replies.

    Such a reply is lost, and its job is acknowledged with the rest: scoring it
    again would meet the same refusal (say, a reply key that is not a stream).
    """
    for reply in replies:
        if isinstance(reply, Exception):
            logger.warning("redis refused a reply: %s", reply)


def run_worker(
    service: str,
    *,
    url: str | None = None,
    prefix: str = "inloop:serve",
    consumer: str | None = None,
    threads_per_model: int = 1,
    max_in_flight: int = 32,
    claim_idle_ms: int = 1000,
    policy_check_s: float = 1.0,
    forget_after_s: float = 300.0,
    engine: Engine | None = None,
    artifacts: ArtifactStore | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Score ``service``'s jobs from Redis until ``stop`` is set.

    ``url`` defaults to the ``stream_url`` setting; ``consumer`` (this
    worker's name in the consumer group) to :func:`default_consumer`.
    ``ready`` is set once every model is loaded and jobs are being read.
    Workers idle ``forget_after_s`` and holding no jobs are removed from the
    group. Raises a :class:`~inloop.serve.models.ServeError` when Redis is
    unreachable, the service does not exist or one of its models cannot be
    loaded at startup; later failures (a model of a new policy revision that
    cannot be loaded) are logged, answered as ``error`` and retried.
    """
    if (
        threads_per_model < 1
        or max_in_flight < threads_per_model
        or claim_idle_ms < 1
        or policy_check_s <= 0
        or forget_after_s <= 0
    ):
        raise ServeError(
            "run_worker needs threads_per_model >= 1, max_in_flight >= threads_per_model, "
            "claim_idle_ms >= 1, policy_check_s > 0 and forget_after_s > 0. Got "
            f"{threads_per_model}, {max_in_flight}, {claim_idle_ms}, {policy_check_s} and "
            f"{forget_after_s}."
        )
    url = resolve_stream_url(url)
    check_reachable(url)
    stop = stop if stop is not None else threading.Event()
    consumer = consumer or default_consumer()
    if engine is None:
        from inloop.store.db import get_engine

        engine = get_engine()
    if artifacts is None:
        from inloop.store.artifacts import open_artifact_store

        artifacts = open_artifact_store()
    from inloop.serve.registry import load

    def loader(ref: str) -> LoadedModel:
        return load(ref, engine=engine, artifacts=artifacts)

    # Lane threads and the reader share it: redis-py's pool gives each a connection.
    client = redis.Redis.from_url(url, socket_connect_timeout=2, decode_responses=True)
    try:
        # The reader's hot path has a connection of its own (see inloop.serve.resp).
        address: Address | None = parse_address(url) if hiredis_available() else None
    except ServeError as exc:  # a URL option only redis-py understands
        logger.info("the reader goes through redis-py: %s", exc)
        address = None
    stream = job_key(prefix, service)
    worker = _Worker(
        client,
        stream,
        consumer,
        loader,
        threads_per_model=threads_per_model,
        max_in_flight=max_in_flight,
        claim_idle_ms=claim_idle_ms,
        forget_after_s=forget_after_s,
        address=address,
    )
    readers: list[threading.Thread] = []

    def start_reader() -> None:
        reader = threading.Thread(
            target=worker.read_loop,
            args=(stop,),
            name=f"inloop-worker-reader-{len(readers)}",
            daemon=True,  # a reader stuck in a hung model must not keep the process alive
        )
        reader.start()
        readers.append(reader)

    forget_every = min(_FORGET_EVERY_S, forget_after_s)
    next_forget = time.monotonic() + forget_every
    next_policy = 0.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_policy or worker.policy_due.is_set():
                # A job of a newer revision makes this happen early, at most 10 times a second.
                next_policy = now + policy_check_s
                worker.policy_due.clear()
                try:
                    current = current_policy(service, engine=engine)
                except Exception:
                    if not readers:
                        raise
                    logger.exception(
                        "could not re-read the policy of %s; keeping the models", service
                    )
                    current = None
                if current is not None and current.revision != worker.revision:
                    _follow(worker, service, current.policy, current.revision, first=not readers)
            if not readers:
                create_group(client, stream)
                start_reader()
                logger.info(
                    "scoring %s jobs from %s as %s (%s)",
                    service,
                    safe_url(url),
                    consumer,
                    ", ".join(worker.lanes),
                )
                if ready is not None:
                    ready.set()
            for _ in range(worker.stuck_readers()):
                start_reader()
            if time.monotonic() >= next_forget:
                next_forget = time.monotonic() + forget_every
                try:
                    worker.forget_dead_consumers()
                except (redis.RedisError, OSError) as exc:
                    logger.warning("could not look for dead workers: %s", exc)
            stop.wait(min(0.1, policy_check_s))
    finally:
        stop.set()
        until = time.monotonic() + 2 * _BLOCK_MS / 1000 + 1.0
        for reader in readers:
            reader.join(timeout=max(0.0, until - time.monotonic()))
        for ref in list(worker.lanes):
            worker.stop_lane(ref)
        client.close()
        logger.info("worker %s stopped", consumer)


def _follow(worker: _Worker, service: str, policy: Policy, revision: int, *, first: bool) -> None:
    """Start the lanes of ``policy``'s models and stop those it no longer names."""
    wanted = policy_refs(policy)
    for ref in [r for r in worker.lanes if r not in wanted]:
        logger.info("%s: no longer in policy revision %d; stopping", ref, revision)
        worker.stop_lane(ref)
    complete = True
    for ref in wanted:
        if ref in worker.lanes:
            continue
        try:
            worker.start_lane(ref)
        except Exception as exc:
            if first:
                if isinstance(exc, ServeError):
                    raise
                raise ServeError(
                    f"Model {ref} of service {service!r} could not be loaded "
                    f"({type(exc).__name__}: {exc}). Check that its artifact store "
                    "(INLOOP_ARTIFACTS_URL) is the one it was registered in."
                ) from exc
            logger.exception("%s: could not be loaded; retrying at the next policy check", ref)
            complete = False
    if complete:
        worker.revision = revision
