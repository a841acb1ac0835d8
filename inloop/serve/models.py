"""The one interface every served model answers through, and the adapters that give it.

A :class:`LoadedModel` scores a *batch*: ``predict_proba(X)`` returns an
``(n, K)`` array whose columns follow ``classes``, and ``predict(X)`` returns
the ``n`` predicted classes. :func:`as_model` wraps what a user has:

- a fitted **scikit-learn** classifier (anything with ``classes_`` and
  ``predict_proba`` or ``predict``; without ``predict_proba`` the probabilities
  are the one-hot of ``predict``);
- a plain **callable** ``fn(X)`` with the classes given beside it. It gets the
  batch as a numpy array and returns either ``n`` labels (each one of
  ``classes``; the probabilities are their one-hot) or an ``(n, K)`` array of
  probabilities, one column per class in the order of ``classes``;
- a **heuristic**: a rule written as a :class:`Heuristic` subclass, whose one
  hook :meth:`Heuristic.rule` follows the callable contract. Two are built in:
  :class:`MajorityClass` (always the most frequent class, with the class
  frequencies as probabilities) and :class:`Threshold` (one feature against a
  threshold).

>>> import numpy as np
>>> rule = Threshold(feature=0, threshold=0.5, above="big", below="small")
>>> model = as_model(rule)
>>> model.predict(np.array([[0.9], [0.1]])).tolist()
['big', 'small']
>>> model.classes, model.predict_proba(np.array([[0.9]])).tolist()
(('small', 'big'), [[0.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from inloop.errors import InloopError

__all__ = [
    "CallableModel",
    "Heuristic",
    "LoadedModel",
    "MajorityClass",
    "ModelNotFoundError",
    "ServeError",
    "SklearnModel",
    "Threshold",
    "as_model",
    "majority_class_from",
    "model_kind",
]


class ServeError(InloopError, ValueError):
    """A model, a registration or a request to serve one is invalid."""


class ModelNotFoundError(ServeError, LookupError):
    """No registered model or version has that name or number."""


_KINDS_ACCEPTED = (
    "a fitted scikit-learn classifier (with classes_ and predict_proba or predict), "
    "a plain callable fn(X) with classes=..., or a Heuristic"
)


def _check_classes(classes: object, owner: str) -> tuple[Any, ...]:
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence | np.ndarray):
        raise ServeError(
            f"The classes of {owner} must be a list of at least 2 distinct class labels, "
            f"such as ['cat', 'dog'] or [0, 1]. Got {classes!r}."
        )
    values = tuple(np.asarray(classes).tolist())
    if len(values) < 2 or len(set(values)) != len(values):
        raise ServeError(
            f"The classes of {owner} must be a list of at least 2 distinct class labels, "
            f"such as ['cat', 'dog'] or [0, 1]. Got {list(values)!r}."
        )
    return values


def _batch(X: Any, owner: str) -> np.ndarray:
    array = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if array.ndim == 0 or len(array) == 0:
        raise ServeError(
            f"{owner} scores a non-empty batch: an array of shape (n_samples, ...) with "
            f"n_samples >= 1. Got shape {array.shape}; wrap one instance as [x]."
        )
    return array


def _one_hot(labels: np.ndarray, classes: tuple[Any, ...], owner: str) -> np.ndarray:
    column = {c: j for j, c in enumerate(classes)}
    proba = np.zeros((len(labels), len(classes)), dtype=np.float64)
    for row, label in enumerate(labels.tolist()):
        j = column.get(label)
        if j is None:
            raise ServeError(
                f"{owner} predicted the label {label!r}, which is not one of its classes "
                f"{list(classes)!r}. Return labels from classes, or fix the classes."
            )
        proba[row, j] = 1.0
    return proba


def _as_proba(out: Any, n: int, classes: tuple[Any, ...], owner: str) -> np.ndarray:
    """The callable contract: ``n`` labels, or an ``(n, K)`` probability array."""
    array = np.asarray(out)
    if array.ndim == 1 and len(array) == n:
        return _one_hot(array, classes, owner)
    if array.ndim == 2 and array.shape[0] == n:
        if array.shape[1] != len(classes):
            raise ServeError(
                f"{owner} returned probabilities for {array.shape[1]} classes but has "
                f"{len(classes)} classes {list(classes)!r}. Return one column per class, "
                "in the order of classes."
            )
        return np.asarray(array, dtype=np.float64)
    raise ServeError(
        f"{owner} returned an array of shape {array.shape} for a batch of {n}. Return {n} "
        f"labels (shape ({n},)) or probabilities of shape ({n}, {len(classes)})."
    )


class LoadedModel:
    """A model ready to score batches: ``predict_proba``, ``predict`` and ``classes``.

    ``name`` and ``version`` say which registered version it is (None when the
    model was wrapped directly with :func:`as_model`).
    """

    kind: str = ""
    classes: tuple[Any, ...]
    name: str | None = None
    version: int | None = None

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of shape ``(n, len(classes))`` for a batch of ``n`` instances."""
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class of each instance of the batch (the most probable one)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes)[np.argmax(proba, axis=1)]

    def bounded(self, X: np.ndarray) -> bool:
        """Whether scoring the batch ``X`` runs only inloop's own arithmetic, and takes little.

        Such a call cannot hang or stall, whatever the model's author wrote, so
        a server may make it on its event loop instead of handing it to a
        thread. False unless an adapter knows better (user code may do anything).
        """
        return False

    def _owner(self) -> str:
        if self.name is not None:
            return f"Model {self.name}@{self.version}"
        return f"The {self.kind} model"

    def __repr__(self) -> str:
        where = "" if self.name is None else f" {self.name}@{self.version}"
        return f"<{type(self).__name__}{where} classes={list(self.classes)!r}>"


class SklearnModel(LoadedModel):
    """A fitted scikit-learn style classifier.

    >>> from sklearn.dummy import DummyClassifier
    >>> model = SklearnModel(DummyClassifier().fit([[0], [1], [1]], ["a", "b", "b"]))
    >>> model.predict([[5]]).tolist(), model.classes
    (['b'], ('a', 'b'))
    """

    kind = "sklearn"

    def __init__(self, estimator: Any) -> None:
        name = type(estimator).__name__
        has_proba = callable(getattr(estimator, "predict_proba", None))
        if not has_proba and not callable(getattr(estimator, "predict", None)):
            raise ServeError(
                f"The {name} object has neither predict_proba nor predict, so it cannot be "
                f"served. Pass {_KINDS_ACCEPTED}."
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ServeError(
                f"The {name} estimator has no classes_: it is not fitted, or not a classifier. "
                "Fit it first (estimator.fit(X, y)), or wrap a regressor's output in a callable."
            )
        self.estimator = estimator
        self.classes = _check_classes(classes, f"the {name} estimator")
        self._has_proba = has_proba
        self._n_features: int | None = getattr(estimator, "n_features_in_", None)
        self._linear = _linear_proba(estimator, self._n_features)

    def _check(self, X: Any) -> np.ndarray:
        array = _batch(X, self._owner())
        if array.ndim != 2:
            raise ServeError(
                f"{self._owner()} takes a 2-D batch of shape (n_samples, n_features). Got shape "
                f"{array.shape}; wrap one instance as [x]."
            )
        if self._n_features is not None and array.shape[1] != self._n_features:
            raise ServeError(
                f"{self._owner()} was fitted on {self._n_features} features; the batch has "
                f"{array.shape[1]} (shape {array.shape}). Pass rows of {self._n_features} "
                "features."
            )
        return array

    def bounded(self, X: np.ndarray) -> bool:
        """True for a logistic regression (scored by inloop's own numpy calls) on a small batch.

        A numeric 2-D batch of at most ``BOUNDED_WORK`` multiply-adds (rows x
        features x classes) takes well under a millisecond, a wrong shape is
        refused as quickly, and input that is not finite gets scikit-learn's
        check. Any other estimator runs scikit-learn's or its author's code.
        """
        linear = self._linear
        return (
            linear is not None
            and X.dtype.kind in "biuf"
            and X.ndim == 2
            and X.size * linear.coef_t.shape[1] <= BOUNDED_WORK
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        array = self._check(X)
        if self._linear is not None and array.dtype.kind in "biuf":
            out = self._linear.predict_proba(array)
            if out is not None:
                return out
        if self._has_proba:
            out = self.estimator.predict_proba(array)
        else:
            out = self.estimator.predict(array)
        return _as_proba(out, len(array), self.classes, self._owner())

    def predict(self, X: Any) -> np.ndarray:
        array = self._check(X)
        if callable(getattr(self.estimator, "predict", None)):
            return np.asarray(self.estimator.predict(array))
        return super().predict(array)


#: The most multiply-adds (rows x features x classes) of a batch :meth:`SklearnModel.bounded`
#: calls small: about 0.1 ms of arithmetic.
BOUNDED_WORK = 250_000


class _LinearProba:
    """A logistic regression's ``predict_proba`` as two numpy calls.

    scikit-learn checks its input on every call, which costs several times
    the arithmetic for the one-row batches a server scores. :meth:`check`
    keeps this only where it gives what scikit-learn gives (to 1e-9) on
    random rows, so a version that computes probabilities differently falls
    back to scikit-learn; so does input that is not finite.
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, softmax: bool) -> None:
        self.coef_t = np.ascontiguousarray(coef.T)
        self.intercept = intercept
        self.softmax = softmax

    def predict_proba(self, X: np.ndarray) -> np.ndarray | None:
        scores = X @ self.coef_t + self.intercept
        if not np.isfinite(scores).all():
            return None  # scikit-learn says what is wrong with the input
        if not self.softmax:  # binary: the logistic of the one decision value
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - p, p])
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def check(self, estimator: Any, n_features: int) -> bool:
        probe = np.random.default_rng(0).normal(size=(16, n_features))
        ours = self.predict_proba(probe)
        theirs = np.asarray(estimator.predict_proba(probe), dtype=np.float64)
        return (
            ours is not None
            and ours.shape == theirs.shape
            and np.allclose(ours, theirs, 1e-9, 1e-12)
        )


def _linear_proba(estimator: Any, n_features: int | None) -> _LinearProba | None:
    """The fast ``predict_proba`` of a fitted LogisticRegression, if it agrees with scikit-learn."""
    from sklearn.linear_model import LogisticRegression

    if not isinstance(estimator, LogisticRegression) or not n_features:
        return None
    try:
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] != n_features:
            return None
        linear = _LinearProba(coef, intercept, softmax=coef.shape[0] > 1)
        return linear if linear.check(estimator, n_features) else None
    except Exception:  # any surprise: scikit-learn's own predict_proba serves
        return None


class CallableModel(LoadedModel):
    """A plain callable ``fn(X)`` returning ``n`` labels or ``(n, K)`` probabilities.

    >>> import numpy as np
    >>> model = CallableModel(lambda X: np.where(X[:, 0] > 0, "pos", "neg"), ["neg", "pos"])
    >>> model.predict_proba(np.array([[1.0], [-1.0]])).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """

    kind = "callable"

    def __init__(self, fn: Callable[[np.ndarray], Any], classes: Sequence[Any]) -> None:
        if not callable(fn):
            raise ServeError(f"CallableModel needs a callable fn(X). Got {fn!r}.")
        self.fn = fn
        self.classes = _check_classes(classes, "a callable model")

    def predict_proba(self, X: Any) -> np.ndarray:
        array = _batch(X, self._owner())
        return _as_proba(self.fn(array), len(array), self.classes, self._owner())

    def predict(self, X: Any) -> np.ndarray:
        array = _batch(X, self._owner())
        out = np.asarray(self.fn(array))
        if out.ndim == 1 and len(out) == len(array):
            _one_hot(out, self.classes, self._owner())  # checks every label is a class
            return out
        proba = _as_proba(out, len(array), self.classes, self._owner())
        return np.asarray(self.classes)[np.argmax(proba, axis=1)]


class Heuristic:
    """A rule written as code: subclass it, set ``classes`` and implement :meth:`rule`.

    A heuristic registers and serves like any model and is the natural fallback
    of a service. It must be picklable (define it in an importable module, or it
    is pickled by value with cloudpickle).

    >>> import numpy as np
    >>> class Positive(Heuristic):
    ...     classes = ("neg", "pos")
    ...     def rule(self, X):
    ...         return np.where(X[:, 0] > 0, "pos", "neg")
    >>> as_model(Positive()).predict(np.array([[2.0], [-2.0]])).tolist()
    ['pos', 'neg']
    """

    classes: tuple[Any, ...] = ()

    def rule(self, X: np.ndarray) -> Any:
        """Score a batch: ``n`` labels, or ``(n, len(classes))`` probabilities."""
        raise NotImplementedError

    def __call__(self, X: np.ndarray) -> Any:
        return self.rule(X)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classes={list(self.classes)!r})"


class MajorityClass(Heuristic):
    """Always the most frequent class; the probabilities are the class frequencies.

    >>> import numpy as np
    >>> rule = MajorityClass(["cat", "dog"], [1, 3])
    >>> rule.rule(np.zeros((1, 4))).tolist()
    [[0.25, 0.75]]
    """

    def __init__(self, classes: Sequence[Any], counts: Sequence[float]) -> None:
        self.classes = _check_classes(classes, "MajorityClass")
        weights = np.asarray(counts, dtype=np.float64)
        if weights.shape != (len(self.classes),) or (weights < 0).any() or weights.sum() <= 0:
            raise ServeError(
                f"The counts of MajorityClass must be {len(self.classes)} numbers >= 0 (one per "
                f"class of {list(self.classes)!r}) with a positive sum. Got {counts!r}."
            )
        self.counts = tuple(weights.tolist())
        self._proba = weights / weights.sum()

    def rule(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self._proba, (len(X), 1))


def majority_class_from(y: Any, classes: Sequence[Any] | None = None) -> MajorityClass:
    """The :class:`MajorityClass` of the labels ``y`` (classes default to those seen).

    >>> majority_class_from(["a", "b", "b"]).counts
    (1.0, 2.0)
    """
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) == 0:
        raise ServeError(
            f"majority_class_from needs a non-empty 1-D list of labels. Got shape {labels.shape}."
        )
    seen, counts = np.unique(labels, return_counts=True)
    if classes is None:
        return MajorityClass(seen.tolist(), counts.tolist())
    checked = _check_classes(classes, "majority_class_from")
    by_class = dict(zip(seen.tolist(), counts.tolist(), strict=True))
    unknown = sorted(set(by_class) - set(checked), key=str)
    if unknown:
        raise ServeError(
            f"The labels {unknown!r} are not in classes {list(checked)!r}. Add them to classes."
        )
    return MajorityClass(checked, [by_class.get(c, 0) for c in checked])


class Threshold(Heuristic):
    """Class ``above`` when ``X[:, feature] > threshold``, else ``below``.

    ``classes`` defaults to ``(below, above)``; pass a longer list to line the
    columns up with another model's classes.

    >>> import numpy as np
    >>> Threshold(feature=1, threshold=0.0, above="yes", below="no").rule(
    ...     np.array([[9.0, 1.0], [9.0, -1.0]])).tolist()
    ['yes', 'no']
    """

    def __init__(
        self,
        feature: int,
        threshold: float,
        above: Any,
        below: Any,
        classes: Sequence[Any] | None = None,
    ) -> None:
        if isinstance(feature, bool) or not isinstance(feature, int | np.integer) or feature < 0:
            raise ServeError(
                f"The 'feature' parameter of Threshold must be a column index (an int >= 0). "
                f"Got {feature!r}."
            )
        self.feature = int(feature)
        self.threshold = float(threshold)
        self.above = above
        self.below = below
        self.classes = _check_classes([below, above] if classes is None else classes, "Threshold")
        missing = [c for c in (above, below) if c not in self.classes]
        if missing:
            raise ServeError(
                f"The classes of Threshold {list(self.classes)!r} must include above and below; "
                f"missing {missing!r}."
            )

    def rule(self, X: np.ndarray) -> np.ndarray:
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] <= self.feature:
            raise ServeError(
                f"Threshold on feature {self.feature} takes a 2-D batch with more than "
                f"{self.feature} columns. Got shape {array.shape}."
            )
        values = np.asarray(array[:, self.feature], dtype=np.float64)
        out = np.empty(len(array), dtype=object)
        out[:] = [self.above if v > self.threshold else self.below for v in values]
        return out

    def __repr__(self) -> str:
        return (
            f"Threshold(feature={self.feature}, threshold={self.threshold}, "
            f"above={self.above!r}, below={self.below!r})"
        )


def model_kind(model: object) -> str:
    """Which adapter serves ``model``: ``'heuristic'``, ``'sklearn'`` or ``'callable'``.

    >>> model_kind(MajorityClass(["a", "b"], [1, 1])), model_kind(len)
    ('heuristic', 'callable')
    """
    if isinstance(model, Heuristic):
        return "heuristic"
    if any(callable(getattr(model, m, None)) for m in ("predict_proba", "predict")):
        return "sklearn"
    if callable(model) and not isinstance(model, type):
        return "callable"
    if hasattr(model, "fit"):
        raise ServeError(
            f"The {type(model).__name__} object has neither predict_proba nor predict, so it "
            f"cannot be served. Pass {_KINDS_ACCEPTED}."
        )
    raise ServeError(f"Cannot serve a {type(model).__name__} object. Pass {_KINDS_ACCEPTED}.")


def as_model(
    model: object, classes: Sequence[Any] | None = None, kind: str | None = None
) -> LoadedModel:
    """Wrap an estimator, a callable or a heuristic in the :class:`LoadedModel` interface.

    ``classes`` is required for a plain callable (unless it has a ``classes``
    attribute) and ignored otherwise; ``kind`` forces an adapter.

    >>> as_model(lambda X: ["a"] * len(X), classes=["a", "b"]).predict([[1], [2]]).tolist()
    ['a', 'a']
    """
    if kind is None:
        kind = model_kind(model)
    if kind == "sklearn":
        return SklearnModel(model)
    if kind == "heuristic":
        if not isinstance(model, Heuristic):
            raise ServeError(
                f"kind='heuristic' needs a Heuristic instance (MajorityClass, Threshold or a "
                f"subclass). Got a {type(model).__name__}."
            )
        wrapped = CallableModel(model, _check_classes(model.classes, repr(model)))
        wrapped.kind = "heuristic"
        return wrapped
    if kind == "callable":
        if not callable(model):
            raise ServeError(f"kind='callable' needs a callable fn(X). Got {model!r}.")
        if classes is None:
            classes = getattr(model, "classes", None)
        if classes is None:
            raise ServeError(
                "A plain callable needs its classes: pass classes=[...] (the labels it returns, "
                "in the column order of the probabilities it returns)."
            )
        return CallableModel(model, classes)
    raise ServeError(
        f"Unknown model kind {kind!r}. Accepted: 'sklearn', 'callable', 'heuristic' "
        "(or None to detect it)."
    )
