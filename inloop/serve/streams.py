"""The Redis Streams transport: jobs go to ``inloop serve worker`` processes, scores come back.

:class:`RedisTransport` is the scaled counterpart of
:class:`~inloop.serve.scoring.LocalTransport` behind the same
:class:`~inloop.serve.scoring.Transport` protocol. It uses three kinds of keys
(``prefix`` defaults to ``inloop:serve``):

- ``{prefix}:{service}:requests`` — one stream per service holding every job;
  the service's workers read it through one consumer group
  (:data:`WORKER_GROUP`), so each job goes to one worker, which scores it with
  every model the job names;
- ``{prefix}:replies:{uuid}`` — one reply stream per transport (per server
  process); workers append one ``score`` entry per model and job to it.

A job's fields are ``job`` (JSON: request_id, service, revision, models,
instances, expires_at) and ``reply`` (the reply stream's name); a reply's one field
``score`` is the JSON of :meth:`Score.to_dict` plus ``request_id``.

>>> job_key("inloop:serve", "digits"), reply_key("inloop:serve", "1f2e")
('inloop:serve:digits:requests', 'inloop:serve:replies:1f2e')
>>> decode_job(encode_job(Job("r1", "digits", 3, (("digits@3", "champion"),), [[0.5]])))
Job(request_id='r1', service='digits', revision=3, models=(('digits@3', 'champion'),), \
instances=[[0.5]], expires_at=0.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from inloop.serve.models import ServeError
from inloop.serve.queues import take_batch
from inloop.serve.scoring import Job, Score

__all__ = [
    "REPLY_TTL_S",
    "WORKER_GROUP",
    "RedisTransport",
    "check_reachable",
    "create_group",
    "decode_job",
    "encode_job",
    "job_key",
    "reply_key",
    "resolve_stream_url",
    "safe_url",
]

logger = logging.getLogger("inloop.serve.streams")

#: The consumer group every worker of a service reads its requests stream in.
WORKER_GROUP = "workers"
#: A reply stream expires this long after its last refresh, so a crashed server's stream vanishes.
REPLY_TTL_S = 3600
#: How long the reader blocks on the reply stream per call: also how soon it sees close().
_READ_BLOCK_MS = 250
#: How often the reader trims its reply stream and refreshes its expiry, and old futures go.
_HOUSEKEEPING_S = 0.5
#: Futures never answered are forgotten after this long (the longest deadline is 60 s).
_FORGET_AFTER_S = 120.0


def job_key(prefix: str, service: str) -> str:
    """The requests stream of ``service``."""
    return f"{prefix}:{service}:requests"


def reply_key(prefix: str, instance: str) -> str:
    """The reply stream of one transport instance."""
    return f"{prefix}:replies:{instance}"


def encode_job(job: Job) -> str:
    """The ``job`` field of a requests stream entry."""
    return json.dumps(
        {
            "request_id": job.request_id,
            "service": job.service,
            "revision": job.revision,
            "models": [list(pair) for pair in job.models],
            "instances": job.instances,
            "expires_at": job.expires_at,
        },
        separators=(",", ":"),
    )


def decode_job(text: str | bytes) -> Job:
    """The inverse of :func:`encode_job`."""
    data = json.loads(text)
    return Job(
        request_id=str(data["request_id"]),
        service=str(data["service"]),
        revision=int(data["revision"]),
        models=tuple((str(ref), str(role)) for ref, role in data["models"]),
        instances=list(data["instances"]),
        expires_at=float(data.get("expires_at") or 0.0),
    )


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs.

    >>> safe_url("redis://:s3cret@cache:6379/0"), safe_url("redis://127.0.0.1:6379")
    ('redis://:***@cache:6379/0', 'redis://127.0.0.1:6379')
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_stream_url(url: str | None) -> str:
    """``url``, else the ``stream_url`` setting; a :class:`ServeError` when neither is set.

    >>> resolve_stream_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    if url is None:
        from inloop.settings import get_settings

        url = get_settings().stream_url
    if not url:
        raise ServeError(
            "No Redis stream URL is configured: set INLOOP_STREAM_URL (or stream_url in "
            "inloop.toml), or pass url=, such as 'redis://127.0.0.1:6379/0'."
        )
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ServeError(
            f"The stream URL must be a Redis URL (redis://, rediss:// or unix://), such as "
            f"'redis://127.0.0.1:6379/0'; check INLOOP_STREAM_URL. Got {safe_url(url)!r}."
        )
    return url


def check_reachable(url: str) -> None:
    """Ping Redis at ``url``; a :class:`ServeError` naming it and INLOOP_STREAM_URL if not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServeError(
            f"Cannot reach Redis at {safe_url(url)} ({exc}). Start Redis there, or point "
            "INLOOP_STREAM_URL (or url=) at a running one, such as 'redis://127.0.0.1:6379/0'."
        ) from None
    finally:
        client.close()


_Pending = tuple[str, str, "asyncio.Future[Score]"]  # (ref, role, future)


class RedisTransport:
    """Put jobs on Redis Streams for model workers; collect their scores.

    ``url`` defaults to the ``stream_url`` setting (``INLOOP_STREAM_URL``);
    ``maxlen`` bounds each requests stream (trimmed approximately). Redis is
    pinged here, so a wrong URL fails at startup, not on the first request.

    :meth:`submit` never waits for Redis. The Redis work runs in two threads
    off the event loop: a sender that writes jobs (several in one pipeline
    under load) and a reader that blocks on the reply stream and hands the
    scores to the loop in batches. Run workers with ``inloop serve worker SERVICE``.
    """

    def __init__(
        self, url: str | None = None, *, prefix: str = "inloop:serve", maxlen: int = 100_000
    ) -> None:
        if maxlen < 1:
            raise ServeError(f"The 'maxlen' of RedisTransport must be an int >= 1. Got {maxlen!r}.")
        self.url = resolve_stream_url(url)
        check_reachable(self.url)
        self.prefix = prefix
        self.maxlen = maxlen
        self.reply_stream = reply_key(prefix, uuid.uuid4().hex)
        # Its pool gives the sender and the reader a connection each; no socket_timeout,
        # as the reader blocks on XREAD.
        self._redis = redis.Redis.from_url(
            self.url, socket_connect_timeout=2, decode_responses=True
        )
        # Touched on the event loop only; the threads reach them through call_soon_threadsafe.
        self._futures: dict[tuple[str, str], tuple[asyncio.Future[Score], float]] = {}
        self._forgotten_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: queue.SimpleQueue[tuple[Job, list[_Pending]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisTransport {safe_url(self.url)} prefix={self.prefix!r}>"

    def _start_threads(self) -> None:
        if self._threads:
            return
        self._loop = asyncio.get_running_loop()
        for target, name in ((self._send_loop, "sender"), (self._read_loop, "reader")):
            thread = threading.Thread(target=target, name=f"inloop-redis-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def prepare(self, service: str, revision: int, refs: Sequence[str]) -> None:
        """Create the workers' consumer group on the service's requests stream.

        Created here as well as by the workers, so that jobs sent before the
        first worker starts wait for it instead of being skipped.
        """
        if self._closed:
            raise ServeError(f"{self!r} is closed; create a new RedisTransport.")
        stream = job_key(self.prefix, service)
        try:
            await asyncio.to_thread(create_group, self._redis, stream)
        except redis.RedisError as exc:
            raise ServeError(
                f"Cannot create the consumer group {WORKER_GROUP!r} on {stream} at "
                f"{safe_url(self.url)} ({exc}). Check that Redis is up (INLOOP_STREAM_URL)."
            ) from None
        self._start_threads()

    def submit(self, job: Job) -> dict[str, asyncio.Future[Score]]:
        """One future per model of ``job``; the job is sent by the sender thread."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures: dict[str, asyncio.Future[Score]] = {}
        pending: list[_Pending] = []
        for ref, role in job.models:
            future: asyncio.Future[Score] = loop.create_future()
            futures[ref] = future
            pending.append((ref, role, future))
            self._futures[(job.request_id, ref)] = (future, now)
        if self._closed:
            _fail(pending, f"the RedisTransport to {safe_url(self.url)} is closed")
            return futures
        self._start_threads()
        self._outbox.put((job, pending))
        if now - self._forgotten_at >= _HOUSEKEEPING_S:
            self._forgotten_at = now
            self._forget(now)
        return futures

    def _forget(self, now: float) -> None:
        """Forget futures nobody answered in time (insertion order is time order)."""
        while self._futures:
            key, (future, created) = next(iter(self._futures.items()))
            if now - created < _FORGET_AFTER_S and not future.done():
                break
            del self._futures[key]

    def _call(self, callback: Any, *args: Any) -> None:
        """Run ``callback(*args)`` on the event loop, from a thread."""
        assert self._loop is not None  # set before the threads start
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop has closed: nobody waits for these any more

    # --- the sender thread ----------------------------------------------------------------

    def _send_loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = take_batch(self._outbox, 256)
            if batch:
                self._send(batch)

    def _send(self, batch: list[tuple[Job, list[_Pending]]]) -> None:
        errors: list[BaseException | None]
        try:
            if len(batch) == 1:
                self._xadd(self._redis, batch[0][0])
                errors = [None]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for job, _ in batch:
                    self._xadd(pipe, job)
                results = pipe.execute(raise_on_error=False)
                errors = [r if isinstance(r, Exception) else None for r in results]
        except (redis.RedisError, OSError) as exc:
            errors = [exc] * len(batch)
        failed = [
            (job, pending, error)
            for (job, pending), error in zip(batch, errors, strict=True)
            if error is not None
        ]
        if failed:
            self._call(self._fail_jobs, failed)

    def _xadd(self, client: Any, job: Job) -> Any:
        fields = {"job": encode_job(job), "reply": self.reply_stream}
        return client.xadd(
            job_key(self.prefix, job.service), fields, maxlen=self.maxlen, approximate=True
        )

    def _fail_jobs(self, failed: list[tuple[Job, list[_Pending], BaseException]]) -> None:
        for job, pending, error in failed:
            logger.warning("could not send job %s to redis: %s", job.request_id, error)
            _fail(pending, f"could not put the job on redis {safe_url(self.url)}: {error}")
            for ref, _, _ in pending:
                self._futures.pop((job.request_id, ref), None)

    # --- the reader thread ----------------------------------------------------------------

    def _read_loop(self) -> None:
        last_id = "0-0"
        housekeeping = 0.0
        while not self._closed:
            try:
                response: Any = self._redis.xread(
                    {self.reply_stream: last_id}, block=_READ_BLOCK_MS
                )
                scores = []
                for _stream, entries in response or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        parsed = self._parse(fields)
                        if parsed is not None:
                            scores.append(parsed)
                if scores:
                    self._call(self._resolve, scores)
                now = time.monotonic()
                if now - housekeeping >= _HOUSEKEEPING_S:
                    housekeeping = now
                    # Entries before the last one read are done with; keep the stream small.
                    pipe = self._redis.pipeline(transaction=False)
                    pipe.xtrim(self.reply_stream, minid=last_id, approximate=False)
                    pipe.expire(self.reply_stream, REPLY_TTL_S)
                    pipe.execute()
            except (redis.RedisError, OSError) as exc:
                if self._closed:
                    return
                logger.warning("reading replies from %s failed: %s", self.reply_stream, exc)
                time.sleep(0.5)

    def _parse(self, fields: dict[str, str]) -> tuple[tuple[str, str], Score] | None:
        try:
            data = json.loads(fields["score"])
            key = (str(data.pop("request_id")), str(data["model"]))
            return key, Score.from_dict(data)
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed reply on %s: %r", self.reply_stream, fields)
            return None

    def _resolve(self, scores: list[tuple[tuple[str, str], Score]]) -> None:
        for key, score in scores:
            found = self._futures.pop(key, None)
            if found is not None and not found[0].done():
                found[0].set_result(score)
            # else: a late score for a request the server already gave up on.

    async def close(self) -> None:
        """Stop the threads, delete the reply stream, close the connections.

        Futures still pending stay pending: the caller times them out.
        """
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)
        threads, self._threads = self._threads, []
        for thread in threads:
            await asyncio.to_thread(thread.join, _READ_BLOCK_MS / 1000 + 2.0)
        with contextlib.suppress(redis.RedisError, OSError):
            await asyncio.to_thread(self._redis.delete, self.reply_stream)
        self._redis.close()
        self._futures.clear()


def create_group(client: redis.Redis, stream: str) -> None:
    """Create the workers' consumer group on ``stream`` (and the stream) unless it exists."""
    try:
        client.xgroup_create(stream, WORKER_GROUP, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _fail(pending: list[_Pending], message: str) -> None:
    for ref, role, future in pending:
        if not future.done():
            future.set_result(Score(ref, role, "error", error=message))
