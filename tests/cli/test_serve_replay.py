"""``inloop serve replay`` and ``inloop serve evaluate`` end to end, on SQLite and PostgreSQL.

The archive rows are written as the rendezvous would (real inputs, the
champion's real scores, feedback) until the archive writer lands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import typer
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from typer.testing import CliRunner

from inloop.cli.serve_replay import evaluate_cmd, parse_when, replay
from inloop.serve import ServeError, create_service
from inloop.serve.registry import load, register
from inloop.serve.tables import (
    serve_feedback_events,
    serve_requests,
    serve_scores,
    serve_services,
)
from inloop.store import get_engine, open_artifact_store
from inloop.store.db import begin_write

NOW = datetime.now(UTC).replace(microsecond=0)


def _app() -> typer.Typer:
    # Registered as the lead does on `inloop serve`: app.command("replay")(replay), etc.
    root = typer.Typer(add_completion=False)

    @root.callback()
    def _root() -> None:
        """inloop."""

    serve = typer.Typer()
    serve.command("replay")(replay)
    serve.command("evaluate")(evaluate_cmd)
    root.add_typer(serve, name="serve")
    return root


APP = _app()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture
def archived(db_url: str) -> dict[str, object]:
    """Service 'digits-svc' (champion digits@1, challenger digits@2) and 10 archived requests,
    one an hour back from NOW, 2 images each; the even ones got feedback."""
    data = load_digits()
    X_all, y_all = data.data.astype(np.float64), data.target
    store = open_artifact_store()
    register(LogisticRegression(max_iter=300).fit(X_all[:60], y_all[:60]), name="digits")
    register(LogisticRegression(max_iter=300).fit(X_all[:600], y_all[:600]), name="digits")
    create_service(
        "digits-svc",
        {"champion": "digits@1", "challengers": ["digits@2"], "fallback": {"label": 0}},
        created_by="ana",
        reason="launch",
    )
    models = {ref: load(ref, artifacts=store) for ref in ("digits@1", "digits@2")}
    with get_engine().connect() as conn:
        service_id = conn.execute(
            select(serve_services.c.service_id).where(serve_services.c.name == "digits-svc")
        ).scalar_one()
    requests, scores, feedback = [], [], []
    for i in range(10):
        X, y = X_all[1000 + 2 * i : 1002 + 2 * i], y_all[1000 + 2 * i : 1002 + 2 * i]
        rid = f"r{i}"
        answers = {}
        for ref, role in (("digits@1", "champion"), ("digits@2", "challenger")):
            proba = models[ref].predict_proba(X)
            predictions = np.asarray(models[ref].classes)[proba.argmax(axis=1)].tolist()
            answers[ref] = predictions
            scores.append(
                {
                    "request_id": rid,
                    "model": ref,
                    "role": role,
                    "status": "ok",
                    "predictions": predictions,
                    "probabilities": proba.tolist(),
                    "classes": list(models[ref].classes),
                    "latency_ms": 1.0,
                }
            )
        requests.append(
            {
                "request_id": rid,
                "service_id": service_id,
                "revision": 1,
                "received_at": NOW - timedelta(hours=10 - i),
                "n_instances": 2,
                "inputs": X.tolist(),
                "model": "digits@1",
                "role": "champion",
                "fallback_used": False,
                "predictions": answers["digits@1"],
                "latency_ms": 2.0,
            }
        )
        if i % 2 == 0:
            feedback += [
                {
                    "request_id": rid,
                    "position": position,
                    "label": label,
                    "given_by": "bo",
                    "role": "reviewer",
                    "given_at": NOW,
                    "source": "api",
                }
                for position, label in enumerate(y.tolist())
            ]
    with begin_write(get_engine()) as conn:
        conn.execute(serve_requests.insert(), requests)
        conn.execute(serve_scores.insert(), scores)
        conn.execute(serve_feedback_events.insert(), feedback)
    return {"X": X_all[1000:1020], "y": y_all[1000:1020], "models": models}


def test_replay_prints_the_table_and_json(runner: CliRunner, archived: dict[str, object]) -> None:
    result = runner.invoke(APP, ["serve", "replay", "digits-svc", "--model", "digits@2"])
    assert result.exit_code == 0, result.output
    assert "Replay of digits@2 on digits-svc" in result.output
    assert "champion digits@1" in result.output and "agreement" in result.output

    result = runner.invoke(
        APP, ["serve", "replay", "digits-svc", "--model", "digits@2", "--json", "--since", "330m"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # 5.5 hours ago: the requests received 5, 4, 3, 2 and 1 hours ago (i = 5..9).
    assert report["n_requests"] == 5 and report["n_instances"] == 10
    models = archived["models"]
    X = np.asarray(archived["X"])[10:]
    champ = models["digits@1"].predict(X)  # type: ignore[index]
    cand = models["digits@2"].predict(X)  # type: ignore[index]
    assert report["agreement"] == pytest.approx(float(np.mean(champ == cand)))
    assert report["champion"] == ["digits@1"] and report["model"] == "digits@2"

    limited = runner.invoke(
        APP, ["serve", "replay", "digits-svc", "-m", "digits@2", "--json", "--limit", "3"]
    )
    assert json.loads(limited.stdout)["n_requests"] == 3


def test_replay_says_when_the_window_is_empty(
    runner: CliRunner, archived: dict[str, object]
) -> None:
    start = (NOW + timedelta(days=1)).isoformat()
    result = runner.invoke(
        APP, ["serve", "replay", "digits-svc", "--model", "digits@2", "--since", start]
    )
    assert result.exit_code == 0, result.output
    assert "No archived requests of 'digits-svc' in the window" in result.output


def test_evaluate_lists_models_best_first(runner: CliRunner, archived: dict[str, object]) -> None:
    result = runner.invoke(APP, ["serve", "evaluate", "digits-svc", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    labeled = np.array([i // 2 % 2 == 0 for i in range(20)])  # requests 0, 2, 4, ...
    X, y = np.asarray(archived["X"])[labeled], np.asarray(archived["y"])[labeled]
    models = archived["models"]
    want = {
        ref: float(np.mean(models[ref].predict(X) == y))  # type: ignore[index]
        for ref in ("digits@1", "digits@2")
    }
    assert {r["model"]: r["accuracy"] for r in rows} == pytest.approx(want)
    assert [r["accuracy"] for r in rows] == sorted(want.values(), reverse=True)
    assert all(r["n_requests"] == 5 and r["n_labeled"] == 10 for r in rows)

    table = runner.invoke(APP, ["serve", "evaluate", "digits-svc"])
    assert table.exit_code == 0 and "challenger" in table.output and "digits@2" in table.output
    empty = runner.invoke(APP, ["serve", "evaluate", "digits-svc", "--until", "2000-01-01"])
    assert empty.exit_code == 0 and "nothing to evaluate" in empty.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "nope", "--model", "digits@2"], "No service 'nope'"),
        (["replay", "digits-svc", "--model", "digits@7"], "no version 7"),
        (["replay", "digits-svc", "--model", "digits@2", "--since", "yesterday"], "--since must"),
        (
            ["replay", "digits-svc", "-m", "digits@2", "--since", "1d", "--until", "2d"],
            "is after until",
        ),
        (["evaluate", "nope"], "No service 'nope'"),
    ],
)
def test_user_errors_are_one_red_line(
    runner: CliRunner, archived: dict[str, object], args: list[str], message: str
) -> None:
    result = runner.invoke(APP, ["serve", *args])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_replay_needs_the_model_option(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(APP, ["serve", "replay", "digits-svc"])
    assert result.exit_code == 2 and "--model" in result.output


def test_parse_when_reads_iso_and_relative_times() -> None:
    now = datetime(2026, 11, 8, 12, 0, tzinfo=UTC)
    assert parse_when("7d", "--since", now) == now - timedelta(days=7)
    assert parse_when("30m", "--since", now) == now - timedelta(minutes=30)
    assert parse_when("2026-11-01T08:00+01:00", "--since") == datetime(
        2026, 11, 1, 7, 0, tzinfo=UTC
    )
    assert parse_when(None, "--until") is None
    with pytest.raises(ServeError, match="Got '7 days'"):
        parse_when("7 days", "--since")
