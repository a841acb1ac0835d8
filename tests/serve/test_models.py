"""The serving interface: scikit-learn, callable and heuristic adapters, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import LinearSVC

from inloop.errors import InloopError
from inloop.serve import (
    CallableModel,
    Heuristic,
    MajorityClass,
    ServeError,
    SklearnModel,
    Threshold,
    as_model,
    majority_class_from,
    model_kind,
)
from inloop.serve.models import BOUNDED_WORK


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def test_sklearn_model_matches_the_estimator(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    estimator = LogisticRegression(max_iter=200).fit(X, y)
    model = as_model(estimator)
    assert isinstance(model, SklearnModel) and model.kind == "sklearn"
    assert model.classes == tuple(range(10))
    np.testing.assert_allclose(model.predict_proba(X[:20]), estimator.predict_proba(X[:20]))
    np.testing.assert_array_equal(model.predict(X[:20]), estimator.predict(X[:20]))


class _Sharpened(LogisticRegression):
    """A logistic regression whose probabilities are not plain softmax."""

    def predict_proba(self, X: object) -> np.ndarray:
        p = super().predict_proba(X) ** 2
        return p / p.sum(axis=1, keepdims=True)


def test_logistic_regression_scores_fast_only_where_it_equals_scikit_learn(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = digits
    X = X / 16.0
    multi = LogisticRegression(max_iter=2000).fit(X, y)
    binary = LogisticRegression(max_iter=2000).fit(X, y % 2)
    sharpened = _Sharpened(max_iter=2000).fit(X, y)
    for estimator in (multi, binary, sharpened):
        model = SklearnModel(estimator)
        for batch in (X[:1], X[:50], (X[:3] * 16).astype(int)):
            np.testing.assert_allclose(
                model.predict_proba(batch), estimator.predict_proba(batch), rtol=1e-9, atol=1e-12
            )
    assert SklearnModel(multi)._linear is not None and SklearnModel(binary)._linear is not None
    assert SklearnModel(sharpened)._linear is None  # the check caught the difference
    # Input that is not finite goes to scikit-learn, which says what is wrong.
    bad = X[:2].astype(float)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SklearnModel(multi).predict_proba(bad)


def test_only_a_logistic_regression_on_a_small_numeric_batch_is_bounded(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = digits
    X = X / 16.0
    linear = SklearnModel(LogisticRegression(max_iter=2000).fit(X, y))
    assert linear.bounded(X[:1]) and linear.bounded(X[:50])
    # 64 features x 10 classes a row: the most rows whose arithmetic stays small.
    most = BOUNDED_WORK // (64 * 10)
    assert linear.bounded(np.zeros((most, 64))) and not linear.bounded(np.zeros((most + 1, 64)))
    assert not linear.bounded(np.array([["a"] * 64]))  # not numbers: scikit-learn's check
    assert not linear.bounded(X[0])  # 1-D: refused by the model's own check, off the loop
    # Code inloop does not own may take any time: never bounded.
    assert not SklearnModel(_Sharpened(max_iter=2000).fit(X, y)).bounded(X[:1])
    assert not SklearnModel(LinearSVC().fit(X, y)).bounded(X[:1])
    assert not as_model(lambda batch: [0] * len(batch), classes=[0, 1]).bounded(X[:1])
    assert not as_model(MajorityClass([0, 1], [1, 1])).bounded(X[:1])


def test_sklearn_without_predict_proba_is_one_hot(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    estimator = LinearSVC().fit(X, y)
    proba = as_model(estimator).predict_proba(X[:5])
    assert proba.shape == (5, 10)
    np.testing.assert_array_equal(proba.argmax(axis=1), estimator.predict(X[:5]))
    assert set(proba.ravel().tolist()) == {0.0, 1.0}


def test_sklearn_errors(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    model = as_model(LogisticRegression(max_iter=100).fit(X, y))
    with pytest.raises(ServeError, match=r"2-D batch.*Got shape \(64,\)"):
        model.predict_proba(X[0])
    with pytest.raises(ServeError, match=r"fitted on 64 features; the batch has 3"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ServeError, match=r"non-empty batch"):
        model.predict_proba(np.zeros((0, 64)))
    with pytest.raises(ServeError, match=r"no classes_: it is not fitted"):
        as_model(LogisticRegression())
    with pytest.raises(ServeError, match=r"no classes_"):
        as_model(LinearRegression().fit(X, y))


class _FitOnly:
    def fit(self, X: object, y: object) -> _FitOnly:
        return self


def test_objects_that_cannot_predict_are_rejected() -> None:
    with pytest.raises(ServeError, match=r"_FitOnly object has neither predict_proba nor predict"):
        model_kind(_FitOnly())
    with pytest.raises(ServeError, match=r"Cannot serve a int object.*plain callable"):
        as_model(3)
    with pytest.raises(ServeError, match=r"Unknown model kind 'torch'.*'sklearn'"):
        as_model(len, classes=["a", "b"], kind="torch")


def test_callable_returning_labels_or_probabilities() -> None:
    def sign(X: np.ndarray) -> np.ndarray:
        return np.where(X[:, 0] > 0, "pos", "neg")

    labels = as_model(sign, classes=["neg", "pos"])
    assert isinstance(labels, CallableModel) and labels.kind == "callable"
    X = np.array([[1.0], [-1.0], [2.0]])
    assert labels.predict(X).tolist() == ["pos", "neg", "pos"]
    assert labels.predict_proba(X).tolist() == [[0, 1], [1, 0], [0, 1]]

    def soft(X: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-X[:, 0]))
        return np.column_stack([1 - p, p])

    probs = as_model(soft, classes=["neg", "pos"])
    np.testing.assert_allclose(probs.predict_proba(X).sum(axis=1), 1.0)
    assert probs.predict(X).tolist() == ["pos", "neg", "pos"]


def test_callable_errors() -> None:
    with pytest.raises(ServeError, match=r"needs its classes: pass classes="):
        as_model(lambda X: X)
    with pytest.raises(ServeError, match=r"at least 2 distinct"):
        as_model(lambda X: X, classes=["a", "a"])
    three = as_model(lambda X: np.ones((len(X), 3)) / 3, classes=["a", "b"])
    with pytest.raises(ServeError, match=r"probabilities for 3 classes but has 2 classes"):
        three.predict_proba([[0.0]])
    stranger = as_model(lambda X: ["c"] * len(X), classes=["a", "b"])
    with pytest.raises(ServeError, match=r"label 'c', which is not one of its classes"):
        stranger.predict([[0.0]])
    short = as_model(lambda X: ["a"], classes=["a", "b"])
    with pytest.raises(ServeError, match=r"shape \(1,\) for a batch of 2"):
        short.predict_proba([[0.0], [1.0]])
    assert isinstance(ServeError("x"), InloopError) and isinstance(ServeError("x"), ValueError)


def test_majority_class() -> None:
    rule = majority_class_from(["b", "a", "b", "b"])
    assert rule.classes == ("a", "b") and rule.counts == (1.0, 3.0)
    model = as_model(rule)
    assert model.kind == "heuristic"
    assert model.predict(np.zeros((2, 5))).tolist() == ["b", "b"]
    np.testing.assert_allclose(model.predict_proba(np.zeros((1, 5))), [[0.25, 0.75]])
    wide = majority_class_from(["a", "a"], classes=["a", "b", "c"])
    assert wide.counts == (2.0, 0.0, 0.0)
    with pytest.raises(ServeError, match=r"labels \['z'\] are not in classes"):
        majority_class_from(["z"], classes=["a", "b"])
    with pytest.raises(ServeError, match=r"counts of MajorityClass must be 2 numbers"):
        MajorityClass(["a", "b"], [1, 2, 3])


def test_threshold() -> None:
    rule = Threshold(feature=1, threshold=0.5, above="spam", below="ham")
    model = as_model(rule)
    X = np.array([[0.0, 0.9], [0.0, 0.1]])
    assert model.predict(X).tolist() == ["spam", "ham"]
    assert model.predict_proba(X).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    aligned = as_model(Threshold(0, 0.0, above="b", below="a", classes=["a", "b", "c"]))
    assert aligned.predict_proba([[1.0]]).tolist() == [[0.0, 1.0, 0.0]]
    with pytest.raises(ServeError, match=r"more than 1 columns. Got shape \(2, 1\)"):
        model.predict([[1.0], [2.0]])
    with pytest.raises(ServeError, match=r"'feature' parameter of Threshold.*Got -1"):
        Threshold(-1, 0.0, "a", "b")
    with pytest.raises(ServeError, match=r"must include above and below; missing \['x'\]"):
        Threshold(0, 0.0, above="x", below="a", classes=["a", "b"])


def test_custom_heuristic_with_one_hook() -> None:
    class Loud(Heuristic):
        classes = ("quiet", "loud")

        def rule(self, X: np.ndarray) -> np.ndarray:
            return np.where(np.abs(X).sum(axis=1) > 10, "loud", "quiet")

    model = as_model(Loud())
    assert model.kind == "heuristic"
    assert model.predict(np.array([[20.0], [1.0]])).tolist() == ["loud", "quiet"]
    with pytest.raises(ServeError, match=r"kind='heuristic' needs a Heuristic"):
        as_model(len, kind="heuristic")
