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
  process); workers append the scores of their jobs to it.

A job's fields are ``job`` (JSON: request_id, service, revision, models,
instances, expires_at, deadline_ms) and ``reply`` (the reply stream's name).
A reply's one field ``scores`` is a JSON list of scores, each :meth:`Score.to_dict` plus
``request_id``: a worker sends what it scored together in one entry.

>>> job_key("inloop:serve", "digits"), reply_key("inloop:serve", "1f2e")
('inloop:serve:digits:requests', 'inloop:serve:replies:1f2e')
>>> decode_job(encode_job(Job("r1", "digits", 3, (("digits@3", "champion"),), [[0.5]])))
Job(request_id='r1', service='digits', revision=3, models=(('digits@3', 'champion'),), \
instances=[[0.5]], expires_at=0.0, deadline_ms=0.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from inloop.errors import MissingExtraError

try:
    import redis
except ImportError as exc:  # an ImportError too, with the pip install to run
    raise MissingExtraError(
        "redis", "Serving over Redis Streams (INLOOP_STREAM_URL)", exc
    ) from None

try:
    import orjson
except ImportError:  # the redis extra installs it; json does the same, slower
    orjson = None  # type: ignore[assignment]

from inloop.serve.models import ServeError
from inloop.serve.resp import (
    RedisConnectionError,
    RedisReplyError,
    RespConnection,
    open_connection,
    pack,
    parse_address,
)
from inloop.serve.scoring import Job, Score, ScoreFuture

__all__ = [
    "REPLY_TTL_S",
    "WORKER_GROUP",
    "RedisTransport",
    "check_reachable",
    "create_group",
    "decode_job",
    "dumps_json",
    "encode_job",
    "job_key",
    "loads_json",
    "reply_key",
    "resolve_stream_url",
    "safe_url",
]

logger = logging.getLogger("inloop.serve.streams")

#: The consumer group every worker of a service reads its requests stream in.
WORKER_GROUP = "workers"
#: A reply stream expires this long after its last refresh, so a crashed server's stream vanishes.
REPLY_TTL_S = 3600
#: How long one XREAD on the reply stream blocks (close() does not wait for it).
_READ_BLOCK_MS = 1000
#: How long after a failed connection to Redis the next one is tried.
_RETRY_S = 0.5
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


#: JSON that json wrote, not orjson, starts with this (JSON allows it): loads_json reads it with
#: json again, so NaN, infinities and integers past 64 bits come back as they went.
_BY_JSON = " "
_BY_JSON_MARKS = (_BY_JSON, _BY_JSON.encode())


def dumps_json(value: Any, *, nan: bool = False) -> bytes | str:
    """``value`` as compact JSON, by orjson when it is installed (ten times faster than json).

    json writes it instead where orjson would change it: integers past 64
    bits (orjson refuses them, and would read them back as floats) and, with
    ``nan``, NaN and infinities (orjson writes them as null; any null sends
    the value to json). :func:`loads_json` reads either.
    """
    if orjson is not None:
        try:
            data: bytes = orjson.dumps(value)
        except TypeError:
            pass
        else:
            if not (nan and b"null" in data):
                return data
    return _BY_JSON + json.dumps(value, separators=(",", ":"))


def loads_json(data: str | bytes) -> Any:
    """The value of JSON ``data`` that :func:`dumps_json` wrote (or json, with NaN)."""
    if orjson is None or data[:1] in _BY_JSON_MARKS:
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # written by json without the mark: NaN or Infinity
        return json.loads(data)


def encode_job(job: Job) -> bytes | str:
    """The ``job`` field of a requests stream entry (JSON)."""
    fields = {
        "request_id": job.request_id,
        "service": job.service,
        "revision": job.revision,
        "models": [list(pair) for pair in job.models],
        "instances": job.instances,
        "expires_at": job.expires_at,
        "deadline_ms": job.deadline_ms,
    }
    return dumps_json(fields, nan=True)  # the models see the instances exactly as sent


def decode_job(text: str | bytes) -> Job:
    """The inverse of :func:`encode_job`."""
    data = loads_json(text)
    return Job(
        request_id=str(data["request_id"]),
        service=str(data["service"]),
        revision=int(data["revision"]),
        models=tuple((str(ref), str(role)) for ref, role in data["models"]),
        instances=list(data["instances"]),
        expires_at=float(data.get("expires_at") or 0.0),
        deadline_ms=float(data.get("deadline_ms") or 0.0),
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

    :meth:`submit` never waits for Redis. The jobs of one turn of the event
    loop go out in one write on the sender connection; a reader task blocks
    on the reply stream on a second one and settles the futures. Both are
    :class:`~inloop.serve.resp.RespConnection`\\ s on the loop itself: a
    thread would cost a GIL hand-over per job. While Redis cannot be reached,
    jobs get ``error`` scores at once (the rendezvous answers with the
    fallback) and a connection is tried again every half second. Run workers
    with ``inloop serve worker SERVICE``.
    """

    def __init__(
        self, url: str | None = None, *, prefix: str = "inloop:serve", maxlen: int = 100_000
    ) -> None:
        if maxlen < 1:
            raise ServeError(f"The 'maxlen' of RedisTransport must be an int >= 1. Got {maxlen!r}.")
        self.url = resolve_stream_url(url)
        self._address = parse_address(self.url)
        check_reachable(self.url)
        self.prefix = prefix
        self.maxlen = maxlen
        instance = uuid.uuid4().hex
        self.reply_stream = reply_key(prefix, instance)
        self.client_name = f"inloop-server-{instance[:12]}"  # both connections, in CLIENT LIST
        # All of it is touched on the event loop only.
        self._futures: dict[tuple[str, str], tuple[asyncio.Future[Score], float]] = {}
        self._forgotten_at = 0.0
        self._outbox: list[tuple[Job, list[_Pending]]] = []
        self._flush_due = False
        self._sender: RespConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retry_at = 0.0  # after a failed connection, jobs fail at once until then
        self._sender_error: Exception | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisTransport {safe_url(self.url)} prefix={self.prefix!r}>"

    async def prepare(self, service: str, revision: int, refs: Sequence[str]) -> None:
        """Create the workers' consumer group on the service's requests stream.

        Created here as well as by the workers, so that jobs sent before the
        first worker starts wait for it instead of being skipped.
        """
        if self._closed:
            raise ServeError(f"{self!r} is closed; create a new RedisTransport.")
        stream = job_key(self.prefix, service)
        try:
            sender = await self._sender_connection()
            await sender.call("XGROUP", "CREATE", stream, WORKER_GROUP, "$", "MKSTREAM")
        except RedisReplyError as exc:
            if "BUSYGROUP" not in str(exc):
                raise ServeError(
                    f"Cannot create the consumer group {WORKER_GROUP!r} on {stream} at "
                    f"{safe_url(self.url)} ({exc})."
                ) from None
        except RedisConnectionError as exc:
            raise ServeError(
                f"Cannot create the consumer group {WORKER_GROUP!r} on {stream} at "
                f"{safe_url(self.url)} ({exc}). Check that Redis is up (INLOOP_STREAM_URL)."
            ) from None
        self._start_reader()

    def bounded(self, ref: str, X: np.ndarray) -> bool:
        """Never: every model's score costs this server a reply to collect."""
        return False

    def submit(self, job: Job) -> dict[str, asyncio.Future[Score]]:
        """One future per model of ``job``; the job goes out at the end of this loop turn."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures: dict[str, asyncio.Future[Score]] = {}
        pending: list[_Pending] = []
        for ref, role in job.models:
            future = ScoreFuture(loop=loop)
            futures[ref] = future
            pending.append((ref, role, future))
            self._futures[(job.request_id, ref)] = (future, now)
        if self._closed:
            _fail(pending, f"the RedisTransport to {safe_url(self.url)} is closed")
            return futures
        self._start_reader()
        self._outbox.append((job, pending))
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
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

    # --- sending --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write the jobs waiting in the outbox, or connect first."""
        self._flush_due = False
        if not self._outbox or self._closed:
            return
        sender = self._sender
        if sender is not None and sender.is_open:
            batch, self._outbox = self._outbox, []
            sender.send_all(
                [(self._xadd(job), partial(self._sent, job, pending)) for job, pending in batch]
            )
        elif time.monotonic() < self._retry_at:
            batch, self._outbox = self._outbox, []
            self._fail_jobs(batch, "Redis was not reachable moments ago")
        else:
            self._start_connecting()

    async def _connect(self) -> None:
        """Open the sender connection; the jobs waiting for it go out, or fail without it."""
        try:
            self._sender = await open_connection(self._address, self.client_name)
            self._sender_error = None
        except (RedisConnectionError, RedisReplyError) as exc:
            self._retry_at = time.monotonic() + _RETRY_S
            self._sender_error = exc
            batch, self._outbox = self._outbox, []
            self._fail_jobs(batch, str(exc))
        finally:
            self._connecting = None
        self._flush()

    def _start_connecting(self) -> asyncio.Task[None]:
        """The task opening the sender connection, started unless one is under way."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return self._connecting

    async def _sender_connection(self) -> RespConnection:
        """The sender connection, opened if need be (one opening at a time)."""
        if self._sender is None or not self._sender.is_open:
            connecting = self._start_connecting()
            await asyncio.shield(connecting)
        if self._sender is None or not self._sender.is_open:
            raise self._sender_error or RedisConnectionError("the connection to Redis is closed")
        return self._sender

    def _xadd(self, job: Job) -> bytes:
        return pack(
            "XADD",
            job_key(self.prefix, job.service),
            "MAXLEN",
            "~",
            self.maxlen,
            "*",
            "job",
            encode_job(job),
            "reply",
            self.reply_stream,
        )

    def _sent(self, job: Job, pending: list[_Pending], reply: Any) -> None:
        if isinstance(reply, Exception):
            self._fail_jobs([(job, pending)], str(reply))

    def _fail_jobs(self, batch: list[tuple[Job, list[_Pending]]], error: str) -> None:
        if not batch:
            return
        logger.warning("could not put %d job(s) on redis: %s", len(batch), error)
        for job, pending in batch:
            _fail(pending, f"could not put the job on redis {safe_url(self.url)}: {error}")
            for ref, _, _ in pending:
                self._futures.pop((job.request_id, ref), None)

    # --- reading --------------------------------------------------------------------------

    def _start_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def _read_replies(self) -> None:
        """Block on the reply stream; settle the futures of the scores that arrive."""
        last_id: bytes = b"0-0"
        housekeeping = 0.0
        conn: RespConnection | None = None
        try:
            while not self._closed:
                try:
                    if conn is None or not conn.is_open:
                        conn = await open_connection(self._address, self.client_name)
                    last_id = await conn.call(
                        "XREAD",
                        "BLOCK",
                        _READ_BLOCK_MS,
                        "STREAMS",
                        self.reply_stream,
                        last_id,
                        # Settled as the reply is parsed, a loop turn before this task resumes.
                        then=partial(self._resolve_all, last_id),
                    )
                    now = time.monotonic()
                    if now - housekeeping >= _HOUSEKEEPING_S:
                        housekeeping = now
                        # Entries before the last one read are done with; keep the stream small.
                        # Sent without waiting: their replies come before the next XREAD's.
                        trim = pack("XTRIM", self.reply_stream, "MINID", last_id)
                        expire = pack("EXPIRE", self.reply_stream, REPLY_TTL_S)
                        conn.send_all([(trim, _log_refusal), (expire, _log_refusal)])
                except (RedisConnectionError, RedisReplyError) as exc:
                    if self._closed:
                        return
                    logger.warning("reading replies from %s failed: %s", self.reply_stream, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    await asyncio.sleep(_RETRY_S)
        finally:
            if conn is not None:
                conn.close()

    def _resolve_all(self, last_id: bytes, response: Any) -> bytes:
        """Settle the futures of an XREAD's entries; the id of the last entry read."""
        for _stream, entries in response or ():
            for entry_id, fields in entries:
                last_id = entry_id
                self._resolve(fields)
        return last_id

    def _resolve(self, fields: list[bytes]) -> None:
        try:
            scores = loads_json(fields[fields.index(b"scores") + 1])
            parsed = [
                ((str(data.pop("request_id")), str(data["model"])), Score.from_dict(data))
                for data in scores
            ]
        except (IndexError, KeyError, TypeError, ValueError, AttributeError):
            logger.warning("ignoring a malformed reply on %s: %r", self.reply_stream, fields)
            return
        for key, score in parsed:
            found = self._futures.pop(key, None)
            if found is not None and not found[0].done():
                found[0].set_result(score)
            # else: a late score for a request the server already gave up on.

    async def close(self) -> None:
        """Stop reading, delete the reply stream, close the connections.

        Futures still pending stay pending: the caller times them out.
        """
        if self._closed:
            return
        self._closed = True
        for task in (self._reader, self._connecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sender = self._sender
        if sender is not None:
            with contextlib.suppress(RedisConnectionError, RedisReplyError, TimeoutError):
                await asyncio.wait_for(sender.call("DEL", self.reply_stream), 2.0)
            sender.close()
        self._outbox.clear()
        self._futures.clear()


def _log_refusal(reply: Any) -> None:
    if isinstance(reply, RedisReplyError):
        logger.warning("redis refused housekeeping on a reply stream: %s", reply)


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
