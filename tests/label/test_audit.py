"""The label audit: out-of-sample probabilities, cleanlab's ranking, the review queue."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inloop.errors import InloopError
from inloop.label.audit import (
    PCA_ABOVE_FEATURES,
    SVC_MAX_ITEMS,
    AuditError,
    AuditReport,
    audit_labels,
    default_audit_estimator,
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
    proba = out_of_sample_proba(default_audit_estimator(), X, noisy, folds=5, random_state=0)
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
    report = audit_labels(X, y, LogisticRegression(), folds=3)
    assert report.indices.tolist() == [5]
    assert report.given.tolist() == ["high"] and report.suggested.tolist() == ["low"]
    assert report.classes.tolist() == ["high", "low"]


def test_class_with_fewer_members_than_folds_is_named() -> None:
    X = np.zeros((12, 1))
    y = np.array([0] * 5 + [1] * 5 + [2] * 2)
    with pytest.raises(AuditError, match=r"Class 2 has 2 labeled item\(s\), fewer than folds=5"):
        out_of_sample_proba(LogisticRegression(), X, y, folds=5)
    with pytest.raises(AuditError, match="Lower 'folds' to at most 2"):
        audit_labels(X, y, LogisticRegression())


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


# -- the default model and its folds -----------------------------------------------------


def _blobs(per_class: int, n_features: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated classes of ``per_class`` items each."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3, n_features) * 6.0
    X = np.concatenate([rng.normal(c, 0.5, (per_class, n_features)) for c in centers])
    return X, np.repeat(np.arange(3), per_class)


def test_audit_labels_uses_the_default_model_when_none_is_given() -> None:
    X, y = load_digits(return_X_y=True)
    noisy, truth = flip_labels(y, NOISE, seed=3)
    report = audit_labels(X, noisy, budget=50)
    assert truth[report.indices].mean() >= 0.9
    # The same report as with the default model passed by hand.
    by_hand = audit_labels(X, noisy, default_audit_estimator(X, noisy), budget=50)
    assert np.array_equal(report.indices, by_hand.indices)


def test_folds_reach_the_default_models_calibration() -> None:
    # 6 items a class: an outer training fold of 3 folds holds 4 of each, enough for an
    # internal 3-fold calibration but not for 5 folds (scikit-learn would warn, and the
    # test suite turns warnings into errors).
    X, y = _blobs(per_class=6)
    model = default_audit_estimator(X, y, folds=3)
    assert model[-1].cv == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = audit_labels(X, y, folds=3)
        fitted = clone(model).fit(X, y)
    assert fitted[-1].cv == 3 and len(fitted[-1].calibrated_classifiers_) == 1
    assert report.n_items == 18


def test_default_model_is_chosen_by_the_size_of_the_data() -> None:
    names = lambda model: [type(step).__name__ for step in model]  # noqa: E731
    X, y = _blobs(per_class=20)
    assert names(default_audit_estimator()) == ["MinMaxScaler", "CalibratedClassifierCV"]
    assert names(default_audit_estimator(X, y)) == ["MinMaxScaler", "CalibratedClassifierCV"]
    wide = np.zeros((60, PCA_ABOVE_FEATURES + 1))
    assert names(default_audit_estimator(wide, y)) == [
        "MinMaxScaler",
        "PCA",
        "CalibratedClassifierCV",
    ]
    many = np.zeros((SVC_MAX_ITEMS + 1, 784))
    assert names(default_audit_estimator(many)) == [
        "MinMaxScaler", "PCA", "Nystroem", "LogisticRegression"
    ]  # fmt: skip
    # A class too small for an internal calibration: a model that needs none.
    X_small, y_small = _blobs(per_class=4)
    assert names(default_audit_estimator(X_small, y_small, folds=3)) == [
        "MinMaxScaler", "LogisticRegression"
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert audit_labels(X_small, y_small, folds=3).n_items == 12


def test_the_old_argument_order_is_named() -> None:
    with pytest.raises(AuditError, match=r"audit_labels\(X, y, estimator\)"):
        audit_labels(LogisticRegression(), np.zeros((10, 1)), [0, 1] * 5)
    with pytest.raises(AuditError, match=r"'folds' parameter .* Got 1"):
        default_audit_estimator(np.zeros((4, 2)), [0, 1] * 2, folds=1)


def test_default_model_on_few_wide_items_keeps_the_pca_within_a_fold() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    X = rng.normal(size=(36, PCA_ABOVE_FEATURES + 20)) + y[:, None]
    y[0] = 1
    model = default_audit_estimator(X, y, folds=3)
    assert model[1].n_components == 24  # 36 items, 3 folds: 24 in each training fold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = audit_labels(X, y, folds=3)
    assert 0 in report.indices.tolist()
