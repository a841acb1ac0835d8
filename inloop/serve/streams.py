"""The Redis Streams transport: jobs go to ``inloop serve worker`` processes, scores come back.

:class:`RedisTransport` is the scaled counterpart of
:class:`~inloop.serve.scoring.LocalTransport` behind the same
:class:`~inloop.serve.scoring.Transport` protocol. It uses three kinds of keys
(``prefix`` defaults to ``inloop:serve``):

- ``{prefix}:{service}:requests`` — one stream per service holding every job;
  each model version reads it through its own consumer group, named by its
  reference (``digits@3``), so every model sees every job once and the workers
  of one model share them;
- ``{prefix}:replies:{uuid}`` — one reply stream per transport (per server
  process); workers append one ``score`` entry per model and job to it.

A job's fields are ``job`` (JSON: request_id, service, revision, models,
instances) and ``reply`` (the reply stream's name); a reply's one field
``score`` is the JSON of :meth:`Score.to_dict` plus ``request_id``.

>>> job_key("inloop:serve", "digits"), reply_key("inloop:serve", "1f2e")
('inloop:serve:digits:requests', 'inloop:serve:replies:1f2e')
>>> decode_job(encode_job(Job("r1", "digits", 3, (("digits@3", "champion"),), [[0.5]])))
Job(request_id='r1', service='digits', revision=3, models=(('digits@3', 'champion'),), \
instances=[[0.5]])
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

from inloop.serve.models import ServeError
from inloop.serve.scoring import Job, Score

__all__ = [
    "REPLY_TTL_S",
    "RedisTransport",
    "check_reachable",
    "decode_job",
    "encode_job",
    "job_key",
    "reply_key",
    "resolve_stream_url",
    "safe_url",
]

logger = logging.getLogger("inloop.serve.streams")

#: A reply stream expires this long after its last refresh, so a crashed server's stream vanishes.
REPLY_TTL_S = 3600
#: How long the reader blocks on the reply stream per call (close() cancels it sooner).
_READ_BLOCK_MS = 1000
#: How often the reader trims its reply stream, refreshes its expiry and forgets old futures.
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

    :meth:`submit` never waits for Redis: jobs are queued and a single sender
    task writes them, several at a time in one pipeline under load. One reader
    task resolves futures from the reply stream. Run workers with
    ``inloop serve worker SERVICE``.
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
        self._redis: aioredis.Redis | None = None
        self._futures: dict[tuple[str, str], tuple[asyncio.Future[Score], float]] = {}
        self._outbox: collections.deque[tuple[Job, list[_Pending]]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisTransport {safe_url(self.url)} prefix={self.prefix!r}>"

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            # No socket_timeout: the reader blocks on XREAD longer than any sane timeout.
            self._redis = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=2, decode_responses=True
            )
        return self._redis

    def _start_tasks(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_loop(), name="inloop-redis-sender")
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="inloop-redis-reader")

    async def prepare(self, service: str, revision: int, refs: Sequence[str]) -> None:
        """Create the consumer group of each of ``refs`` on the service's requests stream."""
        if self._closed:
            raise ServeError(f"{self!r} is closed; create a new RedisTransport.")
        client = self._client()
        stream = job_key(self.prefix, service)
        try:
            for ref in refs:
                await _create_group(client, stream, ref)
        except redis.RedisError as exc:
            raise ServeError(
                f"Cannot create the consumer groups {list(refs)!r} on {stream} at "
                f"{safe_url(self.url)} ({exc}). Check that Redis is up (INLOOP_STREAM_URL)."
            ) from None
        self._start_tasks()

    def submit(self, job: Job) -> dict[str, asyncio.Future[Score]]:
        """One future per model of ``job``; the job is sent by the sender task."""
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
        self._start_tasks()
        self._outbox.append((job, pending))
        assert self._wake is not None  # set by _start_tasks
        self._wake.set()
        return futures

    async def _send_loop(self) -> None:
        assert self._wake is not None
        client = self._client()
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 256))]
                errors: list[BaseException | None]
                try:
                    if len(batch) == 1:
                        await self._xadd(client, batch[0][0])
                        errors = [None]
                    else:
                        async with client.pipeline(transaction=False) as pipe:
                            for job, _ in batch:
                                await self._xadd(pipe, job)
                            results = await pipe.execute(raise_on_error=False)
                        errors = [r if isinstance(r, Exception) else None for r in results]
                except (redis.RedisError, OSError) as exc:
                    errors = [exc] * len(batch)
                for (job, pending), error in zip(batch, errors, strict=True):
                    if error is None:
                        continue
                    logger.warning("could not send job %s to redis: %s", job.request_id, error)
                    _fail(pending, f"could not put the job on redis {safe_url(self.url)}: {error}")
                    for ref, _, _ in pending:
                        self._futures.pop((job.request_id, ref), None)

    async def _xadd(self, client: Any, job: Job) -> Any:
        fields = {"job": encode_job(job), "reply": self.reply_stream}
        return await _maybe_await(
            client.xadd(
                job_key(self.prefix, job.service), fields, maxlen=self.maxlen, approximate=True
            )
        )

    async def _read_loop(self) -> None:
        client = self._client()
        last_id = "0-0"
        housekeeping = 0.0
        # The flag, not only cancel(): redis-py may turn a cancelled read into a RedisError.
        while not self._closed:
            try:
                response: Any = await client.xread(
                    {self.reply_stream: last_id}, block=_READ_BLOCK_MS
                )
                for _stream, entries in response or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        self._resolve(fields)
                now = time.monotonic()
                if now - housekeeping >= _HOUSEKEEPING_S:
                    housekeeping = now
                    await self._housekeeping(client, last_id, now)
            except (redis.RedisError, OSError) as exc:
                if self._closed:
                    return
                logger.warning("reading replies from %s failed: %s", self.reply_stream, exc)
                await asyncio.sleep(0.5)

    def _resolve(self, fields: dict[str, str]) -> None:
        try:
            data = json.loads(fields["score"])
            key = (str(data.pop("request_id")), str(data["model"]))
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed reply on %s: %r", self.reply_stream, fields)
            return
        found = self._futures.pop(key, None)
        if found is not None and not found[0].done():
            found[0].set_result(Score.from_dict(data))
        # else: a late score for a request the server already gave up on.

    async def _housekeeping(self, client: aioredis.Redis, last_id: str, now: float) -> None:
        # Entries before the last one read are done with; keep the stream small.
        async with client.pipeline(transaction=False) as pipe:
            pipe.xtrim(self.reply_stream, minid=last_id, approximate=False)
            pipe.expire(self.reply_stream, REPLY_TTL_S)
            await pipe.execute()
        # Forget futures nobody answered in time (insertion order is time order).
        while self._futures:
            key, (future, created) = next(iter(self._futures.items()))
            if now - created < _FORGET_AFTER_S and not future.done():
                break
            del self._futures[key]

    async def close(self) -> None:
        """Stop the reader and the sender, delete the reply stream, close the connections.

        Futures still pending stay pending: the caller times them out.
        """
        self._closed = True
        tasks = [t for t in (self._sender, self._reader) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._sender = self._reader = None
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._redis.delete(self.reply_stream)
            await self._redis.aclose()
            self._redis = None
        self._futures.clear()
        self._outbox.clear()


async def _create_group(client: aioredis.Redis, stream: str, group: str) -> None:
    try:
        await client.xgroup_create(stream, group, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _maybe_await(value: Any) -> Any:
    # A pipeline queues the command and returns itself; a client returns a coroutine.
    if asyncio.iscoroutine(value):
        return await value
    return value


def _fail(pending: list[_Pending], message: str) -> None:
    for ref, role, future in pending:
        if not future.done():
            future.set_result(Score(ref, role, "error", error=message))
