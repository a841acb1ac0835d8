"""The model in the loop of the web app (inloop/web/learning.py), on a digits subset."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sklearn.pipeline import Pipeline
from sqlalchemy import Engine

from inloop.cli.server import create_app_without_learners
from inloop.label import annotate, create_project, get_items, next_items
from inloop.label.io import import_items
from inloop.label.strategies import MarginSampler
from inloop.web import create_app
from inloop.web.auth import create_user
from inloop.web.learning import LearnerPool, pool_for

CLASSES = ["0", "1", "2"]
N_ITEMS = 120
N_LABELED = 24


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(n_class=len(CLASSES), return_X_y=True)
    return X[:N_ITEMS].astype(np.float64), y[:N_ITEMS].astype(str)


def _project(
    engine: Engine,
    digits: tuple[np.ndarray, np.ndarray],
    name: str = "digits",
    settings: dict[str, Any] | None = None,
) -> int:
    X, y = digits
    project = create_project(name, CLASSES, settings=settings, engine=engine)
    labels = [str(v) for v in y[:N_LABELED]] + [None] * (N_ITEMS - N_LABELED)
    import_items(name, X, labels=labels, engine=engine)
    return project.project_id


def test_refresh_all_orders_the_queue_by_the_model(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    settings = {"model": {"strategy": "margin", "retrain_every": 5}}
    pid = _project(engine, digits, settings=settings)
    pool = LearnerPool(engine)
    assert pool.suggestion(pid, 1) is None  # no model yet
    reports = pool.refresh_all()
    report = reports[pid]
    assert report is not None
    assert (report.n_labels, report.n_classes, report.n_pool) == (N_LABELED, 3, N_ITEMS - N_LABELED)
    learner = pool.learners_[pid]
    assert isinstance(learner.strategy, MarginSampler) and learner.retrain_every == 5
    # Priorities are the model's margin scores: the first item handed out is the least sure one.
    items = {i.item_id: i for i in get_items("digits", engine=engine)}
    pool_ids = [i for i, item in items.items() if item.n_labels == 0]
    X_pool = np.asarray([digits[0][i - min(items)] for i in pool_ids])
    proba = learner.model_.predict_proba(X_pool)
    top2 = np.sort(proba, axis=1)[:, -2:]
    margins = dict(zip(pool_ids, top2[:, 1] - top2[:, 0], strict=True))
    assert len({items[i].priority for i in pool_ids}) > 1
    leased = next_items("digits", "ana", 1, engine=engine)[0]
    assert margins[leased.item_id] == pytest.approx(min(margins.values()))
    label, confidence = pool.suggestion(pid, leased.item_id) or ("", 0.0)
    assert label in CLASSES and 0.0 < confidence <= 1.0
    assert confidence == pytest.approx(proba[pool_ids.index(leased.item_id)].max())
    # poll() waits for retrain_every new labels; refresh_all() does not.
    assert pool.poll() == {pid: None}
    for item_id in pool_ids[:5]:
        annotate("digits", item_id, "ana", str(digits[1][item_id - min(items)]), engine=engine)
    polled = pool.poll()[pid]
    assert polled is not None and polled.n_labels == N_LABELED + 5


def test_default_model_opt_out_and_bad_settings(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    default = _project(engine, digits, "plain")
    off = _project(engine, digits, "off", settings={"model": False})
    bad = _project(engine, digits, "bad", settings={"model": {"estimator": "svm"}})
    create_project("texts", CLASSES, engine=engine)  # no feature items: no learner
    pool = LearnerPool(engine)
    reports = pool.refresh_all()
    assert set(reports) == {default} and set(pool.learners_) == {default}
    estimator = pool.learners_[default].estimator
    assert isinstance(estimator, Pipeline)
    assert [type(step).__name__ for _, step in estimator.steps] == [
        "StandardScaler",
        "LogisticRegression",
    ]
    assert estimator[-1].max_iter == 1000
    assert off not in pool.errors_
    message = str(pool.errors_[bad])
    assert "'estimator' 'svm'" in message and "'logistic_regression'" in message
    assert "'bad'" in message


def test_next_serves_suggestions_and_the_thread_follows_the_app(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    _project(engine, digits)
    sci = {
        "Authorization": f"Bearer {create_user('sci', 'scientist', engine=engine)}"
    }  # sees every project
    app = create_app(engine=engine)
    pool = app.state.learners
    assert isinstance(pool, LearnerPool) and not pool.running
    with TestClient(app) as client:
        assert pool.running and pool_for(engine) is pool
        pool.refresh_all()
        leases = client.post("/api/projects/digits/next", json={"n": 3}, headers=sci).json()
        assert len(leases["leases"]) == 3
        for lease in leases["leases"]:
            suggestion = lease["suggestion"]
            assert suggestion["label"] in CLASSES
            assert 0.0 < suggestion["confidence"] <= 1.0
    assert not pool.running and pool_for(engine) is None


def test_the_background_thread_trains_on_its_own(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pid = _project(engine, digits)
    pool = LearnerPool(engine, interval=0.05).start()
    try:
        deadline = time.monotonic() + 20
        while (learner := pool.learners_.get(pid)) is None or learner.report_ is None:
            assert time.monotonic() < deadline, pool.errors_
            time.sleep(0.05)
        assert learner.report_.n_labels == N_LABELED
        assert learner.suggestions_ and pool_for(engine) is pool
    finally:
        pool.stop()
    assert not pool.running and pool_for(engine) is None


def test_without_learners(engine: Engine, digits: tuple[np.ndarray, np.ndarray]) -> None:
    _project(engine, digits)
    sci = {
        "Authorization": f"Bearer {create_user('sci', 'scientist', engine=engine)}"
    }  # sees every project
    assert create_app_without_learners().state.learners is None
    with TestClient(create_app(engine=engine, learners=False)) as client:
        assert pool_for(engine) is None
        lease = client.post("/api/projects/digits/next", json={"n": 1}, headers=sci).json()
        assert lease["leases"][0]["suggestion"] is None
