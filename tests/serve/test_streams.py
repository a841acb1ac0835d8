"""The Redis Streams transport and the model worker, on the real Redis at 127.0.0.1:6379.

Workers run as real processes (or, where only the behaviour of the loop
matters, as a thread in the test process) against the test's database. Every
test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
import redis
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from inloop.serve.models import MajorityClass, ServeError
from inloop.serve.policy import Policy, create_service, promote, set_policy
from inloop.serve.registry import load, register
from inloop.serve.scoring import Job, Score
from inloop.serve.streams import WORKER_GROUP, RedisTransport, encode_job, job_key
from inloop.serve.worker import run_worker
from inloop.settings import reset_settings

URL = "redis://127.0.0.1:6379/0"

_WORKER = """
import logging, sys, threading
from inloop.serve.worker import run_worker
logging.basicConfig(level=logging.INFO)
ready = threading.Event()
def announce():
    ready.wait()
    print("ready", flush=True)
threading.Thread(target=announce, daemon=True).start()
run_worker(sys.argv[1], url=sys.argv[2], prefix=sys.argv[3], claim_idle_ms=int(sys.argv[4]),
           policy_check_s=0.2, consumer=sys.argv[5], ready=ready)
"""


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"inloop-test:{uuid.uuid4().hex[:10]}"
    try:
        yield value
    finally:
        keys = list(redis_client.scan_iter(f"{value}:*"))
        if keys:
            redis_client.delete(*keys)


class Workers:
    """Worker processes on the test's database (the environment carries INLOOP_HOME/DB_URL)."""

    def __init__(self, service: str, prefix: str) -> None:
        self.service, self.prefix = service, prefix
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, consumer: str, claim_idle_ms: int = 1000) -> subprocess.Popen[str]:
        args = [self.service, URL, self.prefix, str(claim_idle_ms), consumer]
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ),
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_ready(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"worker exited with {proc.wait()} before it was ready"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def workers(prefix: str) -> Iterator[Callable[[str], Workers]]:
    made: list[Workers] = []

    def make(service: str) -> Workers:
        made.append(Workers(service, prefix))
        return made[-1]

    yield make
    for w in made:
        w.stop()


class InProcessWorker:
    """run_worker in a thread of the test process, stopped at the end of the test."""

    def __init__(self, service: str, prefix: str, **options: Any) -> None:
        self.stop, self.ready = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=run_worker,
            args=(service,),
            kwargs={
                "url": URL,
                "prefix": prefix,
                "stop": self.stop,
                "ready": self.ready,
                **options,
            },
        )
        self.thread.start()
        assert self.ready.wait(20), "the worker did not get ready"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _majority_service() -> str:
    """Create service 'svc' whose champion always says 'a' (3 to 1); its reference."""
    ref = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    create_service(
        "svc", Policy(champion=ref, fallback={"label": "a"}), created_by="ana", reason="launch"
    )
    return ref


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X, y


def _gather(
    transport: RedisTransport, jobs: list[Job], timeout: float = 10.0
) -> list[dict[str, Score]]:
    """Submit ``jobs`` and wait for every score (in the order of the jobs)."""

    async def run() -> list[dict[str, Score]]:
        results = []
        for job in jobs:
            futures = transport.submit(job)
            results.append(futures)
        out = []
        for futures in results:
            scores = await asyncio.wait_for(asyncio.gather(*futures.values()), timeout)
            out.append(dict(zip(futures, scores, strict=True)))
        return out

    return asyncio.run(_with_transport(transport, jobs[0].service, jobs, run))


async def _with_transport(
    transport: RedisTransport, service: str, jobs: list[Job], body: Any
) -> Any:
    refs = sorted({ref for job in jobs for ref, _ in job.models})
    await transport.prepare(service, 1, refs)
    try:
        return await body()
    finally:
        await transport.close()


def test_round_trip_through_a_worker_process(
    db_url: str, prefix: str, workers: Callable[[str], Workers]
) -> None:
    X, y = _digits()
    lr = register(LogisticRegression(max_iter=300).fit(X[:1000], y[:1000]), name="digits").ref
    base = register(MajorityClass(list(range(10)), np.bincount(y).tolist()), name="base").ref
    create_service(
        "digits",
        Policy(champion=lr, challengers=[base], fallback={"label": 0}),
        created_by="ana",
        reason="launch",
    )
    pool = workers("digits")
    Workers.wait_ready(pool.start("w1"))

    transport = RedisTransport(URL, prefix=prefix)
    rows = [X[1000 + 5 * i : 1005 + 5 * i].tolist() for i in range(20)]
    models = ((lr, "champion"), (base, "challenger"))
    jobs = [Job(f"r{i}", "digits", 1, models, rows[i]) for i in range(20)]
    results = _gather(transport, jobs)

    mine = {lr: load(lr), base: load(base)}
    for job, scores in zip(jobs, results, strict=True):
        assert set(scores) == {lr, base}
        for ref, role in models:
            score = scores[ref]
            assert (score.status, score.model, score.role) == ("ok", ref, role)
            assert score.predictions == mine[ref].predict(np.asarray(job.instances)).tolist()
            assert np.allclose(score.probabilities, mine[ref].predict_proba(job.instances))
    # The transport's reply stream is gone once it is closed.
    client = redis.Redis.from_url(URL)
    assert not client.exists(transport.reply_stream)
    client.close()


def _slow_labels(X: np.ndarray) -> list[int]:
    time.sleep(0.005)  # slow enough that a killed worker still holds unanswered jobs
    return [0] * len(X)


def test_jobs_of_a_killed_worker_are_scored_by_another(
    prefix: str, workers: Callable[[str], Workers]
) -> None:
    # Pickled by value: the worker processes cannot import this test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        slow = register(_slow_labels, name="slow", classes=[0, 1]).ref
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    base = register(MajorityClass([0, 1], [3, 1]), name="base").ref
    create_service(
        "svc",
        Policy(champion=slow, challengers=[base], fallback={"label": 0}),
        created_by="ana",
        reason="launch",
    )
    pool = workers("svc")
    doomed, survivor = pool.start("doomed", 300), pool.start("survivor", 300)
    Workers.wait_ready(doomed)
    Workers.wait_ready(survivor)
    transport = RedisTransport(URL, prefix=prefix)
    models = ((slow, "champion"), (base, "challenger"))
    n = 240

    async def load_then_kill() -> list[dict[str, Score]]:
        pending = []
        for i in range(n):
            pending.append(transport.submit(Job(f"r{i}", "svc", 1, models, [[float(i)]])))
            if i == n // 3:
                doomed.send_signal(signal.SIGKILL)
            await asyncio.sleep(0.003)
        out = []
        for futures in pending:
            scores = await asyncio.wait_for(asyncio.gather(*futures.values()), 20)
            out.append(dict(zip(futures, scores, strict=True)))
        return out

    results = asyncio.run(
        _with_transport(transport, "svc", [Job("x", "svc", 1, models, [])], load_then_kill)
    )
    assert doomed.wait(5) == -signal.SIGKILL
    assert len(results) == n
    for scores in results:
        assert {r: (s.status, s.role) for r, s in scores.items()} == {
            slow: ("ok", "champion"),
            base: ("ok", "challenger"),
        }
    # Nothing is left pending: the dead consumer's jobs were claimed.
    client = redis.Redis.from_url(URL)
    assert client.xpending(job_key(prefix, "svc"), WORKER_GROUP)["pending"] == 0
    client.close()


def test_a_failing_model_gives_error_and_a_bad_input_invalid(prefix: str) -> None:
    X, y = _digits()
    lr = register(LogisticRegression(max_iter=300).fit(X, y), name="digits").ref

    def broken(batch: np.ndarray) -> list[int]:
        raise RuntimeError("the feature store is down")

    bad = register(broken, name="broken", classes=[0, 1]).ref
    create_service(
        "svc",
        Policy(champion=lr, challengers=[bad], fallback={"label": 0}),
        created_by="ana",
        reason="launch",
    )
    worker = InProcessWorker("svc", prefix)
    try:
        models = ((lr, "champion"), (bad, "challenger"))
        jobs = [
            Job("good", "svc", 1, models, X[:2].tolist()),
            Job("short", "svc", 1, models, [[1.0, 2.0, 3.0]]),
        ]
        good, short = _gather(RedisTransport(URL, prefix=prefix), jobs)
    finally:
        worker.close()
    assert good[lr].ok and good[bad].status == "error"
    assert "RuntimeError: the feature store is down" in (good[bad].error or "")
    assert short[lr].status == "invalid" and "64 features" in (short[lr].error or "")


def test_the_worker_follows_a_policy_change_without_restart(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    v2 = register(MajorityClass(["a", "b"], [1, 3]), name="m").ref
    create_service(
        "svc", Policy(champion=v1, fallback={"label": "a"}), created_by="ana", reason="launch"
    )
    caplog.set_level(logging.INFO, logger="inloop.serve.worker")
    worker = InProcessWorker("svc", prefix, policy_check_s=0.1)
    try:
        promote("svc", v2, by="ana", reason="better")
        # As the rendezvous does on reloading a policy: prepare, then submit at once.
        job = Job("r1", "svc", 2, ((v2, "champion"), (v1, "challenger")), [[0.0]])
        [scores] = _gather(RedisTransport(URL, prefix=prefix), [job])
        assert scores[v2].predictions == ["b"] and scores[v2].role == "champion"
        assert scores[v1].predictions == ["a"] and scores[v1].role == "challenger"
        set_policy("svc", Policy(champion=v2, fallback={"label": "a"}), by="ana", reason="drop")
        deadline = time.monotonic() + 5
        while f"{v1}: no longer in policy" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.close()
    assert f"{v1}: no longer in policy revision 3; stopping" in caplog.text


def test_a_job_redis_refuses_gets_error_scores_and_late_replies_are_ignored(
    prefix: str,
) -> None:
    transport = RedisTransport(URL, prefix=prefix)
    client = redis.Redis.from_url(URL, decode_responses=True)

    async def body() -> Score:
        await transport.prepare("svc", 1, ["m@1"])
        # A late score for a request nobody waits for any more is dropped.
        client.xadd(transport.reply_stream, {"scores": '[{"request_id": "gone", "model": "m@1"}]'})
        # The requests key holds a string: XADD fails with WRONGTYPE.
        client.delete(job_key(prefix, "svc"))
        client.set(job_key(prefix, "svc"), "not a stream")
        futures = transport.submit(Job("r1", "svc", 1, (("m@1", "champion"),), [[0.0]]))
        pending = transport.submit(Job("r2", "other", 1, (("m@2", "canary"),), [[0.0]]))
        first = await asyncio.wait_for(futures["m@1"], 5)
        # With no worker for 'other', its future stays pending (the caller times it out).
        done, _ = await asyncio.wait(pending.values(), timeout=0.3)
        assert not done
        await transport.close()
        return first

    score = asyncio.run(body())
    client.close()
    assert (score.status, score.role) == ("error", "champion")
    assert "redis" in (score.error or "") and "WRONGTYPE" in (score.error or "")


_HANG, _RELEASE = threading.Event(), threading.Event()


def _hangs(X: np.ndarray) -> list[int]:
    if _HANG.is_set():
        _RELEASE.wait(30)  # hangs until the test lets it go
    return [0] * len(X)


def test_a_champion_that_hangs_holds_up_only_itself(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    hung = register(_hangs, name="hung", classes=[0, 1]).ref
    base = register(MajorityClass([0, 1], [3, 1]), name="base").ref
    create_service(
        "svc",
        Policy(champion=hung, challengers=[base], fallback={"label": 0}),
        created_by="ana",
        reason="launch",
    )
    caplog.set_level(logging.INFO, logger="inloop.serve.worker")
    _HANG.clear()
    _RELEASE.clear()
    worker = InProcessWorker("svc", prefix, claim_idle_ms=300)
    transport = RedisTransport(URL, prefix=prefix)
    models = ((hung, "champion"), (base, "challenger"))
    jobs = [Job(f"r{i}", "svc", 1, models, [[float(i)]]) for i in range(8)]

    async def body() -> tuple[list[Score], list[Score], bool]:
        # Fast at first: the worker learns so and scores it on its reader thread.
        warm = [transport.submit(job)[hung] for job in jobs[:2]]
        warmed = await asyncio.wait_for(asyncio.gather(*warm), 10)
        _HANG.set()
        pending = []
        for job in jobs[2:]:
            pending.append(transport.submit(job))
            await asyncio.sleep(0.05)
        # The first of these hangs the reader; a new reader takes over and the job is
        # claimed again, so every challenger still answers.
        challengers = await asyncio.wait_for(
            asyncio.gather(*(futures[base] for futures in pending)), 15
        )
        champion_answered = any(futures[hung].done() for futures in pending)
        return list(warmed), list(challengers), champion_answered

    try:
        warmed, challengers, champion_answered = asyncio.run(
            _with_transport(transport, "svc", jobs, body)
        )
    finally:
        _RELEASE.set()
        worker.close()
    assert [score.status for score in warmed] == ["ok", "ok"]
    assert [score.status for score in challengers] == ["ok"] * (len(jobs) - 2)
    assert not champion_answered
    assert f"{hung} has not answered in" in caplog.text and "a new reader takes over" in caplog.text


def _slow(X: np.ndarray) -> list[int]:
    time.sleep(0.6)
    return [1] * len(X)


def test_a_slow_challenger_does_not_hold_up_the_champion(prefix: str) -> None:
    champion = register(MajorityClass([0, 1], [3, 1]), name="fast").ref
    challenger = register(_slow, name="slow", classes=[0, 1]).ref
    create_service(
        "svc",
        Policy(champion=champion, challengers=[challenger], fallback={"label": 0}),
        created_by="ana",
        reason="launch",
    )
    worker = InProcessWorker("svc", prefix)
    transport = RedisTransport(URL, prefix=prefix)
    models = ((champion, "champion"), (challenger, "challenger"))
    jobs = [Job(f"r{i}", "svc", 1, models, [[float(i)]]) for i in range(3)]

    async def body() -> tuple[list[float], list[Score]]:
        waits, all_futures = [], []
        for job in jobs:
            started = time.monotonic()
            futures = transport.submit(job)
            await asyncio.wait_for(futures[champion], 10)
            waits.append(time.monotonic() - started)
            all_futures.append(futures)
            await asyncio.sleep(0.05)
        slow = [await asyncio.wait_for(f[challenger], 10) for f in all_futures]
        return waits, slow

    try:
        waits, slow = asyncio.run(_with_transport(transport, "svc", jobs, body))
    finally:
        worker.close()
    # Each champion answered long before the challenger's 0.6 s, which still scored every job.
    assert max(waits) < 0.3, waits
    assert [score.status for score in slow] == ["ok"] * len(jobs)


def test_expired_jobs_are_acknowledged_without_scoring(prefix: str) -> None:
    ref = _majority_service()
    worker = InProcessWorker("svc", prefix)
    transport = RedisTransport(URL, prefix=prefix)
    models = ((ref, "champion"),)
    late = Job("late", "svc", 1, models, [[0.0]], expires_at=time.time() - 1)
    fresh = Job("fresh", "svc", 1, models, [[0.0]], expires_at=time.time() + 60)

    async def body() -> tuple[Score, bool]:
        expired = transport.submit(late)
        score = await asyncio.wait_for(transport.submit(fresh)[ref], 10)
        await asyncio.sleep(0.2)
        return score, expired[ref].done()

    try:
        score, expired_answered = asyncio.run(
            _with_transport(transport, "svc", [late, fresh], body)
        )
    finally:
        worker.close()
    assert score.ok and score.predictions == ["a"]
    assert not expired_answered
    client = redis.Redis.from_url(URL)
    assert client.xpending(job_key(prefix, "svc"), WORKER_GROUP)["pending"] == 0
    client.close()


def test_a_reply_redis_refuses_does_not_lose_the_jobs_read_with_it(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker sends its replies in the same round trip as its next read: Redis refusing
    # one of them must not drop the jobs that read returns (no claim would bring them
    # back within this test: claim_idle_ms is a minute).
    ref = _majority_service()
    client = redis.Redis.from_url(URL, decode_responses=True)
    bad_reply = f"{prefix}:not-a-stream"
    client.set(bad_reply, "a string: XADD to it fails with WRONGTYPE")
    caplog.set_level(logging.WARNING, logger="inloop.serve.worker")
    worker = InProcessWorker("svc", prefix, claim_idle_ms=60_000)
    transport = RedisTransport(URL, prefix=prefix)
    models = ((ref, "champion"),)
    refused = Job("refused", "svc", 1, models, [[0.0]], expires_at=time.time() + 60)
    jobs = [Job(f"r{i}", "svc", 1, models, [[0.0]]) for i in range(5)]

    async def body() -> list[Score]:
        scores = []
        for job in jobs:
            client.xadd(job_key(prefix, "svc"), {"job": encode_job(refused), "reply": bad_reply})
            scores.append(await asyncio.wait_for(transport.submit(job)[ref], 10))
        return scores

    try:
        scores = asyncio.run(_with_transport(transport, "svc", jobs, body))
    finally:
        worker.close()
    assert [score.predictions for score in scores] == [["a"]] * len(jobs)
    assert "redis refused a reply" in caplog.text and "WRONGTYPE" in caplog.text
    # The refused replies' jobs were scored and acknowledged too: nothing is left pending.
    assert client.xpending(job_key(prefix, "svc"), WORKER_GROUP)["pending"] == 0
    client.close()


def test_the_transport_reconnects_when_redis_drops_its_connections(
    prefix: str, redis_client: redis.Redis
) -> None:
    ref = _majority_service()
    worker = InProcessWorker("svc", prefix)
    transport = RedisTransport(URL, prefix=prefix)
    jobs = [Job(f"r{i}", "svc", 1, ((ref, "champion"),), [[0.0]]) for i in range(60)]

    async def body() -> tuple[Score, list[Score]]:
        first = await asyncio.wait_for(transport.submit(jobs[0])[ref], 10)
        mine = [c for c in redis_client.client_list() if c["name"] == transport.client_name]
        assert len(mine) == 2  # the sender and the reader
        for client in mine:
            redis_client.client_kill_filter(_id=client["id"])
        after = []
        for job in jobs[1:]:
            after.append(await asyncio.wait_for(transport.submit(job)[ref], 10))
            if after[-1].ok:
                break
            await asyncio.sleep(0.1)
        return first, after

    try:
        first, after = asyncio.run(_with_transport(transport, "svc", jobs, body))
    finally:
        worker.close()
    assert first.ok
    # Scores come back again; a job sent while the connection was down got an error at once.
    assert after[-1].ok and after[-1].predictions == ["a"]
    assert all("redis" in (score.error or "") for score in after[:-1])


@pytest.mark.parametrize("url", [URL, URL + "?health_check_interval=30"])
def test_a_worker_reader_whose_connection_redis_drops_reads_again(
    prefix: str, redis_client: redis.Redis, url: str
) -> None:
    # The second URL has an option only redis-py understands: the reader reads through it.
    ref = _majority_service()
    worker = InProcessWorker("svc", prefix, url=url)
    transport = RedisTransport(URL, prefix=prefix)
    jobs = [Job(f"r{i}", "svc", 1, ((ref, "champion"),), [[0.0]]) for i in range(3)]

    async def body() -> list[Score]:
        first = await asyncio.wait_for(transport.submit(jobs[0])[ref], 10)
        killed = 0
        for client in redis_client.client_list():
            # The reader's own connection, or redis-py's blocked in XREADGROUP.
            if client["name"].startswith("inloop-worker:") or client["cmd"] == "xreadgroup":
                redis_client.client_kill_filter(_id=client["id"])
                killed += 1
        assert killed >= 1
        rest = [await asyncio.wait_for(transport.submit(job)[ref], 10) for job in jobs[1:]]
        return [first, *rest]

    try:
        scores = asyncio.run(_with_transport(transport, "svc", jobs, body))
    finally:
        worker.close()
    assert [s.predictions for s in scores] == [["a"]] * 3


def test_dead_workers_are_forgotten_once_they_hold_no_jobs(
    prefix: str, redis_client: redis.Redis
) -> None:
    _majority_service()
    stream = job_key(prefix, "svc")
    redis_client.xgroup_create(stream, WORKER_GROUP, id="$", mkstream=True)
    redis_client.xgroup_createconsumer(stream, WORKER_GROUP, "ghost")
    # "holder" took a job and died with it: it keeps its name until the job is claimed.
    redis_client.xadd(stream, {"job": "{}", "reply": f"{prefix}:replies:x"})
    redis_client.xreadgroup(WORKER_GROUP, "holder", {stream: ">"}, count=1)

    def names() -> set[str]:
        info: Any = redis_client.xinfo_consumers(stream, WORKER_GROUP)
        return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in info}

    worker = InProcessWorker(
        "svc", prefix, consumer="alive", forget_after_s=0.3, claim_idle_ms=60_000
    )
    try:
        deadline = time.monotonic() + 5
        while "ghost" in names() and time.monotonic() < deadline:
            time.sleep(0.1)
        # The consumer that still holds a job stays (a live worker claims the job later).
        assert "ghost" not in names() and "holder" in names()
    finally:
        worker.close()


def test_no_or_unreachable_redis_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServeError, match="INLOOP_STREAM_URL"):
        RedisTransport()
    with pytest.raises(
        ServeError,
        match=r"Cannot reach Redis at redis://127\.0\.0\.1:1 .*"
        "INLOOP_STREAM_URL",
    ):
        RedisTransport("redis://127.0.0.1:1")
    monkeypatch.setenv("INLOOP_STREAM_URL", "redis://:secret@127.0.0.1:1/0")
    reset_settings()
    with pytest.raises(ServeError) as info:
        RedisTransport()
    assert "secret" not in str(info.value) and "redis://:***@127.0.0.1:1/0" in str(info.value)
    with pytest.raises(ServeError, match="redis://"):
        RedisTransport("http://127.0.0.1:6379")
    with pytest.raises(ServeError, match="INLOOP_STREAM_URL"):
        run_worker("svc", url="redis://127.0.0.1:1")


@pytest.mark.parametrize("with_orjson", [True, False], ids=["orjson", "json"])
def test_a_job_reaches_the_worker_with_its_instances_exactly_as_sent(
    with_orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inloop.serve import streams

    if not with_orjson:
        monkeypatch.setattr(streams, "orjson", None)
    models = (("m@1", "champion"), ("m@2", "canary"))
    cases = [
        [[0.5] * 64],  # the common case
        [["a text", None], ["NaN", 3]],  # None stays None, text stays text
        [[float("nan"), float("inf")]],  # orjson would write null: json keeps them
        [[2**70, -1]],  # past orjson's 64 bits
    ]
    for instances in cases:
        job = Job("r1", "svc", 7, models, instances, expires_at=1.5, deadline_ms=50.0)
        data = streams.encode_job(job)
        back = streams.decode_job(data)
        assert back.models == models and back.revision == 7 and back.expires_at == 1.5
        assert repr(back.instances) == repr(instances)  # NaN == NaN by repr only
    assert isinstance(streams.encode_job(Job("r", "s", 1, models, [[0.5]])), bytes) is with_orjson
