"""The label audit as a flow: the same report as in-process, one task per fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inloop import Flow, Runner
from inloop.label.audit import AuditError, audit_labels
from inloop.label.audit_flow import AuditFlow, run_audit
from inloop.store import RunStore, open_artifact_store

N_ITEMS = 600
N_FLIPPED = 40


@pytest.fixture(scope="module")
def small_noisy_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """600 digits with 40 labels changed to another class (seed 7); the changed positions."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:N_ITEMS], y[:N_ITEMS]
    rng = np.random.default_rng(7)
    changed = rng.choice(N_ITEMS, N_FLIPPED, replace=False)
    noisy = y.copy()
    noisy[changed] = (y[changed] + rng.integers(1, 10, size=N_FLIPPED)) % 10
    return X, noisy, np.sort(changed)


def test_flow_flags_the_same_items_as_in_process(
    small_noisy_digits: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, noisy, changed = small_noisy_digits
    local = audit_labels(X, noisy, folds=3, random_state=5)  # the default model
    report = run_audit(X, noisy, folds=3, random_state=5, max_workers=2)
    assert np.array_equal(report.indices, local.indices)
    assert np.allclose(report.score, local.score)
    assert np.array_equal(report.suggested, local.suggested)
    assert np.isin(changed, report.indices).mean() >= 0.8
    # The run keeps the report, one task per fold, and its parameters.
    run = Flow("AuditFlow").latest_successful_run
    assert run is not None and run.data is not None
    assert np.array_equal(run.data.report.indices, report.indices)
    assert run.data.proba.shape == (N_ITEMS, 10)
    assert len(run["fold"].tasks()) == 3
    assert run.parameters["folds"] == 3 and run.parameters["seed"] == 5


def test_given_estimator_and_budget_travel_through_the_flow(
    small_noisy_digits: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, noisy, _ = small_noisy_digits
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    local = audit_labels(X, noisy, model, folds=2, budget=15, random_state=1)
    report = run_audit(X, noisy, model, folds=2, budget=15, random_state=1, max_workers=2)
    assert len(report) == 15 and report.budget == 15
    assert np.array_equal(report.indices, local.indices)


def test_bad_input_starts_no_run() -> None:
    with pytest.raises(AuditError, match="10 rows but y has 9"):
        run_audit(np.zeros((10, 2)), [0, 1] * 4 + [0])
    with pytest.raises(AuditError, match="'budget' parameter"):
        run_audit(np.zeros((10, 2)), [0, 1] * 5, folds=2, budget=-3)
    with pytest.raises(AuditError, match="fit and predict_proba"):
        run_audit(np.zeros((10, 2)), [0, 1] * 5, "not a model", folds=2)
    assert RunStore().list_runs("AuditFlow") == []


def test_a_missing_artifact_key_fails_the_run_with_its_name() -> None:
    y_key = open_artifact_store().put(np.array([0, 1] * 5)).key
    missing = "0" * 64
    result = Runner(AuditFlow, show_output=False, max_workers=1).run(
        x_key=missing, y_key=y_key, folds=2
    )
    assert result.status == "failed"
    problem = result.run["start"].task.exception or ""
    assert "'x_key' parameter of AuditFlow" in problem and missing in problem
