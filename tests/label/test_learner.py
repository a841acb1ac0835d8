"""The model in the loop: retraining on labels, reordering the queue, the stopping report."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine

from inloop.label.annotations import annotate
from inloop.label.io import import_items
from inloop.label.items import add_items, get_items
from inloop.label.learner import ActiveLearner, LearnerError, StoppingReport
from inloop.label.projects import create_project
from inloop.label.queue import next_items
from inloop.label.strategies import HybridSampler, MarginSampler, default_strategy
from inloop.store.db import get_engine

N_ITEMS = 300
SEED_LABELS = 20


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:N_ITEMS] / 16.0, y[:N_ITEMS].astype(str)


def _model() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


def _digits_project(engine: Engine, digits: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """A project of unlabeled digit feature items; returns their item ids in row order."""
    X, _ = digits
    create_project("digits", [str(d) for d in range(10)], engine=engine)
    return import_items("digits", X, engine=engine).item_ids


def _label(engine: Engine, ids: list[int], y: np.ndarray, rows: Any) -> None:
    for row in rows:
        annotate("digits", ids[int(row)], "ana", str(y[int(row)]), engine=engine)


def _pool_proba(learner: ActiveLearner, X: np.ndarray, pool: np.ndarray) -> np.ndarray:
    return np.asarray(learner.model_.predict_proba(X[pool]))


def test_queue_follows_the_models_uncertainty(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = digits
    ids = _digits_project(engine, digits)
    _label(engine, ids, y, range(SEED_LABELS))
    learner = ActiveLearner("digits", _model(), strategy=MarginSampler(), engine=engine)
    report = learner.refresh()
    assert isinstance(report, StoppingReport)
    assert (report.n_labels, report.n_pool, report.refresh) == (SEED_LABELS, N_ITEMS - 20, 1)
    assert report.agreement is None and not report.should_stop

    pool = np.arange(SEED_LABELS, N_ITEMS)
    scores = MarginSampler().scores(_pool_proba(learner, X, pool))
    priorities = {i.item_id: i.priority for i in get_items("digits", engine=engine)}
    assert [priorities[ids[p]] for p in pool] == pytest.approx(scores.tolist())
    # The queue hands out the most uncertain items first, in order.
    expected = [ids[p] for p in pool[np.argsort(-scores, kind="stable")[:5]]]
    leases = next_items("digits", "bo", n=5, engine=engine)
    assert [lease.item_id for lease in leases] == expected
    # Suggestions cover the pool: the model's class and its confidence.
    label, confidence = learner.suggestions_[ids[SEED_LABELS]]
    assert label in {str(d) for d in range(10)} and 0 < confidence <= 1


def test_default_hybrid_batch_gets_the_top_priorities(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = digits
    ids = _digits_project(engine, digits)
    _label(engine, ids, y, range(SEED_LABELS))
    learner = ActiveLearner("digits", _model(), retrain_every=10, random_state=0, engine=engine)
    assert learner.refresh() is not None
    first = {i.item_id: i.priority for i in get_items("digits", engine=engine)}
    # Deterministic: another learner with the same random_state orders the queue the same way.
    again = ActiveLearner("digits", _model(), retrain_every=10, random_state=0, engine=engine)
    assert again.refresh() is not None
    assert {i.item_id: i.priority for i in get_items("digits", engine=engine)} == first
    strategy = default_strategy(10, random_state=0)
    assert isinstance(strategy, HybridSampler)
    pool = np.arange(SEED_LABELS, N_ITEMS)
    picks = strategy.select(_pool_proba(learner, X, pool), X=X[pool])
    leases = next_items("digits", "bo", n=10, engine=engine)
    assert [lease.item_id for lease in leases] == [ids[p] for p in pool[picks]]
    # Leased items are left out of the next batch: it goes to other annotators' items.
    assert again.refresh() is not None
    batch = next_items("digits", "cy", n=10, engine=engine)
    assert not {lease.item_id for lease in batch} & {lease.item_id for lease in leases}


def test_retrain_every_is_respected(engine: Engine, digits: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = digits
    ids = _digits_project(engine, digits)
    learner = ActiveLearner("digits", _model(), retrain_every=10, engine=engine)
    assert learner.maybe_refresh() is None  # no labels at all
    _label(engine, ids, y, [0])
    assert learner.maybe_refresh() is None  # one class: nothing to train yet
    assert learner.model_ is None
    _label(engine, ids, y, [1])  # before a first model, any new label triggers a try
    first = learner.maybe_refresh()
    assert first is not None and first.n_labels == 2
    _label(engine, ids, y, range(2, 11))
    assert learner.new_labels() == 9
    assert learner.maybe_refresh() is None
    # Skips and model suggestions are not labels.
    annotate("digits", ids[50], "bo", None, engine=engine)
    annotate("digits", ids[51], "model-v1", "3", origin="model", engine=engine)
    assert learner.maybe_refresh() is None
    _label(engine, ids, y, [11])
    second = learner.maybe_refresh()
    assert second is not None and (second.refresh, second.n_labels) == (2, 12)
    assert learner.new_labels() == 0


class _Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


_GATES: dict[str, _Gate] = {}


class GatedClassifier(ClassifierMixin, BaseEstimator):
    """A LogisticRegression whose fit waits at a gate the test opens: a slow training run."""

    def __init__(self, gate: str = "") -> None:
        self.gate = gate

    def fit(self, X: np.ndarray, y: np.ndarray) -> GatedClassifier:
        gate = _GATES[self.gate]
        gate.entered.set()
        gate.release.wait(20)
        self.model_ = _model().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(X))


def test_background_thread_refreshes_without_blocking_annotators(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    _, y = digits
    ids = _digits_project(engine, digits)
    _GATES["bg"] = gate = _Gate()
    learner = ActiveLearner(
        "digits",
        GatedClassifier(gate="bg"),
        strategy=MarginSampler(),
        retrain_every=10,
        interval=0.05,
        engine=engine,
    )
    with learner:
        assert learner.running
        _label(engine, ids, y, range(SEED_LABELS))
        assert gate.entered.wait(10), "the background thread never started training"
        # Training is under way (held at the gate): annotators still get items at once.
        started = time.perf_counter()
        leases = next_items("digits", "bo", n=3, engine=engine)
        for lease in leases:
            annotate("digits", lease.item_id, "bo", str(y[ids.index(lease.item_id)]), engine=engine)
        assert len(leases) == 3
        assert time.perf_counter() - started < 2.0
        assert learner.report_ is None
        gate.release.set()
        deadline = time.monotonic() + 15
        while learner.report_ is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert learner.report_ is not None
        assert learner.error_ is None
    assert not learner.running
    # The queue now follows the model: the next item is the most uncertain one.
    priorities = {i.item_id: i.priority for i in get_items("digits", engine=engine)}
    [lease] = next_items("digits", "cy", engine=engine)
    open_ids = [i for i in ids[SEED_LABELS:] if i not in {x.item_id for x in leases}]
    assert lease.item_id == max(open_ids, key=lambda i: (priorities[i], -i))
    with pytest.raises(LearnerError, match="already running"):
        learner.start()
        learner.start()
    learner.stop()


def test_stopping_report_turns_true_once_predictions_stabilise(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    _, y = digits
    ids = _digits_project(engine, digits)
    rng = np.random.RandomState(0)
    _label(engine, ids, y, rng.choice(N_ITEMS, SEED_LABELS, replace=False))
    learner = ActiveLearner(
        "digits",
        _model(),
        retrain_every=20,
        stop_agreement=0.97,
        patience=2,
        random_state=0,
        engine=engine,
    )
    reports = [learner.refresh()]
    while not reports[-1].should_stop and len(reports) < 12:  # type: ignore[union-attr]
        leases = next_items("digits", "oracle", n=20, engine=engine)
        for lease in leases:
            annotate(
                "digits", lease.item_id, "oracle", str(y[ids.index(lease.item_id)]), engine=engine
            )
        reports.append(learner.maybe_refresh())
    assert all(r is not None for r in reports)
    final = reports[-1]
    assert final is not None and final.should_stop, [r.agreement for r in reports if r]
    assert final.agreement is not None and final.agreement >= 0.97
    assert final.stable_refreshes >= 2 and "stabilised" in final.reason
    # Early on, more labels still changed the model's mind.
    early = reports[1]
    assert early is not None and early.agreement is not None and early.agreement < 0.97
    assert not early.should_stop
    assert learner.reports_ == reports


def test_identical_refreshes_agree_fully_and_patience_counts(
    engine: Engine, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    _, y = digits
    ids = _digits_project(engine, digits)
    _label(engine, ids, y, range(SEED_LABELS))
    learner = ActiveLearner("digits", _model(), patience=2, random_state=0, engine=engine)
    first, second, third = learner.refresh(), learner.refresh(), learner.refresh()
    assert first is not None and second is not None and third is not None
    assert (second.agreement, second.stable_refreshes, second.should_stop) == (1.0, 1, False)
    assert (third.agreement, third.stable_refreshes, third.should_stop) == (1.0, 2, True)


def test_errors_for_projects_without_feature_items(engine: Engine) -> None:
    create_project("texts", ["a", "b"], engine=engine)
    learner = ActiveLearner("texts", _model(), engine=engine)
    with pytest.raises(LearnerError, match="no items"):
        learner.refresh()
    add_items("texts", [{"external_id": "t", "text": "hello"}], engine=engine)
    with pytest.raises(LearnerError, match=r"kinds \['text'\].*feature items"):
        learner.refresh()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"estimator": object()}, "'estimator' parameter .* fit and predict_proba"),
        ({"retrain_every": 0}, "'retrain_every' parameter .* int >= 1. Got 0"),
        ({"patience": 1.5}, "'patience' parameter"),
        ({"stop_agreement": 1.5}, r"'stop_agreement' parameter .* \(0, 1\]"),
        ({"interval": 0}, "'interval' parameter"),
        ({"strategy": "margin"}, "'strategy' parameter .* SamplingStrategy"),
    ],
)
def test_bad_parameters_are_named(engine: Engine, params: dict[str, Any], message: str) -> None:
    create_project("p", ["a", "b"], engine=engine)
    arguments: dict[str, Any] = {"estimator": _model(), **params}
    estimator = arguments.pop("estimator")
    learner = ActiveLearner("p", estimator, engine=engine, **arguments)
    with pytest.raises(LearnerError, match=message):
        learner.refresh()
    with pytest.raises(LearnerError, match=message):
        learner.start()
    assert not learner.running


def test_without_an_estimator_the_learner_uses_the_default_model(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    from inloop.label import default_estimator

    engine = get_engine("sqlite://")
    y = digits[1]
    ids = _digits_project(engine, digits)
    _label(engine, ids, y, range(SEED_LABELS))
    learner = ActiveLearner("digits", engine=engine)
    report = learner.refresh()
    assert report is not None and report.n_labels == SEED_LABELS
    steps = [type(step).__name__ for step in learner.model_]
    assert steps == [type(step).__name__ for step in default_estimator()]
    assert learner.estimator is None  # parameters stay as given, scikit-learn style
