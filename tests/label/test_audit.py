"""The label audit: out-of-sample probabilities, cleanlab's ranking, the review queue."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inloop.errors import InloopError
from inloop.label.audit import (
    AuditError,
    AuditReport,
    audit_labels,
    default_estimator,
    find_suspect_labels,
    fold_proba,
    fold_test_indices,
    out_of_sample_proba,
)

NOISE = 0.10


def flip_labels(y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``rate`` of them changed to another class at random; the mask of changed."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    changed = rng.choice(len(y), round(rate * len(y)), replace=False)
    noisy = y.copy()
    noisy[changed] = (y[changed] + rng.integers(1, n_classes, size=len(changed))) % n_classes
    truth = np.zeros(len(y), dtype=bool)
    truth[changed] = True
    return noisy, truth


@pytest.fixture(scope="module")
def digits_noisy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits with 10 % of labels flipped (seed 0), and their out-of-sample probabilities."""
    X, y = load_digits(return_X_y=True)
    noisy, truth = flip_labels(y, NOISE, seed=0)
    proba = out_of_sample_proba(default_estimator(), X, noisy, folds=5, random_state=0)
    return X, noisy, truth, proba


def test_flagged_set_finds_flipped_digits(digits_noisy: tuple[np.ndarray, ...]) -> None:
    _, noisy, truth, proba = digits_noisy
    report = find_suspect_labels(noisy, proba)
    flagged = report.flagged
    precision = truth[flagged].mean()
    recall = flagged[truth].mean()
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 >= 0.8, (precision, recall)
    assert truth[report.top(50).indices].mean() >= 0.9
    # The suggestion of a truly flipped item is mostly its original label.
    original = np.asarray(load_digits().target)
    caught = truth[report.indices]
    assert np.mean(report.suggested[caught] == original[report.indices][caught]) >= 0.9


def test_report_agrees_with_cleanlab_directly(digits_noisy: tuple[np.ndarray, ...]) -> None:
    _, noisy, _, proba = digits_noisy
    report = find_suspect_labels(noisy, proba, method="normalized_margin")
    expected = np.flatnonzero(find_label_issues(noisy, proba, n_jobs=1))
    assert sorted(report.indices.tolist()) == expected.tolist()
    quality = get_label_quality_scores(noisy, proba, method="normalized_margin")
    assert np.allclose(report.score, 1 - quality[report.indices])
    assert np.all(np.diff(report.score) <= 0)  # most suspicious first
    rows = report.indices
    assert np.array_equal(report.given, noisy[rows])
    assert np.array_equal(report.suggested, proba[rows].argmax(axis=1))
    assert np.allclose(report.suggested_confidence, proba[rows].max(axis=1))
    assert np.allclose(report.given_confidence, proba[rows, noisy[rows]])
    assert report.n_flagged == len(report) == int(report.flagged.sum())


def test_budget_caps_the_queue_and_keeps_its_head(digits_noisy: tuple[np.ndarray, ...]) -> None:
    _, noisy, _, proba = digits_noisy
    full = find_suspect_labels(noisy, proba)
    capped = find_suspect_labels(noisy, proba, budget=25)
    assert len(capped) == 25 and capped.budget == 25
    assert capped.n_flagged == full.n_flagged > 25
    assert np.array_equal(capped.indices, full.indices[:25])
    assert np.array_equal(full.top(25).indices, capped.indices)
    assert len(full.top(10_000)) == len(full)
    assert len(find_suspect_labels(noisy, proba, budget=10_000)) == len(full)


def test_records_are_plain_json_in_queue_order() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.97, 0.03], [0.1, 0.9]] * 5)
    labels = np.array(["cat", "dog", "dog", "dog"] * 5)
    report = find_suspect_labels(labels, proba, budget=3)
    records = report.to_records()
    assert json.loads(json.dumps(records)) == records
    assert [r["index"] for r in records] == [2, 6, 10]
    assert records[0] == {
        "index": 2,
        "given": "dog",
        "suggested": "cat",
        "suggested_confidence": 0.97,
        "given_confidence": 0.03,
        "score": pytest.approx(0.97),
    }
    assert report.flagged.tolist() == [i in (2, 6, 10) for i in range(20)]
    assert "3 queued of 5 flagged" in repr(report)
    assert isinstance(report.top(0), AuditReport) and len(report.top(0)) == 0


def test_classes_name_the_columns_in_any_order() -> None:
    proba = np.array([[0.1, 0.9], [0.9, 0.1]] * 10)  # column 0 is "b", column 1 is "a"
    labels = np.array(["a", "b"] * 10)
    labels[6] = "b"
    report = find_suspect_labels(labels, proba, classes=["b", "a"])
    assert report.indices.tolist() == [6]
    assert report.suggested.tolist() == ["a"]
    assert report.given_confidence.tolist() == [0.1]


def test_out_of_sample_proba_matches_cross_val_predict() -> None:
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    ours = out_of_sample_proba(model, X, y, folds=4, random_state=3)
    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    reference = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
    assert np.allclose(ours, reference)
    parts = fold_test_indices(y, folds=4, random_state=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))


def test_fold_without_a_class_gets_a_zero_column_and_rows_sum_to_one() -> None:
    X = np.array([[0.0], [0.2], [0.4], [1.0], [1.2], [1.4], [3.0]])
    y = np.array(["x", "x", "x", "y", "y", "y", "z"])
    proba = fold_proba(LogisticRegression(), X, y, np.array([0, 6]), ["x", "y", "z"])
    assert proba.shape == (2, 3)
    assert np.all(proba[:, 2] == 0)  # the model never saw "z"
    assert np.allclose(proba.sum(axis=1), 1)
    assert proba[0].argmax() == 0


def test_string_labels_and_lists_work_end_to_end() -> None:
    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(0, 0.3, (30, 2)), rng.normal(3, 0.3, (30, 2))].tolist()
    y = ["low"] * 30 + ["high"] * 30
    y[5] = "high"
    report = audit_labels(LogisticRegression(), X, y, folds=3)
    assert report.indices.tolist() == [5]
    assert report.given.tolist() == ["high"] and report.suggested.tolist() == ["low"]
    assert report.classes.tolist() == ["high", "low"]


def test_class_with_fewer_members_than_folds_is_named() -> None:
    X = np.zeros((12, 1))
    y = np.array([0] * 5 + [1] * 5 + [2] * 2)
    with pytest.raises(AuditError, match=r"Class 2 has 2 labeled item\(s\), fewer than folds=5"):
        out_of_sample_proba(LogisticRegression(), X, y, folds=5)
    with pytest.raises(AuditError, match="Lower 'folds' to at most 2"):
        audit_labels(LogisticRegression(), X, y)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: out_of_sample_proba(LogisticRegression(), np.zeros((9, 2)), [0, 1] * 5), "9 rows"),
        (
            lambda: out_of_sample_proba(
                LogisticRegression(), np.zeros((4, 1)), [0, 1] * 2, folds=1
            ),
            "'folds' parameter .* int >= 2. Got 1",
        ),
        (
            lambda: out_of_sample_proba(object(), np.zeros((4, 1)), [0, 1] * 2, folds=2),
            "fit and predict_proba",
        ),
        (
            lambda: out_of_sample_proba(LogisticRegression(), np.zeros((4, 1)), [1] * 4, folds=2),
            "at least 2 classes",
        ),
        (
            lambda: out_of_sample_proba(
                LogisticRegression(), np.zeros((4, 1)), np.zeros((4, 2)), folds=2
            ),
            "1-D",
        ),
    ],
    ids=["shape-mismatch", "folds", "no-predict-proba", "one-class", "2d-labels"],
)
def test_bad_cross_validation_inputs_are_named(call: object, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        call()  # type: ignore[operator]


GOOD = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])


@pytest.mark.parametrize(
    ("labels", "proba", "kwargs", "message"),
    [
        ([0, 1], GOOD, {}, r"shape \(n_items, n_classes\) = \(2, K\)"),
        ([0, 1, 0], GOOD[:, :1], {}, "K >= 2"),
        ([0, 1, 0], GOOD * 1.5, {}, r"in \[0, 1\]; row 0 is"),
        ([0, 1, 0], GOOD * 0.5, {}, "row 0 sums to 0.5"),
        ([0, 1, 0], [[0.5, 0.5], [np.nan, 1.0], [1.0, 0.0]], {}, "row 1"),
        ([0, 1, 2], GOOD, {}, "3 distinct values but 'proba' has 2 columns"),
        ([0, 1, 7], GOOD, {"classes": [0, 1]}, "1 label.* not among the classes .*: 7"),
        ([0, 1, 0], GOOD, {"classes": [0, 1, 2]}, "one class per column"),
        ([0, 1, 0], GOOD, {"classes": [0, 0]}, "must not repeat"),
        ([0, 1, 0], GOOD, {"budget": 0}, "'budget' parameter .* int >= 1. Got 0"),
        ([0, 1, 0], GOOD, {"budget": 2.5}, "Got 2.5"),
        ([0, 1, 0], GOOD, {"method": "vibes"}, "'method' parameter .* one of \\['self_confidence'"),
        ([], np.zeros((0, 2)), {}, "empty"),
    ],
)
def test_bad_ranking_inputs_are_named(
    labels: object, proba: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(AuditError, match=message):
        find_suspect_labels(labels, proba, **kwargs)  # type: ignore[arg-type]


def test_audit_error_is_an_inloop_value_error() -> None:
    assert issubclass(AuditError, InloopError) and issubclass(AuditError, ValueError)
    report = find_suspect_labels([0, 1] * 5, np.tile([[0.8, 0.2], [0.3, 0.7]], (5, 1)))
    with pytest.raises(AuditError, match=r"'k' parameter of AuditReport.top .* Got -1"):
        report.top(-1)
