"""The model worker: scores a service's jobs from Redis Streams (``inloop serve worker``).

:func:`run_worker` loads every model of the service's current policy (the
champion, the challengers and the canary; the rendezvous scores the fallback
itself) and runs ``threads_per_model`` consumer threads per model. Each thread
reads the service's requests stream through the model's consumer group (named
by its reference, ``digits@3``), scores each job that lists the model with
:func:`~inloop.serve.scoring.score_model`, appends the score to the job's reply
stream, then acknowledges the job. A worker that dies loses nothing: the
threads of the others claim its unacknowledged jobs once they have been idle
``claim_idle_ms`` (a job may so be scored twice; the rendezvous takes the first
score). The policy is re-read every ``policy_check_s``: new models start,
retired ones stop, without a restart.

Run one per host or core with ``inloop serve worker SERVICE`` (see
:mod:`inloop.cli.serve_worker`); the server side is
:class:`~inloop.serve.streams.RedisTransport`.

>>> policy_refs(Policy(champion="d@3", challengers=["d@4"], canary="d@1", fallback="h@1"))
('d@3', 'd@4', 'd@1')
>>> default_consumer().endswith(f"-{os.getpid()}")
True
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from inloop.serve.models import LoadedModel, ServeError
from inloop.serve.policy import Policy, current_policy
from inloop.serve.scoring import as_batch, score_model
from inloop.serve.streams import (
    REPLY_TTL_S,
    check_reachable,
    decode_job,
    job_key,
    resolve_stream_url,
    safe_url,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from inloop.store.artifacts import ArtifactStore

__all__ = ["default_consumer", "policy_refs", "run_worker"]

logger = logging.getLogger("inloop.serve.worker")

#: How long one XREADGROUP call waits for jobs: also how soon a thread sees ``stop``.
_BLOCK_MS = 500
#: Jobs read (or claimed) per call.
_COUNT = 16
#: A reply stream is capped near this length, should its server be gone.
_REPLY_MAXLEN = 100_000


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
class _Lane:
    """One model's consumer threads and the event that stops them."""

    ref: str
    model: LoadedModel
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


@dataclass(frozen=True)
class _Consumer:
    client: redis.Redis
    stream: str
    consumer: str
    claim_idle_ms: int


def _create_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="$", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _handle(c: _Consumer, lane: _Lane, entry_id: str, fields: dict[str, str] | None) -> None:
    """Score one entry if it lists this lane's model, reply, then acknowledge it."""
    job = None
    try:
        if fields is not None:
            job = decode_job(fields["job"])
            reply = fields["reply"]
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "%s: dropping malformed entry %s on %s: %s", lane.ref, entry_id, c.stream, exc
        )
    role = None if job is None else dict(job.models).get(lane.ref)
    pipe = c.client.pipeline(transaction=False)
    if job is not None and role is not None:
        score = score_model(lane.model, as_batch(job.instances), lane.ref, role)
        payload = {**score.to_dict(), "request_id": job.request_id}
        pipe.xadd(
            reply,
            {"score": json.dumps(payload, separators=(",", ":"))},
            maxlen=_REPLY_MAXLEN,
            approximate=True,
        )
        # Set here too: a reply stream whose server died must still expire.
        pipe.expire(reply, REPLY_TTL_S)
    pipe.xack(c.stream, lane.ref, entry_id)
    pipe.execute()


def _consume(c: _Consumer, lane: _Lane, stop: threading.Event) -> None:
    """One consumer thread: read new jobs, and now and then claim a dead consumer's."""
    claim_every = c.claim_idle_ms / 2000.0
    next_claim = time.monotonic() + claim_every
    cursor = "0-0"
    while not (stop.is_set() or lane.stop.is_set()):
        try:
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + claim_every
                claimed: Any = c.client.xautoclaim(
                    c.stream, lane.ref, c.consumer, c.claim_idle_ms, start_id=cursor, count=_COUNT
                )
                cursor, entries = claimed[0], claimed[1]
                if entries:
                    logger.info(
                        "%s: claimed %d idle job(s) from other consumers", lane.ref, len(entries)
                    )
                for entry_id, fields in entries:
                    _handle(c, lane, entry_id, fields)
                if cursor != "0-0":
                    next_claim = 0.0  # more to claim: go on at once
            response: Any = c.client.xreadgroup(
                lane.ref, c.consumer, {c.stream: ">"}, count=_COUNT, block=_BLOCK_MS
            )
            for _stream, entries in response or ():
                for entry_id, fields in entries:
                    _handle(c, lane, entry_id, fields)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                # The stream or group was deleted under us: create it again.
                logger.warning(
                    "%s: consumer group missing on %s; recreating it", lane.ref, c.stream
                )
                _create_group(c.client, c.stream, lane.ref)
            else:
                logger.exception("%s: redis refused a command", lane.ref)
                stop.wait(0.5)
        except (redis.RedisError, OSError) as exc:
            logger.warning("%s: redis error (%s); retrying in 0.5 s", lane.ref, exc)
            stop.wait(0.5)


def run_worker(
    service: str,
    *,
    url: str | None = None,
    prefix: str = "inloop:serve",
    consumer: str | None = None,
    threads_per_model: int = 1,
    claim_idle_ms: int = 1000,
    policy_check_s: float = 1.0,
    engine: Engine | None = None,
    artifacts: ArtifactStore | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Score ``service``'s jobs from Redis until ``stop`` is set.

    ``url`` defaults to the ``stream_url`` setting; ``consumer`` (this
    worker's name in every consumer group) to :func:`default_consumer`.
    ``ready`` is set once every model is loaded and consuming. Raises a
    :class:`~inloop.serve.models.ServeError` when Redis is unreachable, the
    service does not exist or one of its models cannot be loaded at startup;
    later failures (a model of a new policy revision that cannot be loaded)
    are logged and retried at the next policy check.
    """
    if threads_per_model < 1 or claim_idle_ms < 1 or policy_check_s <= 0:
        raise ServeError(
            "run_worker needs threads_per_model >= 1, claim_idle_ms >= 1 and policy_check_s "
            f"> 0. Got {threads_per_model}, {claim_idle_ms} and {policy_check_s}."
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

    client = redis.Redis.from_url(url, socket_connect_timeout=2, decode_responses=True)
    c = _Consumer(client, job_key(prefix, service), consumer, claim_idle_ms)
    lanes: dict[str, _Lane] = {}
    revision = None
    first = True
    try:
        while not stop.is_set():
            try:
                current = current_policy(service, engine=engine)
            except Exception:
                if first:
                    raise
                logger.exception("could not re-read the policy of %s; keeping the models", service)
                stop.wait(policy_check_s)
                continue
            if current.revision != revision:
                revision = current.revision
                wanted = policy_refs(current.policy)
                for ref in [r for r in lanes if r not in wanted]:
                    logger.info("%s: no longer in policy revision %d; stopping", ref, revision)
                    lanes.pop(ref).stop.set()
                for ref in [r for r in wanted if r not in lanes]:
                    try:
                        model = load(ref, engine=engine, artifacts=artifacts)
                    except Exception as exc:
                        if first:
                            if isinstance(exc, ServeError):
                                raise
                            raise ServeError(
                                f"Model {ref} of service {service!r} could not be loaded "
                                f"({type(exc).__name__}: {exc}). Check that its artifact store "
                                "(INLOOP_ARTIFACTS_URL) is the one it was registered in."
                            ) from exc
                        logger.exception("%s: could not be loaded; retrying later", ref)
                        revision = None  # try again at the next check
                        continue
                    _create_group(client, c.stream, ref)
                    lane = _Lane(ref, model)
                    for i in range(threads_per_model):
                        thread = threading.Thread(
                            target=_consume,
                            args=(c, lane, stop),
                            name=f"inloop-worker-{ref}-{i}",
                            daemon=True,  # a hung model must not keep the process alive
                        )
                        thread.start()
                        lane.threads.append(thread)
                    lanes[ref] = lane
                    logger.info(
                        "%s: scoring %s jobs from %s as %s (%d thread(s))",
                        ref,
                        service,
                        safe_url(url),
                        consumer,
                        threads_per_model,
                    )
            if first:
                first = False
                if ready is not None:
                    ready.set()
            stop.wait(policy_check_s)
    finally:
        for lane in lanes.values():
            lane.stop.set()
        deadline = time.monotonic() + 2 * _BLOCK_MS / 1000 + 1.0
        for lane in lanes.values():
            for thread in lane.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        client.close()
        logger.info("worker %s stopped", consumer)
