"""Replay and evaluation on the request archive, on SQLite and PostgreSQL.

Until the archive writer lands, :func:`archive` writes the rows the
rendezvous would: real inputs from sklearn's digits, the champion's real
scores (from the registered champion itself), feedback with the true labels.
Every expected number is computed here independently with numpy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from inloop.serve import ModelNotFoundError, ServeError, ServiceNotFoundError, create_service
from inloop.serve.registry import load, register
from inloop.serve.replay import QUANTILES, evaluate, replay
from inloop.serve.tables import (
    serve_feedback_events,
    serve_requests,
    serve_scores,
    serve_services,
)
from inloop.store import get_engine, open_artifact_store
from inloop.store.db import begin_write

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@dataclass
class Archived:
    """One archived request as the test wrote it (what the expected numbers use)."""

    request_id: str
    received_at: datetime
    X: np.ndarray
    y: np.ndarray
    has_inputs: bool
    champion_ok: bool
    labeled: bool


def _events(request_id: str, labels: list[Any], at: datetime) -> list[dict[str, Any]]:
    """Feedback event rows: a reviewer's label for each instance of a request."""
    return [
        {
            "request_id": request_id,
            "position": position,
            "label": label,
            "given_by": "bo",
            "role": "reviewer",
            "given_at": at,
            "source": "api",
        }
        for position, label in enumerate(labels)
    ]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data.astype(np.float64), data.target


@pytest.fixture(scope="module")
def estimators(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, LogisticRegression]:
    """A weak champion (few training images) and a stronger candidate; fitted once."""
    X, y = digits
    champion = LogisticRegression(max_iter=300).fit(X[:60], y[:60])
    candidate = LogisticRegression(max_iter=300).fit(X[:600], y[:600])
    return {"champion": champion, "candidate": candidate}


@pytest.fixture
def service(db_url: str, estimators: dict[str, LogisticRegression]) -> str:
    """The service 'digits-svc' with digits@1 as champion and digits@2 as challenger."""
    store = open_artifact_store()
    register(estimators["champion"], name="digits", artifacts=store)
    register(estimators["candidate"], name="digits", artifacts=store)
    create_service(
        "digits-svc",
        {"champion": "digits@1", "challengers": ["digits@2"], "fallback": {"label": 0}},
        created_by="ana",
        reason="launch",
    )
    return "digits-svc"


def _service_id(name: str) -> int:
    with get_engine().connect() as conn:
        return int(
            conn.execute(
                select(serve_services.c.service_id).where(serve_services.c.name == name)
            ).scalar_one()
        )


def _score_row(request_id: str, ref: str, role: str, X: np.ndarray) -> dict[str, Any]:
    model = load(ref)
    proba = model.predict_proba(X)
    classes = np.asarray(model.classes)
    return {
        "request_id": request_id,
        "model": ref,
        "role": role,
        "status": "ok",
        "predictions": classes[np.argmax(proba, axis=1)].tolist(),
        "probabilities": proba.tolist(),
        "classes": classes.tolist(),
        "latency_ms": 1.0,
        "error": None,
    }


def archive(
    service: str,
    digits: tuple[np.ndarray, np.ndarray],
    n: int = 30,
    *,
    skipped: frozenset[int] = frozenset({3, 17}),
    champion_missing: frozenset[int] = frozenset({5, 22}),
    labeled: frozenset[int] = frozenset(range(0, 30, 2)),
    score_challenger: bool = True,
) -> list[Archived]:
    """Write ``n`` requests of 1-3 test images each, one a minute from T0, into the archive.

    Request ``i`` has no inputs when in ``skipped``; its champion timed out
    when in ``champion_missing``; it got feedback (the true labels) when in
    ``labeled``. The challenger digits@2 scores every request when asked.
    """
    X_all, y_all = digits
    service_id = _service_id(service)
    rng = np.random.default_rng(7)
    out: list[Archived] = []
    requests, scores, feedback = [], [], []
    position = 1000  # test images: after the candidate's training set
    for i in range(n):
        size = int(rng.integers(1, 4))
        X, y = X_all[position : position + size], y_all[position : position + size]
        position += size
        request_id = f"req-{i:03d}"
        received_at = T0 + timedelta(minutes=i)
        champion = _score_row(request_id, "digits@1", "champion", X)
        if i in champion_missing:
            champion.update(
                status="timeout", predictions=None, probabilities=None, classes=None, error="late"
            )
        requests.append(
            {
                "request_id": request_id,
                "service_id": service_id,
                "revision": 1,
                "received_at": received_at,
                "n_instances": size,
                "inputs": None if i in skipped else X.tolist(),
                "model": None if i in champion_missing else "digits@1",
                "role": "fallback" if i in champion_missing else "champion",
                "fallback_used": i in champion_missing,
                "predictions": champion["predictions"] or [0] * size,
                "latency_ms": 3.0,
            }
        )
        scores.append(champion)
        if score_challenger:
            scores.append(_score_row(request_id, "digits@2", "challenger", X))
        if i in labeled:
            # A wrong label first: the newest feedback must win.
            wrong = ((y + 1) % 10).tolist()
            for at, labels in (
                (received_at + timedelta(hours=1), wrong),
                (received_at + timedelta(hours=2), y.tolist()),
            ):
                feedback += _events(request_id, labels, at)
        out.append(
            Archived(
                request_id,
                received_at,
                X,
                y,
                has_inputs=i not in skipped,
                champion_ok=i not in champion_missing,
                labeled=i in labeled,
            )
        )
    with begin_write(get_engine()) as conn:
        conn.execute(serve_requests.insert(), requests)
        conn.execute(serve_scores.insert(), scores)
        if feedback:
            conn.execute(serve_feedback_events.insert(), feedback)
    return out


def expected(rows: list[Archived], estimators: dict[str, LogisticRegression]) -> dict[str, Any]:
    """The report's numbers, computed straight from the estimators with numpy."""
    replayed = [r for r in rows if r.has_inputs]
    compared = [r for r in replayed if r.champion_ok]
    X_rep = np.vstack([r.X for r in replayed])
    cand_top = estimators["candidate"].predict_proba(X_rep).max(axis=1)
    X_cmp = np.vstack([r.X for r in compared])
    y_cmp = np.concatenate([r.y for r in compared])
    champ = estimators["champion"].predict(X_cmp)
    cand = estimators["candidate"].predict(X_cmp)
    champ_top = estimators["champion"].predict_proba(X_cmp).max(axis=1)
    mask = np.concatenate([np.full(len(r.y), r.labeled) for r in compared])
    pairs = Counter((int(a), int(b)) for a, b in zip(champ, cand, strict=True) if a != b)
    return {
        "n_requests": len(rows),
        "n_skipped": len(rows) - len(replayed),
        "n_champion_missing": len(replayed) - len(compared),
        "n_instances": len(X_rep),
        "agreement": float(np.mean(champ == cand)),
        "n_labeled": int(mask.sum()),
        "candidate_accuracy": float(np.mean(cand[mask] == y_cmp[mask])),
        "champion_accuracy": float(np.mean(champ[mask] == y_cmp[mask])),
        "candidate_top": cand_top,
        "champion_top": champ_top,
        "pairs": pairs,
    }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {k: float(np.quantile(values, q, method="inverted_cdf")) for k, q in QUANTILES.items()}


def test_replay_matches_numbers_computed_independently(
    service: str, digits: tuple[np.ndarray, np.ndarray], estimators: dict[str, LogisticRegression]
) -> None:
    rows = archive(service, digits)
    want = expected(rows, estimators)
    seen: list[tuple[int, int]] = []
    # batch_size 4: the 30 requests are read in 8 pages, scored in chunks of <= 4 instances.
    report = replay(service, "digits@2", batch_size=4, progress=lambda d, t: seen.append((d, t)))

    assert report.model == "digits@2" and report.champion == ("digits@1",)
    for name in ("n_requests", "n_skipped", "n_champion_missing", "n_instances", "n_labeled"):
        assert getattr(report, name) == want[name], name
    assert report.n_candidate_failed == 0
    assert report.agreement == pytest.approx(want["agreement"])
    assert report.candidate_accuracy == pytest.approx(want["candidate_accuracy"])
    assert report.champion_accuracy == pytest.approx(want["champion_accuracy"])
    assert 0 < want["agreement"] < 1  # the two models really differ on this data
    assert report.candidate_score_quantiles == pytest.approx(
        _quantiles(want["candidate_top"]), abs=1e-4
    )
    assert report.champion_score_quantiles == pytest.approx(
        _quantiles(want["champion_top"]), abs=1e-4
    )
    # The most frequent (champion, candidate) pairs, with their true counts (ties in any order).
    top = [c for _, c in want["pairs"].most_common(10)]
    assert [c for _, _, c in report.disagreements] == top
    assert all(want["pairs"][(a, b)] == c for a, b, c in report.disagreements)
    # Progress: a start, then one call per page of 4 requests, ending at the total.
    assert seen[0] == (0, 30) and seen[-1] == (30, 30) and len(seen) == 1 + 8
    # Paging in 4s or all at once gives the same report.
    assert replay(service, "digits@2") == report

    data = report.to_dict()
    assert data["since"] is None and data["champion"] == ["digits@1"]
    assert data["n_requests"] == 30 and set(data["candidate_score_quantiles"]) == set(QUANTILES)


def test_since_until_and_limit_select_the_window(
    service: str, digits: tuple[np.ndarray, np.ndarray], estimators: dict[str, LogisticRegression]
) -> None:
    rows = archive(service, digits)
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    report = replay(service, "digits@2", since=since, until=until, batch_size=3)
    window = [r for r in rows if since <= r.received_at < until]  # since inclusive, until not
    want = expected(window, estimators)
    assert report.n_requests == 10 and report.since == since and report.until == until
    assert report.n_instances == want["n_instances"]
    assert report.agreement == pytest.approx(want["agreement"])
    assert report.candidate_accuracy == pytest.approx(want["candidate_accuracy"])

    # limit: the oldest requests of the window, across pages.
    limited = replay(service, "digits@2", since=since, limit=7, batch_size=3)
    want = expected([r for r in rows if r.received_at >= since][:7], estimators)
    assert limited.n_requests == 7 and limited.n_instances == want["n_instances"]

    # Naive times are UTC.
    naive = replay(service, "digits@2", since=since.replace(tzinfo=None), until=until)
    assert naive.n_requests == 10


def test_skipped_and_champion_missing_are_counted_not_compared(
    service: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    rows = archive(
        service,
        digits,
        n=6,
        skipped=frozenset(range(3)),
        champion_missing=frozenset({3, 4, 5}),
        labeled=frozenset(),
    )
    report = replay(service, "digits@2", batch_size=2)
    assert (report.n_requests, report.n_skipped, report.n_champion_missing) == (6, 3, 3)
    assert report.n_instances == sum(len(r.y) for r in rows[3:])
    assert report.agreement is None and report.champion == ()
    assert report.champion_score_quantiles is None
    assert report.candidate_score_quantiles is not None
    assert (report.n_labeled, report.candidate_accuracy, report.champion_accuracy) == (
        0,
        None,
        None,
    )


def test_empty_window_is_a_report_not_an_error(
    service: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    archive(service, digits, n=4)
    report = replay(service, "digits@2", since=T0 + timedelta(days=1))
    assert report.n_requests == 0 and report.agreement is None
    assert report.candidate_score_quantiles is None and report.disagreements == ()
    assert report.table().row_count > 0


def test_inputs_the_candidate_cannot_score_are_counted(
    service: str, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    archive(service, digits, n=4)
    with begin_write(get_engine()) as conn:
        conn.execute(
            serve_requests.update()
            .where(serve_requests.c.request_id == "req-001")
            .values(inputs=[[1.0, 2.0]])  # 2 features; the model takes 64
        )
    report = replay(service, "digits@2", batch_size=256)
    assert report.n_candidate_failed == 1 and report.n_requests == 4
    assert report.n_instances > 0  # its neighbours in the same batch were still scored


def test_evaluate_compares_every_model_on_the_champions_labeled_requests(
    service: str, digits: tuple[np.ndarray, np.ndarray], estimators: dict[str, LogisticRegression]
) -> None:
    rows = archive(service, digits)
    # Scored by both, labeled, and the champion answered (inputs NULL does not matter here).
    counted = [r for r in rows if r.labeled and r.champion_ok]
    X = np.vstack([r.X for r in counted])
    y = np.concatenate([r.y for r in counted])
    results = {e.model: e for e in evaluate(service)}
    assert set(results) == {"digits@1", "digits@2"}
    for ref, name, role in (
        ("digits@1", "champion", "champion"),
        ("digits@2", "candidate", "challenger"),
    ):
        e = results[ref]
        assert e.roles == (role,)
        assert (e.n_requests, e.n_labeled) == (len(counted), len(y))
        assert e.accuracy == pytest.approx(float(np.mean(estimators[name].predict(X) == y)))
    ordered = evaluate(service)
    accuracies = [e.accuracy or 0.0 for e in ordered]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > accuracies[1]  # the candidate beats the weak champion: a real order

    since = T0 + timedelta(minutes=15)
    window = [r for r in counted if r.received_at >= since]
    assert {e.n_requests for e in evaluate(service, since=since)} == {len(window)}
    assert evaluate(service, until=T0) == []


def test_errors_say_what_was_wrong(service: str) -> None:
    with pytest.raises(ServiceNotFoundError, match="no-such-svc"):
        replay("no-such-svc", "digits@2")
    with pytest.raises(ServiceNotFoundError, match="no-such-svc"):
        evaluate("no-such-svc")
    with pytest.raises(ModelNotFoundError, match="nope"):
        replay(service, "nope@1")
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        replay(service, "digits@9")
    with pytest.raises(ServeError, match=r"since .* is after until"):
        replay(service, "digits@2", since=T0, until=T0 - timedelta(hours=1))
    with pytest.raises(ServeError, match=r"since .* is after until"):
        evaluate(service, since=T0, until=T0 - timedelta(hours=1))
    with pytest.raises(ServeError, match=r"'batch_size' .* int >= 1. Got 0"):
        replay(service, "digits@2", batch_size=0)
    with pytest.raises(ServeError, match=r"'limit' .* Got -1"):
        replay(service, "digits@2", limit=-1)
