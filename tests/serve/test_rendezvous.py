"""The rendezvous on SQLite and PostgreSQL: schedule, deadline, fallback, archive, policies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine

from inloop.serve import (
    MajorityClass,
    ServiceNotFoundError,
    create_service,
    promote,
    register,
    rollback,
)
from inloop.serve.archive import add_feedback, count_requests, get_request, list_requests
from inloop.serve.models import ServeError
from inloop.serve.rendezvous import InvalidRequestError, NoAnswerError, Rendezvous
from inloop.serve.scoring import LocalTransport

T = TypeVar("T")

#: Released at the end of the module so hung model threads end with the tests.
_RELEASE = threading.Event()


@pytest.fixture(scope="module", autouse=True)
def _release_hung_models() -> Any:
    yield
    _RELEASE.set()


def hang(X: np.ndarray) -> list[int]:
    _RELEASE.wait(60)
    return [0] * len(X)


def crash(X: np.ndarray) -> list[int]:
    raise RuntimeError("model exploded")


def zeros(X: np.ndarray) -> list[int]:
    return [0] * len(X)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def refs(db_url: str, digits: tuple[np.ndarray, np.ndarray]) -> dict[str, str]:
    X, y = digits
    strong = LogisticRegression(max_iter=500).fit(X[:1000], y[:1000])
    weak = LogisticRegression(max_iter=200, C=0.01).fit(X[:60], y[:60])
    classes = list(range(10))
    return {
        "strong": register(strong, name="digits").ref,
        "weak": register(weak, name="digits").ref,
        "old": register(weak, name="digits-old").ref,
        "hang": register(hang, name="hang", classes=classes).ref,
        "crash": register(crash, name="crash", classes=classes).ref,
        "zeros": register(zeros, name="zeros", classes=classes).ref,
        "base": register(MajorityClass(classes, np.bincount(y, minlength=10)), name="base").ref,
    }


def run(make: Callable[[Rendezvous], Awaitable[T]], **options: Any) -> T:
    """Run ``make(rendezvous)`` on a fresh rendezvous, closed (archive flushed) after."""

    async def main() -> T:
        async with Rendezvous(**options) as rendezvous:
            return await make(rendezvous)

    return asyncio.run(main())


def test_champion_answers_and_every_model_is_archived(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "digits",
        {
            "champion": refs["strong"],
            "challengers": [refs["weak"]],
            "canary": refs["old"],
            "fallback": refs["base"],
        },
        created_by="ana",
        reason="launch",
    )
    batch = X[1500:1510].tolist()
    answer = run(lambda r: r.predict("digits", batch))
    assert answer.model == refs["strong"] and answer.role == "champion"
    assert not answer.fallback_used and answer.revision == 1
    from inloop.serve import load

    strong = load(refs["strong"])
    assert answer.predictions == strong.predict(np.asarray(batch)).tolist()
    np.testing.assert_allclose(answer.probabilities, strong.predict_proba(np.asarray(batch)))
    assert answer.classes == list(range(10)) and answer.latency_ms > 0

    archived = get_request("digits", answer.request_id)
    assert archived.inputs == batch  # exactly as the models saw it
    assert archived.predictions == answer.predictions and archived.model == refs["strong"]
    assert {ref: s.role for ref, s in archived.scores.items()} == {
        refs["strong"]: "champion",
        refs["weak"]: "challenger",
        refs["old"]: "canary",
    }
    weak = load(refs["weak"]).predict(np.asarray(batch)).tolist()
    assert archived.scores[refs["weak"]].predictions == weak
    assert all(s.status == "ok" and s.latency_ms is not None for s in archived.scores.values())


def test_hung_champion_gets_the_canary_then_the_fallback_by_the_deadline(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = digits
    schedule = {
        "deadline_ms": 60,
        "steps": [{"model": "champion", "by_ms": 15}, {"model": "best", "by_ms": 60}],
    }
    create_service(
        "canary-saves",
        {
            "champion": refs["hang"],
            "canary": refs["weak"],
            "fallback": refs["base"],
            "schedule": schedule,
        },
        created_by="ana",
        reason="t",
    )
    create_service(
        "fallback-saves",
        {
            "champion": refs["hang"],
            "canary": refs["crash"],
            "fallback": refs["base"],
            "schedule": schedule,
        },
        created_by="ana",
        reason="t",
    )
    create_service(
        "default-saves",
        {"champion": refs["hang"], "fallback": {"label": 7}, "schedule": schedule},
        created_by="ana",
        reason="t",
    )

    async def ask(r: Rendezvous) -> list[Any]:
        out = []
        for service in ("canary-saves", "fallback-saves", "default-saves"):
            await r.live(service)  # loaded (as a server does at start), not timed
            for i in range(12):  # more than the hung model's lane takes: later calls are 'busy'
                start = time.perf_counter()
                answer = await r.predict(service, [X[i].tolist()])
                out.append((service, answer, (time.perf_counter() - start) * 1000))
        return out

    answers = run(ask, collect_s=0.3, transport=LocalTransport(max_in_flight=8))
    for service, answer, elapsed in answers:
        assert elapsed < 60 + 25, (service, elapsed)  # deadline plus a small margin
        if service == "canary-saves":
            assert answer.model == refs["weak"] and answer.role == "canary"
            assert not answer.fallback_used
        elif service == "fallback-saves":
            assert answer.fallback_used and answer.model == refs["base"]
            assert answer.predictions == [int(np.argmax(np.bincount(y)))]  # the majority class
            assert answer.probabilities is not None
        else:
            assert answer.fallback_used and answer.model is None
            assert answer.predictions == [7] and answer.probabilities is None

    hung = list_requests("fallback-saves", limit=20)
    assert len(hung) == 12
    # The hung model's lane (shared by the three services) has 2 threads: the first calls
    # wait out the deadline and time out. Once both threads have been stuck for longer than
    # the deadline, later calls are refused at once as 'busy', and the canary or fallback
    # answers without waiting for the deadline.
    every = [
        v
        for name in ("canary-saves", "fallback-saves", "default-saves")
        for v in list_requests(name, limit=20)
    ]
    statuses = [v.scores[refs["hang"]].status for v in every]
    assert 2 <= statuses.count("timeout") <= 3, statuses
    assert statuses.count("busy") == len(every) - statuses.count("timeout")
    busy = [v.scores[refs["hang"]] for v in every if v.scores[refs["hang"]].status == "busy"]
    assert all("60 ms deadline" in (s.error or "") for s in busy)
    waits = sorted(elapsed for _, _, elapsed in answers)
    assert waits[len(waits) // 2] < 30, waits  # most answers did not wait for the deadline
    crashed = [v.scores[refs["crash"]] for v in hung]
    assert all(s.status == "error" and "model exploded" in (s.error or "") for s in crashed)
    assert all(v.scores[refs["base"]].role == "fallback" for v in hung)


def test_bad_requests_are_refused_and_not_archived(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    create_service(
        "strict", {"champion": refs["strong"], "fallback": refs["base"]}, created_by="a", reason="t"
    )

    async def ask(r: Rendezvous) -> list[str]:
        errors = []
        for bad in ([], [[1.0, 2.0]], [[1.0], [1.0, 2.0]], "text", [[float("nan")] * 64]):
            with pytest.raises(InvalidRequestError) as caught:
                await r.predict("strict", bad)  # type: ignore[arg-type]
            errors.append(str(caught.value))
        with pytest.raises(ServiceNotFoundError, match="strict"):
            await r.predict("nope", [[0.0] * 64])
        return errors

    errors = run(ask)
    assert "1 to 10000 instances" in errors[0]
    assert "fitted on 64 features" in errors[1]  # checked against the champion, before numpy
    assert "Instance 0 is a list of 1" in errors[2] and "list of instances" in errors[3]
    assert "NaN" in errors[4]
    assert count_requests("strict") == 0


def test_a_promotion_or_rollback_applies_to_the_next_request(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    # A generous deadline: a newly promoted model's first call on a busy machine may take
    # longer than 50 ms, and this test is about which model answers, not how fast.
    create_service(
        "live",
        {"champion": refs["weak"], "fallback": refs["base"], "schedule": {"deadline_ms": 5000}},
        created_by="a",
        reason="t",
    )

    async def ask(r: Rendezvous) -> list[tuple[str | None, int]]:
        seen = []
        answer = await r.predict("live", [X[0].tolist()])
        seen.append((answer.model, answer.revision))
        promote("live", refs["strong"], by="ana", reason="better", engine=r.engine)
        r.invalidate()  # what the server's own promote route does; elsewhere: policy_check_s
        answer = await r.predict("live", [X[0].tolist()])
        seen.append((answer.model, answer.revision))
        rollback("live", by="bo", reason="regressed", engine=r.engine)
        # A change made by another process: picked up within about policy_check_s.
        changed_at = time.perf_counter()
        while True:
            answer = await r.predict("live", [X[0].tolist()])
            if answer.revision == 3 or time.perf_counter() - changed_at > 2:
                break
            await asyncio.sleep(0.005)
        assert time.perf_counter() - changed_at < 0.5
        seen.append((answer.model, answer.revision))
        return seen

    assert run(ask) == [(refs["weak"], 1), (refs["strong"], 2), (refs["weak"], 3)]
    archived = sorted(list_requests("live", limit=1000), key=lambda v: v.revision)
    assert [v.revision for v in archived][:2] == [1, 2] and archived[-1].revision == 3
    # After the promotion the old champion stays on as a challenger and is archived too.
    assert archived[1].scores[refs["weak"]].role == "challenger"


def test_feedback_judges_every_models_archived_score(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = digits
    create_service(
        "judged",
        {"champion": refs["strong"], "challengers": [refs["weak"]], "fallback": refs["base"]},
        created_by="a",
        reason="t",
    )
    batch = X[1700:1705].tolist()
    answer = run(lambda r: r.predict("judged", batch))
    truth = y[1700:1705].tolist()
    view = add_feedback("judged", answer.request_id, truth, by="oracle", role="scientist")
    assert view.feedback is not None and view.feedback.labels == truth
    assert view.feedback.given_by == "oracle"
    with pytest.raises(ServeError, match="5 instance"):
        add_feedback("judged", answer.request_id, truth[:2], by="oracle", role="scientist")
    with pytest.raises(ServeError, match="not classes"):
        add_feedback("judged", answer.request_id, ["cat"] * 5, by="oracle", role="scientist")
    with pytest.raises(LookupError, match="no archived request"):
        add_feedback("judged", "0" * 32, truth, by="oracle", role="scientist")
    assert get_request("judged", answer.request_id).feedback == view.feedback  # unchanged


def test_the_archive_holds_every_request_under_concurrent_load(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "busy",
        {"champion": refs["strong"], "canary": refs["old"], "fallback": refs["base"]},
        created_by="a",
        reason="t",
    )

    async def ask(r: Rendezvous) -> list[str]:
        answers = await asyncio.gather(
            *(r.predict("busy", [X[i % 1797].tolist()]) for i in range(300))
        )
        return [a.request_id for a in answers]

    # 300 requests at once hold the loop up: without shed=False later ones would be shed.
    ids = run(ask, transport=LocalTransport(max_in_flight=1000), shed=False)
    assert len(set(ids)) == 300
    assert count_requests("busy") == 300
    views = list_requests("busy", limit=300)
    for view in views:  # under this burst some answers come from the fallback; all are archived
        expected = {refs["strong"], refs["old"]} | ({refs["base"]} if view.fallback_used else set())
        assert set(view.scores) == expected
        assert view.scores[refs["strong"]].status == "ok" == view.scores[refs["old"]].status


def test_closing_archives_requests_whose_challenger_hangs_with_its_score_as_timeout(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "waits",
        {"champion": refs["strong"], "challengers": [refs["hang"]], "fallback": refs["base"]},
        created_by="a",
        reason="t",
    )

    async def ask(r: Rendezvous) -> tuple[list[str], float]:
        answers = [await r.predict("waits", [X[i].tolist()]) for i in range(3)]
        started = time.monotonic()
        await r.close(grace_s=0.3)
        return [a.request_id for a in answers], time.monotonic() - started

    # The collection window is a minute; closing waits the grace only, then archives.
    ids, closing_s = run(ask, collect_s=60.0)
    assert closing_s < 10, closing_s
    for request_id in ids:
        scores = get_request("waits", request_id).scores
        assert scores[refs["strong"]].status == "ok"
        assert scores[refs["hang"]].status == "timeout"


def test_no_answer_at_all_is_an_error_not_a_wrong_answer(refs: dict[str, str]) -> None:
    def broken(X: np.ndarray) -> list[int]:
        raise RuntimeError("the rule broke")

    from inloop.serve import Heuristic

    class Broken(Heuristic):
        classes = tuple(range(10))

        def rule(self, X: np.ndarray) -> Any:
            raise RuntimeError("the rule broke")

    ref = register(Broken(), name="broken-rule").ref
    create_service(
        "doomed",
        {"champion": refs["crash"], "fallback": ref, "schedule": {"deadline_ms": 30}},
        created_by="a",
        reason="t",
    )
    with pytest.raises(NoAnswerError, match="the rule broke"):
        run(lambda r: r.predict("doomed", [[0.0] * 64]))


def test_a_lagging_loop_sheds_models_then_recovers(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "busy",
        {
            "champion": refs["strong"],
            "challengers": [refs["weak"]],
            "canary": refs["old"],
            "fallback": refs["base"],
            "schedule": {"deadline_ms": 40},
        },
        created_by="ana",
        reason="launch",
    )
    batch = X[1500:1502].tolist()

    async def make(rendezvous: Rendezvous) -> tuple[Any, Any, Any]:
        calm = await rendezvous.predict("busy", batch)
        time.sleep(0.2)  # the loop is stuck: requests arriving now are long overdue
        behind = await rendezvous.predict("busy", batch)
        await asyncio.sleep(0.3)  # the lag is gone
        after = await rendezvous.predict("busy", batch)
        return calm, behind, after

    calm, behind, after = run(make)
    assert (calm.role, calm.overloaded) == ("champion", False)
    assert behind.fallback_used and behind.overloaded and behind.model == refs["base"]
    assert behind.to_dict()["overloaded"] is True
    assert (after.role, after.overloaded) == ("champion", False)
    # The shed request is archived: the input, the fallback's answer, every model as busy.
    archived = get_request("busy", behind.request_id)
    assert archived.inputs == batch and archived.fallback_used
    shed = {ref: s for ref, s in archived.scores.items() if ref != refs["base"]}
    assert {s.status for s in shed.values()} == {"busy"} and len(shed) == 3
    assert all("behind (overloaded)" in (s.error or "") for s in shed.values())
    assert all(s.status == "ok" for s in get_request("busy", after.request_id).scores.values())


def test_half_the_deadline_behind_only_the_champion_and_models_scored_on_the_loop_score(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    for name, challengers in (("half", [refs["zeros"], refs["weak"]]), ("cheap", [refs["weak"]])):
        create_service(
            name,
            {
                "champion": refs["strong"],
                "challengers": challengers,
                "fallback": refs["base"],
                "schedule": {"deadline_ms": 300},
            },
            created_by="ana",
            reason="launch",
        )

    async def make(rendezvous: Rendezvous) -> Any:
        calm = await rendezvous.predict("half", X[:1].tolist())
        await rendezvous.predict("cheap", X[:1].tolist())
        time.sleep(0.2)  # 200 ms behind: past half the 300 ms deadline, short of all of it
        half = await rendezvous.predict("half", X[:1].tolist())
        await asyncio.sleep(0.05)  # caught up, then behind again
        time.sleep(0.2)
        return calm, half, await rendezvous.predict("cheap", X[:1].tolist())

    calm, half, cheap = run(make)
    assert not calm.overloaded
    # The callable would take a thread: shed. The logistic regressions score on the loop.
    assert half.overloaded and half.role == "champion"
    scores = get_request("half", half.request_id).scores
    assert scores[refs["zeros"]].status == "busy"
    assert "behind (overloaded)" in (scores[refs["zeros"]].error or "")
    assert scores[refs["strong"]].status == "ok" and scores[refs["weak"]].status == "ok"
    # Nothing left out: every model scored, so the answer is not marked overloaded.
    assert cheap.role == "champion" and not cheap.overloaded
    assert all(s.ok for s in get_request("cheap", cheap.request_id).scores.values())


def test_shedding_can_be_turned_off(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "strict",
        {"champion": refs["strong"], "fallback": refs["base"], "schedule": {"deadline_ms": 40}},
        created_by="ana",
        reason="launch",
    )

    async def make(rendezvous: Rendezvous) -> Any:
        await rendezvous.predict("strict", X[:1].tolist())
        time.sleep(0.2)
        return await rendezvous.predict("strict", X[:1].tolist())

    answer = run(make, shed=False)
    assert answer.role == "champion" and not answer.overloaded


def test_a_request_that_waited_past_its_deadline_gets_the_fallback_at_once(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "queued",
        {"champion": refs["strong"], "fallback": refs["base"], "schedule": {"deadline_ms": 40}},
        created_by="ana",
        reason="launch",
    )

    async def make(rendezvous: Rendezvous) -> Any:
        # As the web app passes it: the request reached the server 100 ms ago.
        return await rendezvous.predict("queued", X[:1].tolist(), arrived=time.perf_counter() - 0.1)

    answer = run(make)
    assert answer.fallback_used and answer.overloaded
    assert answer.latency_ms >= 100.0  # counted from the arrival
    scores = get_request("queued", answer.request_id).scores
    assert scores[refs["strong"]].status == "busy"


def _promote_elsewhere(service: str, ref: str) -> float:
    """Promote ``ref`` with the ``inloop`` command, in a process of its own; when it ended."""
    inloop = os.path.join(os.path.dirname(sys.executable), "inloop")
    done = subprocess.run(
        [inloop, "serve", "promote", service, ref, "--reason", "from the CLI"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic()


def test_an_idle_server_serves_a_cli_promotion_within_policy_check_s(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "idle",
        {"champion": refs["weak"], "fallback": refs["base"], "schedule": {"deadline_ms": 5000}},
        created_by="a",
        reason="t",
    )

    async def ask(r: Rendezvous) -> list[tuple[str | None, int]]:
        before = await r.predict("idle", [X[0].tolist()])
        # The server sits idle while another process commits a new revision.
        committed = await asyncio.to_thread(_promote_elsewhere, "idle", refs["strong"])
        while time.monotonic() - committed < r.policy_check_s:
            await asyncio.sleep(0.005)
        after = await r.predict("idle", [X[0].tolist()])
        return [(before.model, before.revision), (after.model, after.revision)]

    assert run(ask) == [(refs["weak"], 1), (refs["strong"], 2)]


def test_a_busy_server_serves_each_revision_from_policy_check_s_after_its_commit(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray], db_url: str
) -> None:
    X, _ = digits
    create_service(
        "busy",
        {"champion": refs["weak"], "fallback": refs["base"], "schedule": {"deadline_ms": 5000}},
        created_by="a",
        reason="t",
    )
    # Another engine stands for another process (a CLI, a notebook) writing the policy.
    other = create_engine(db_url)

    def change(n: int) -> float:
        if n % 2:
            rollback("busy", by="bo", reason="back", engine=other)
        else:
            promote("busy", refs["strong"], by="ana", reason="better", engine=other)
        return time.monotonic()

    async def ask(r: Rendezvous) -> list[tuple[int, list[int]]]:
        seen: list[tuple[int, list[int]]] = []
        await r.predict("busy", [X[0].tolist()])
        for n in range(4):
            changing = asyncio.ensure_future(asyncio.to_thread(change, n))
            late: list[int] = []  # revisions of requests arriving policy_check_s after the commit
            while len(late) < 20:
                arrived = time.monotonic()
                answer = await r.predict("busy", [X[0].tolist()])
                if changing.done() and arrived - changing.result() >= r.policy_check_s:
                    late.append(answer.revision)
                await asyncio.sleep(0.001)
            seen.append((n + 2, late))
        return seen

    try:
        for revision, late in run(ask):
            assert late == [revision] * len(late)
    finally:
        other.dispose()


def _state_size(r: Rendezvous) -> int:
    """How many entries the rendezvous and its transport keep in their dicts and sets."""
    sizes = [
        len(value)
        for owner in (r, r.transport)
        for value in vars(owner).values()
        if isinstance(value, dict | set | list)
    ]
    return sum(sizes)


def test_unknown_service_names_leave_nothing_behind(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = digits
    create_service(
        "known", {"champion": refs["weak"], "fallback": refs["base"]}, created_by="a", reason="t"
    )

    async def ask(r: Rendezvous) -> tuple[int, int]:
        await r.predict("known", [X[0].tolist()])
        before = _state_size(r)
        for _ in range(2000):
            name = uuid.uuid4().hex
            with pytest.raises(ServiceNotFoundError, match=rf"No service '{name}'.*'known'"):
                await r.predict(name, [X[0].tolist()])
        assert (await r.predict("known", [X[0].tolist()])).model == refs["weak"]
        return before, _state_size(r)

    before, after = run(ask)
    assert after <= before


def test_the_server_refuses_a_swapped_champion_blob_and_runs_none_of_it(
    refs: dict[str, str], digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from inloop.errors import ArtifactIntegrityError
    from inloop.serve import get_version
    from inloop.settings import get_settings
    from inloop.store.serialize import dump_chunks

    X, _ = digits
    create_service(
        "swapped",
        {"champion": refs["strong"], "fallback": refs["base"]},
        created_by="a",
        reason="t",
    )
    marker = tmp_path / "pwned"
    name, _, number = refs["strong"].partition("@")
    key = get_version(name, int(number)).artifact_key
    path = Path(get_settings().resolved_artifacts_url) / key[:2] / key[2:]
    path.write_bytes(b"".join(dump_chunks(_Planted(marker))))

    async def ask(r: Rendezvous) -> None:
        with pytest.raises(ArtifactIntegrityError, match=rf"{refs['strong']} was not loaded"):
            await r.predict("swapped", [X[0].tolist()])

    run(ask)
    assert not marker.exists()


class _Planted:
    """Unpickling it creates the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")
