"""LocalTransport: fast models share one scorer thread, slow and hung ones keep to their lanes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from inloop.serve import scoring
from inloop.serve.models import LoadedModel, as_model
from inloop.serve.scoring import Job, LocalTransport, Score

T = TypeVar("T")


@pytest.fixture
def lenient() -> Any:
    """Count any call under 50 ms as fast: a busy test machine must not move a model off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoring, "_SHARED_MS", 50.0)
        patch.setattr(scoring, "_SHARED_OTHER_MS", 50.0)
        yield


class Recorder:
    """A model answering class 0 that records which thread scored each call.

    ``hold`` (when set) is an event the call waits for before answering.
    """

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.threads: list[str] = []
        self.idents: list[int] = []
        self.sleep_s = sleep_s
        self.hold: threading.Event | None = None

    def __call__(self, X: np.ndarray) -> list[int]:
        self.threads.append(threading.current_thread().name)
        self.idents.append(threading.get_ident())
        if self.hold is not None:
            self.hold.wait(10)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return [0] * len(X)


def run(models: dict[str, Recorder], use: Callable[[LocalTransport], Awaitable[T]]) -> T:
    loaded: dict[str, LoadedModel] = {ref: as_model(m, classes=[0, 1]) for ref, m in models.items()}

    async def main() -> T:
        transport = LocalTransport(loader=loaded.__getitem__)
        await transport.prepare("svc", 1, list(loaded))
        try:
            return await use(transport)
        finally:
            await transport.close()

    return asyncio.run(main())


def job(i: int, *models: tuple[str, str]) -> Job:
    return Job(f"r{i}", "svc", 1, models, [[0.0]])


async def scores(transport: LocalTransport, j: Job, timeout: float = 5.0) -> dict[str, Score]:
    futures = transport.submit(j)
    return {ref: await asyncio.wait_for(f, timeout) for ref, f in futures.items()}


@pytest.mark.usefixtures("lenient")
def test_fast_models_move_to_the_shared_scorer_once_they_have_answered() -> None:
    champion, canary = Recorder(), Recorder()

    async def use(transport: LocalTransport) -> list[dict[str, Score]]:
        return [
            await scores(transport, job(i, ("c@1", "champion"), ("k@1", "canary")))
            for i in range(5)
        ]

    answers = run({"c@1": champion, "k@1": canary}, use)
    assert all(s.ok for a in answers for s in a.values())
    # Unknown models start on their own lanes; proven fast, they share the scorer.
    assert champion.threads[0].startswith("inloop-c@1-")
    assert canary.threads[0].startswith("inloop-k@1-")
    assert champion.threads[1:] == canary.threads[1:] == ["inloop-scorer"] * 4


def test_slow_models_stay_on_their_own_lanes() -> None:
    champion, canary = Recorder(sleep_s=0.008), Recorder(sleep_s=0.002)

    async def use(transport: LocalTransport) -> None:
        for i in range(4):
            await scores(transport, job(i, ("c@1", "champion"), ("k@1", "canary")))

    run({"c@1": champion, "k@1": canary}, use)
    # Over 5 ms for a champion, over 1 ms for another model: never on the shared scorer.
    assert not any(t == "inloop-scorer" for t in champion.threads + canary.threads)


@pytest.mark.usefixtures("lenient")
def test_the_champions_answer_does_not_wait_for_the_other_models_on_the_scorer() -> None:
    champion, challenger = Recorder(), Recorder()

    async def use(transport: LocalTransport) -> tuple[str, bool]:
        both = (("c@1", "champion"), ("x@1", "challenger"))
        await scores(transport, job(0, *both))
        challenger.hold = threading.Event()
        futures = transport.submit(job(1, *both))
        first = await asyncio.wait_for(futures["c@1"], 5)
        waited = not futures["x@1"].done()
        challenger.hold.set()  # only now can the challenger answer
        await asyncio.wait_for(futures["x@1"], 5)
        return first.status, waited

    status, waited = run({"c@1": champion, "x@1": challenger}, use)
    assert status == "ok" and waited
    assert challenger.threads[1] == "inloop-scorer"


@pytest.mark.usefixtures("lenient")
def test_a_model_that_hangs_the_scorer_goes_to_its_lane_and_a_new_scorer_takes_over() -> None:
    flaky, steady = Recorder(), Recorder()

    async def use(transport: LocalTransport) -> dict[str, Any]:
        await scores(transport, job(0, ("f@1", "champion")))
        await scores(transport, job(1, ("s@1", "champion")))
        flaky.hold = threading.Event()
        stuck = transport.submit(job(2, ("f@1", "champion")))  # hangs the scorer
        await asyncio.sleep(0.05)
        behind = transport.submit(job(3, ("s@1", "champion")))  # queued behind it
        await asyncio.sleep(0.3)  # past the 0.25 s a scorer may spend in one call
        started = time.perf_counter()
        after = await scores(transport, job(4, ("s@1", "champion")))  # replaces the scorer
        late = await asyncio.wait_for(behind["s@1"], 5)
        took = time.perf_counter() - started
        again = transport.submit(job(5, ("f@1", "champion")))  # now on its own lane
        await asyncio.sleep(0.05)
        flaky.hold.set()
        first_stuck = await asyncio.wait_for(stuck["f@1"], 5)
        await asyncio.wait_for(again["f@1"], 5)
        return {"after": after["s@1"], "late": late, "took": took, "stuck": first_stuck}

    out = run({"f@1": flaky, "s@1": steady}, use)
    assert out["after"].ok and out["late"].ok and out["took"] < 1.0
    assert out["stuck"].ok  # the hung call still ends with its score once the model returns
    assert flaky.threads[1] == "inloop-scorer"
    # Both later calls of the steady model were scored by a new scorer.
    assert steady.threads[1:] == ["inloop-scorer"] * 2
    assert flaky.idents[1] not in steady.idents[1:]
    assert flaky.threads[2].startswith("inloop-f@1-")  # never shared again


def test_a_model_stuck_on_every_thread_past_the_deadline_is_busy_at_once() -> None:
    stuck, steady = Recorder(), Recorder()
    stuck.hold = threading.Event()

    def deadline(i: int, ms: float) -> Job:
        return Job(f"r{i}", "svc", 1, (("h@1", "champion"), ("s@1", "canary")), [[0.0]], 0, ms)

    async def use(transport: LocalTransport) -> dict[str, Any]:
        held = [transport.submit(deadline(i, 50)) for i in range(2)]  # one per lane thread
        await asyncio.sleep(0.02)
        young = transport.submit(deadline(2, 50))  # the threads are not 50 ms in yet: queued
        await asyncio.sleep(0.08)
        late = await scores(transport, deadline(3, 50))  # both threads stuck for 100 ms
        patient = transport.submit(deadline(4, 0))  # no deadline: queued as before
        stuck.hold.set()
        freed = [await asyncio.wait_for(f["h@1"], 5) for f in (*held, young, patient)]
        again = await scores(transport, deadline(5, 50))  # the model answers again
        return {"late": late, "freed": freed, "again": again}

    out = run({"h@1": stuck, "s@1": steady}, use)
    busy = out["late"]["h@1"]
    assert busy.status == "busy" and busy.latency_ms is None
    assert "2 threads of h@1" in (busy.error or "") and "50 ms deadline" in (busy.error or "")
    assert out["late"]["s@1"].ok  # the other model of that job is scored as usual
    assert all(score.ok for score in out["freed"])  # queued calls were not dropped
    assert out["again"]["h@1"].ok
    assert len(stuck.threads) == 5  # every call but the busy one reached the model


def test_a_logistic_regression_on_a_small_batch_is_scored_before_submit_returns() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    estimator = LogisticRegression(max_iter=2000).fit(X, y)
    recorder = Recorder()
    loaded = {"lr@1": as_model(estimator), "cb@1": as_model(recorder, classes=list(range(10)))}
    both = (("lr@1", "champion"), ("cb@1", "challenger"))
    big = X[np.arange(500) % len(X)]  # 500 rows x 64 features x 10 classes: over the bound
    bad = X[:2].copy()
    bad[1, 3] = np.nan

    async def main() -> tuple[Any, ...]:
        transport = LocalTransport(loader=loaded.__getitem__)
        await transport.prepare("svc", 1, list(loaded))
        try:
            futures = transport.submit(Job("r1", "svc", 1, both, X[:3].tolist()))
            # No thread was involved: the score is there already. The callable's is not.
            at_once = futures["lr@1"].done(), futures["cb@1"].done()
            small = await asyncio.wait_for(futures["lr@1"], 5)
            await asyncio.wait_for(futures["cb@1"], 5)
            futures = transport.submit(Job("r2", "svc", 1, both[:1], big.tolist()))
            big_at_once = futures["lr@1"].done()
            large = await asyncio.wait_for(futures["lr@1"], 5)
            futures = transport.submit(Job("r3", "svc", 1, both[:1], bad.tolist()))
            return at_once, small, big_at_once, large, futures["lr@1"].result()
        finally:
            await transport.close()

    at_once, small, big_at_once, large, nan = asyncio.run(main())
    assert at_once == (True, False)
    assert small.ok and small.role == "champion"
    np.testing.assert_allclose(small.probabilities, estimator.predict_proba(X[:3]), rtol=1e-9)
    assert small.predictions == estimator.predict(X[:3]).tolist()
    assert recorder.threads and not any(t == "MainThread" for t in recorder.threads)
    # A batch with too much arithmetic goes to a thread like any other model, and scores the same.
    assert not big_at_once and large.ok
    assert large.predictions == estimator.predict(big).tolist()
    # Input scikit-learn refuses is a score like any other: the loop goes on.
    assert nan.status == "error" and "NaN" in (nan.error or "")


def _turns_until_woken(make: Callable[[asyncio.AbstractEventLoop], asyncio.Future[Score]]) -> int:
    """Loop turns between a score being set and the request waiting for it resuming."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        future = make(loop)
        turns = 0
        woken: int | None = None

        def tick() -> None:
            nonlocal turns
            turns += 1
            if woken is None:
                loop.call_soon(tick)

        async def request() -> None:
            nonlocal woken
            await scoring.wait_first([future], 5.0)
            woken = turns

        task = asyncio.create_task(request())
        await asyncio.sleep(0)  # the request is waiting now
        future.set_result(Score("m@1", "champion", "ok", predictions=[0]))
        loop.call_soon(tick)  # counts the turns that other requests' work would take
        await task
        return woken if woken is not None else -1

    return asyncio.run(main())


def test_a_request_waiting_for_a_score_resumes_in_the_next_loop_turn() -> None:
    # asyncio.wait on a plain future takes a turn more (the future's callback, then the task);
    # under load each turn also serves other requests' I/O.
    assert _turns_until_woken(lambda loop: scoring.ScoreFuture(loop=loop)) == 0
    assert _turns_until_woken(lambda loop: loop.create_future()) == 1


def test_waiting_for_the_first_score_times_out_without_cancelling_any() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = [scoring.ScoreFuture(loop=loop), scoring.ScoreFuture(loop=loop)]
        started = time.perf_counter()
        await scoring.wait_first(futures, 0.05)
        assert time.perf_counter() - started >= 0.045
        assert not any(f.done() for f in futures)  # still pending: a late score is archived
        # A second wait on the same futures wakes when one of them is set.
        loop.call_later(0.01, futures[1].set_result, Score("m@2", "canary", "ok"))
        await scoring.wait_first(futures, 5.0)
        assert futures[1].done() and not futures[0].done()
        await scoring.wait_first(futures, 5.0)  # one is done already: returns at once

    asyncio.run(asyncio.wait_for(main(), 5.0))


def test_a_model_giving_nan_probabilities_gets_an_error_score_not_an_answer() -> None:
    class Broken:
        classes_ = np.array([0, 1])

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return np.full((len(X), 2), np.nan)

    model = as_model(Broken())
    score = scoring.score_model(model, np.zeros((1, 3)), "m@1", "champion")
    assert score.status == "error" and "NaN or infinite probabilities" in (score.error or "")
    assert score.probabilities is None
