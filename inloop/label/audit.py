"""Label audit: find the given labels that look wrong, most suspicious first.

An audit has two parts. :func:`out_of_sample_proba` computes, by stratified
K-fold cross-validation, each item's class probabilities from a model that
never saw that item's label. :func:`find_suspect_labels` then applies
cleanlab's confident learning to those probabilities and the given labels,
and returns an :class:`AuditReport`: a review queue ordered by how suspicious
each label is, showing the given label, the suggested one and the model's
confidence in both. :func:`audit_labels` does both in this process, with
:func:`default_audit_estimator` unless given a model; to spread
the folds over worker processes or a Dask cluster use
:func:`inloop.label.audit_flow.run_audit`.

The queue is a queue, not a verdict: with a weak model most flagged items are
fine, so a person reviews the head of it and ``budget`` says how long a head.

>>> import numpy as np
>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> noisy = y.copy()
>>> noisy[:20] = (y[:20] + 1) % 10  # twenty wrong labels
>>> report = audit_labels(X, noisy, budget=30)  # the default model: default_audit_estimator
>>> len(report) <= 30
True
>>> bool(np.isin(np.arange(20), report.indices).mean() > 0.8)
True
>>> row = report.to_records()[0]
>>> sorted(row)
['given', 'given_confidence', 'index', 'score', 'suggested', 'suggested_confidence']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inloop.errors import InloopError

__all__ = [
    "METHODS",
    "PCA_ABOVE_FEATURES",
    "PCA_COMPONENTS",
    "SVC_MAX_ITEMS",
    "AuditError",
    "AuditReport",
    "audit_labels",
    "default_audit_estimator",
    "find_suspect_labels",
    "fold_proba",
    "fold_test_indices",
    "out_of_sample_proba",
]

#: Ways to score how well each given label fits the model (cleanlab's ranking methods).
METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
#: The default audit model projects more features than this on their first principal components.
PCA_ABOVE_FEATURES = 100
#: How many principal components it keeps then.
PCA_COMPONENTS = 50
#: Up to this many items the default audit model is an RBF SVC; above, a linear-time model.
SVC_MAX_ITEMS = 8_000

# How far a row of probabilities may sum from 1 (float32 softmax outputs drift a little).
_SUM_TOLERANCE = 1e-3


class AuditError(InloopError, ValueError):
    """The inputs of a label audit cannot be used (shapes, classes, folds, budget)."""


def default_audit_estimator(X: Any = None, y: Any = None, *, folds: int = 5) -> Any:
    """The model an audit of ``X`` and ``y`` uses when none is given, chosen by their size.

    - Up to :data:`SVC_MAX_ITEMS` items: an RBF SVC on features scaled to
      [0, 1] per column (``MinMaxScaler``), its decision values turned into
      probabilities by one temperature fitted on internal ``folds``-fold
      predictions (``CalibratedClassifierCV(SVC(), cv=folds, ensemble=False,
      method="temperature")``). Above :data:`PCA_ABOVE_FEATURES` features, a
      PCA to :data:`PCA_COMPONENTS` components comes before the SVC: the
      kernel's cost grows with the features, its accuracy hardly does.
    - More items: the same scaling and PCA, then an RBF kernel approximated
      by 500 Nystroem components and a logistic regression on them: its cost
      grows linearly with the items where an SVC's grows with their square.
    - A class too small for the internal calibration (fewer than ``folds``
      items of it in a training fold) gets logistic regression on the scaled
      features instead, which needs no internal folds.

    Without ``X`` and ``y`` it is the small-data model. Chosen by measurement,
    with 10 % of labels flipped at random (``benchmarks/_labeling_audit.py``,
    ``benchmarks/_labeling_audit_large.py``, one thread):

    - digits (1,797 x 64): cleanlab on the SVC's probabilities flags a set with
      F1 0.945, and 99.4 % of the top 100 of the queue are real errors, in
      about a second; ``LogisticRegression(max_iter=1000)`` reached F1 0.81.
    - augmented digits (5,000 x 784): the SVC alone takes 60-90 s; after the
      PCA about 15 s, as long as cleanlab's usual ``LogisticRegression()`` on
      the pixels, with F1 0.94 against 0.64.
    - 15,000 x 784: the SVC took 159 s (6x logistic regression, F1 0.98); the
      Nystroem model 18 s (0.7x, F1 0.95 against logistic regression's 0.82).

    >>> import numpy as np
    >>> model = default_audit_estimator(np.zeros((600, 784)), [0, 1, 2] * 200, folds=3)
    >>> [type(step).__name__ for step in model]
    ['MinMaxScaler', 'PCA', 'CalibratedClassifierCV']
    >>> model[1].n_components, model[-1].cv, type(model[-1].estimator).__name__
    (50, 3, 'SVC')
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from sklearn.svm import SVC

    folds = _check_folds_value(folds)
    n_items = None if X is None else _n_rows(X)
    n_features = None if X is None else _n_columns(X)
    if y is not None and not _calibration_fits(_check_labels_1d(y), folds):
        return make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=1000))
    steps: list[Any] = [MinMaxScaler()]
    if n_items is not None and n_features is not None and n_features > PCA_ABOVE_FEATURES:
        # No more components than the smallest training fold has items.
        smallest_fold = n_items - -(-n_items // folds)
        components = max(1, min(PCA_COMPONENTS, smallest_fold))
        # The eigenvectors of the covariance: exact, and twice as fast as the randomized
        # solver on a few thousand rows of some hundred features (n * d^2 grows past that).
        solver = "covariance_eigh" if n_features <= 1000 else "randomized"
        steps.append(PCA(components, svd_solver=solver, random_state=0))
    if n_items is not None and n_items > SVC_MAX_ITEMS:
        from sklearn.kernel_approximation import Nystroem

        steps += [Nystroem(n_components=500, random_state=0), LogisticRegression(max_iter=1000)]
        return make_pipeline(*steps)
    calibrated = CalibratedClassifierCV(SVC(), cv=folds, ensemble=False, method="temperature")
    return make_pipeline(*steps, calibrated)


def _calibration_fits(labels: np.ndarray, folds: int) -> bool:
    """Whether every class keeps ``folds`` items in each training fold of a ``folds``-fold split.

    The calibration inside the default SVC splits each training fold into
    ``folds`` folds again, and needs every class in each of them.
    """
    if len(labels) == 0:
        return True
    counts = np.unique(labels, return_counts=True)[1]
    smallest = int(counts.min())
    return smallest - -(-smallest // folds) >= folds


# -- cross-validation ---------------------------------------------------------------------


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return len(X)


def _n_columns(X: Any) -> int | None:
    """The number of features of ``X`` (None when its rows are not flat rows of numbers)."""
    shape = getattr(X, "shape", None)
    if shape is None:
        try:
            shape = np.shape(X)
        except ValueError:  # rows of different lengths
            return None
    return int(shape[1]) if len(shape) == 2 else None


def _take_rows(X: Any, rows: np.ndarray) -> Any:
    """Rows of an array, a sparse matrix, a DataFrame or a list, by position."""
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    return X[rows]


def _check_labels_1d(y: Any, name: str = "y") -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise AuditError(
            f"The '{name}' labels of a label audit must be one label per item (a 1-D array). "
            f"Got an array of shape {labels.shape}."
        )
    return labels


def _check_folds_value(folds: object) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise AuditError(
            f"The 'folds' parameter of a label audit must be an int >= 2. Got {folds!r}."
        )
    return int(folds)


def _check_folds(labels: np.ndarray, folds: object) -> np.ndarray:
    """The sorted classes of ``labels``, after checking every class can fill ``folds`` folds."""
    folds = _check_folds_value(folds)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise AuditError(
            f"A label audit needs at least 2 classes among the labels; got {len(classes)} "
            f"({classes.tolist()!r}). Audit a data set whose labels take at least two values."
        )
    small = counts < folds
    if small.any():
        worst = int(np.argmin(counts))
        fewest = int(counts[worst])
        lower = f"Lower 'folds' to at most {fewest}, or label" if fewest >= 2 else "Label"
        raise AuditError(
            f"Class {classes[worst].tolist()!r} has {fewest} labeled item(s), fewer than "
            f"folds={folds}: stratified cross-validation needs at least one item of each class "
            f"per fold. {lower} more items of {classes[small].tolist()!r}."
        )
    return classes


def fold_test_indices(y: Any, *, folds: int = 5, random_state: int = 0) -> list[np.ndarray]:
    """The held-out item positions of each of ``folds`` stratified, shuffled folds.

    The same labels, ``folds`` and ``random_state`` always give the same split;
    the audit flow uses this to give each fold to its own task.

    >>> parts = fold_test_indices([0, 1] * 5, folds=5)
    >>> [len(p) for p in parts]
    [2, 2, 2, 2, 2]
    >>> sorted(np.concatenate(parts).tolist()) == list(range(10))
    True
    """
    from sklearn.model_selection import StratifiedKFold

    labels = _check_labels_1d(y)
    _check_folds(labels, folds)
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    dummy = np.zeros((len(labels), 1))
    return [test for _, test in splitter.split(dummy, labels)]


def fold_proba(
    estimator: Any, X: Any, y: Any, test: np.ndarray, classes: Sequence[Any] | np.ndarray
) -> np.ndarray:
    """Fit a clone of ``estimator`` on all items but ``test``; its probabilities for ``test``.

    Columns follow ``classes`` (sorted). A class the fold's model never saw gets
    probability 0 and each row is renormalized to sum to 1.

    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.arange(8.0).reshape(-1, 1)
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    >>> fold_proba(LogisticRegression(), X, y, np.array([0, 7]), [0, 1, 2]).shape
    (2, 3)
    """
    from sklearn.base import clone

    labels = _check_labels_1d(y)
    classes = np.asarray(classes)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test] = False
    train = np.flatnonzero(train_mask)
    model = clone(estimator)
    model.fit(_take_rows(X, train), labels[train])
    raw = np.asarray(model.predict_proba(_take_rows(X, test)), dtype=np.float64)
    seen = np.asarray(getattr(model, "classes_", np.unique(labels[train])))
    if raw.ndim != 2 or raw.shape != (len(test), len(seen)):
        raise AuditError(
            f"{type(estimator).__name__}.predict_proba returned shape {raw.shape} for "
            f"{len(test)} items and {len(seen)} classes; a label audit needs one column per "
            "class seen in training (scikit-learn's predict_proba contract)."
        )
    columns = np.searchsorted(classes, seen)
    out = np.zeros((len(test), len(classes)), dtype=np.float64)
    out[:, columns] = raw
    sums = out.sum(axis=1, keepdims=True)
    return np.divide(out, sums, out=np.full_like(out, 1.0 / len(classes)), where=sums > 0)


def _check_estimator(estimator: Any) -> None:
    if not hasattr(estimator, "fit") or not hasattr(estimator, "predict_proba"):
        raise AuditError(
            f"The 'estimator' of a label audit must be a scikit-learn-style classifier with "
            f"fit and predict_proba. Got {estimator!r}. Pass estimator=None for the default "
            "model (inloop.label.default_audit_estimator)."
        )


def _check_same_length(X: Any, labels: np.ndarray) -> None:
    n = _n_rows(X)
    if n != len(labels):
        raise AuditError(
            f"X has {n} rows but y has {len(labels)} labels; a label audit needs one label "
            "per row of X."
        )


def out_of_sample_proba(
    estimator: Any, X: Any, y: Any, *, folds: int = 5, random_state: int = 0
) -> np.ndarray:
    """Each item's class probabilities from a model fitted without that item: (n, K).

    Stratified K-fold: a clone of ``estimator`` is fitted on K-1 folds and
    predicts the held-out one. Column ``k`` is the probability of the k-th of
    the sorted distinct labels of ``y`` (``np.unique(y)``), also when a fold's
    model did not see every class. Every class needs at least ``folds`` items.

    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]])
    >>> proba = out_of_sample_proba(LogisticRegression(), X, ["a"] * 3 + ["b"] * 3, folds=3)
    >>> proba.shape, bool(np.allclose(proba.sum(axis=1), 1))
    ((6, 2), True)
    """
    labels = _check_labels_1d(y)
    _check_same_length(X, labels)
    _check_estimator(estimator)
    classes = _check_folds(labels, folds)
    proba = np.empty((len(labels), len(classes)), dtype=np.float64)
    for test in fold_test_indices(labels, folds=folds, random_state=random_state):
        proba[test] = fold_proba(estimator, X, labels, test, classes)
    return proba


# -- ranking ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AuditReport:
    """The review queue of an audit: flagged labels, most suspicious first.

    Each position ``i`` of the arrays is one queued item: ``indices[i]`` is its
    position in the audited data, ``given[i]`` its label, ``suggested[i]`` the
    class the model finds most likely, ``suggested_confidence[i]`` and
    ``given_confidence[i]`` the model's probabilities of those two classes, and
    ``score[i]`` in [0, 1] how suspicious the label is (1 - cleanlab's label
    quality; higher is worse). ``n_flagged`` counts what confident learning
    flagged before ``budget`` cut the queue.

    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.1, 0.9]] * 5)
    >>> labels = np.array([0, 1, 1, 1] * 5)  # the third of every four looks wrong
    >>> report = find_suspect_labels(labels, proba, budget=3)
    >>> len(report), report.n_flagged, report.indices.tolist()
    (3, 5, [2, 6, 10])
    >>> report.top(1).to_records()[0]["suggested"]
    0
    """

    indices: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    suggested_confidence: np.ndarray
    given_confidence: np.ndarray
    score: np.ndarray
    classes: np.ndarray
    n_items: int
    n_flagged: int
    budget: int | None = None
    method: str = "self_confidence"

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (
            f"AuditReport({len(self)} queued of {self.n_flagged} flagged among "
            f"{self.n_items} items, budget={self.budget}, method={self.method!r})"
        )

    @property
    def flagged(self) -> np.ndarray:
        """A boolean mask over all audited items: True where the item is in the queue."""
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.indices] = True
        return mask

    def top(self, k: int) -> AuditReport:
        """The first ``k`` items of the queue (all of it when it is shorter), as a report."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise AuditError(
                f"The 'k' parameter of AuditReport.top must be an int >= 0. Got {k!r}."
            )
        head = slice(0, int(k))
        return AuditReport(
            indices=self.indices[head],
            given=self.given[head],
            suggested=self.suggested[head],
            suggested_confidence=self.suggested_confidence[head],
            given_confidence=self.given_confidence[head],
            score=self.score[head],
            classes=self.classes,
            n_items=self.n_items,
            n_flagged=self.n_flagged,
            budget=self.budget,
            method=self.method,
        )

    def to_records(self) -> list[dict[str, Any]]:
        """The queue as plain, JSON-ready dicts, one per item, in queue order."""
        columns = {
            "index": self.indices,
            "given": self.given,
            "suggested": self.suggested,
            "suggested_confidence": self.suggested_confidence,
            "given_confidence": self.given_confidence,
            "score": self.score,
        }
        lists = {name: values.tolist() for name, values in columns.items()}
        return [{name: lists[name][i] for name in columns} for i in range(len(self))]


def _check_proba(proba: Any, n: int) -> np.ndarray:
    try:
        probs = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AuditError(
            f"The 'proba' of a label audit must be a numeric (n_items, n_classes) array: {exc}."
        ) from None
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 2:
        raise AuditError(
            f"The 'proba' of a label audit must have shape (n_items, n_classes) = ({n}, K) with "
            f"K >= 2, one row per label. Got shape {probs.shape}."
        )
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (probs > 1).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise AuditError(
            f"The 'proba' of a label audit must hold probabilities in [0, 1]; row {row} is "
            f"{probs[row].tolist()!r} ({int(bad.sum())} such rows). Pass predict_proba's "
            "output, not decision_function's."
        )
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > _SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise AuditError(
            f"Each row of the 'proba' of a label audit must sum to 1 (within {_SUM_TOLERANCE}); "
            f"row {row} sums to {sums[row]:.6g} ({int(off.sum())} such rows). Normalize the "
            "rows, or pass predict_proba's output."
        )
    return probs / sums[:, None]


def _label_positions(labels: np.ndarray, classes: Any, n_columns: int) -> tuple[np.ndarray, Any]:
    """Each label's column in ``proba``, and the classes as an array."""
    if classes is None:
        known = np.unique(labels)
        if len(known) != n_columns:
            raise AuditError(
                f"The labels take {len(known)} distinct values but 'proba' has {n_columns} "
                f"columns. Pass classes=[...] naming the class of each column, in column order."
            )
    else:
        known = np.asarray(classes)
        if known.ndim != 1 or len(known) != n_columns:
            raise AuditError(
                f"The 'classes' parameter of find_suspect_labels must list one class per column "
                f"of 'proba' ({n_columns}). Got {np.asarray(classes).tolist()!r}."
            )
        if len(np.unique(known)) != len(known):
            raise AuditError(
                f"The 'classes' parameter of find_suspect_labels must not repeat a class. "
                f"Got {known.tolist()!r}."
            )
    lookup = {value: column for column, value in enumerate(known.tolist())}
    positions = np.empty(len(labels), dtype=np.int64)
    unknown: list[Any] = []
    for i, label in enumerate(labels.tolist()):
        column = lookup.get(label)
        if column is None:
            unknown.append(label)
            positions[i] = -1
        else:
            positions[i] = column
    if unknown:
        shown = sorted({repr(u) for u in unknown})[:5]
        raise AuditError(
            f"{len(unknown)} label(s) are not among the classes {known.tolist()!r}: "
            f"{', '.join(shown)}. Pass classes=[...] covering every label, in proba's column order."
        )
    return positions, known


def _check_budget(budget: object) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise AuditError(
            f"The 'budget' parameter of a label audit must be None (no limit) or an int >= 1. "
            f"Got {budget!r}."
        )
    return int(budget)


def _check_method(method: object) -> None:
    if method not in METHODS:
        raise AuditError(
            f"The 'method' parameter of a label audit must be one of {list(METHODS)}. "
            f"Got {method!r}."
        )


def find_suspect_labels(
    labels: Any,
    proba: Any,
    *,
    classes: Sequence[Any] | np.ndarray | None = None,
    budget: int | None = None,
    method: str = "self_confidence",
) -> AuditReport:
    """Rank the labels that out-of-sample probabilities disagree with, most suspicious first.

    ``proba`` should come from a model that did not see the labels it scores
    (:func:`out_of_sample_proba`). cleanlab's confident learning
    (``find_label_issues``) decides which labels are flagged; cleanlab's label
    quality score (``method``: one of :data:`METHODS`) orders them, worst
    first, ties by item position. ``classes`` names the class of each column
    (default: the sorted distinct labels); ``budget`` keeps only the head of
    the queue, the number of items a person will review.

    >>> proba = np.array([[0.9, 0.1], [0.1, 0.9]] * 10)
    >>> labels = np.array(["cat", "dog"] * 10)
    >>> labels[4] = "dog"
    >>> report = find_suspect_labels(labels, proba)
    >>> report.to_records()
    [{'index': 4, 'given': 'dog', 'suggested': 'cat', 'suggested_confidence': 0.9, \
'given_confidence': 0.1, 'score': 0.9}]
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    given_labels = _check_labels_1d(labels, "labels")
    if len(given_labels) == 0:
        raise AuditError("A label audit needs at least one label; 'labels' is empty.")
    probs = _check_proba(proba, len(given_labels))
    positions, known = _label_positions(given_labels, classes, probs.shape[1])
    cap = _check_budget(budget)
    _check_method(method)
    # n_jobs=1: cleanlab's process pool costs more than its work here (tens of ms), and
    # cannot start inside a flow's worker process.
    issues = np.asarray(find_label_issues(positions, probs, n_jobs=1), dtype=bool)
    quality = np.asarray(get_label_quality_scores(positions, probs, method=method))
    flagged = np.flatnonzero(issues)
    order = flagged[np.lexsort((flagged, quality[flagged]))]
    if cap is not None:
        order = order[:cap]
    suggested = probs[order].argmax(axis=1)
    return AuditReport(
        indices=order.astype(np.int64),
        given=given_labels[order],
        suggested=known[suggested],
        suggested_confidence=probs[order, suggested],
        given_confidence=probs[order, positions[order]],
        score=np.clip(1.0 - quality[order], 0.0, 1.0),
        classes=known,
        n_items=len(given_labels),
        n_flagged=len(flagged),
        budget=cap,
        method=method,
    )


def audit_labels(
    X: Any,
    y: Any,
    estimator: Any = None,
    *,
    folds: int = 5,
    budget: int | None = None,
    random_state: int = 0,
    method: str = "self_confidence",
) -> AuditReport:
    """Audit the labels ``y`` of ``X`` in this process: cross-validate, then rank suspects.

    The same as ``find_suspect_labels(y, out_of_sample_proba(estimator, X, y, ...))``;
    ``estimator=None`` uses ``default_audit_estimator(X, y, folds=folds)``, whose
    internal calibration uses ``folds`` folds too. For large data run the folds
    in parallel with :func:`inloop.label.audit_flow.run_audit`, which gives the
    same report.

    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.r_[np.zeros((10, 1)), np.ones((10, 1))]
    >>> y = np.array([0] * 10 + [1] * 10)
    >>> y[3] = 1
    >>> audit_labels(X, y, LogisticRegression()).indices.tolist()
    [3]
    """
    if hasattr(X, "fit") and not hasattr(X, "shape"):
        raise AuditError(
            f"audit_labels takes (X, y, estimator=None); its first argument is the "
            f"features, got the model {type(X).__name__}. Call audit_labels(X, y, estimator)."
        )
    labels = _check_labels_1d(y)
    _check_budget(budget)
    _check_method(method)
    _check_folds(labels, folds)
    if estimator is None:
        estimator = default_audit_estimator(X, labels, folds=folds)
    proba = out_of_sample_proba(estimator, X, labels, folds=folds, random_state=random_state)
    return find_suspect_labels(
        labels, proba, classes=np.unique(labels), budget=budget, method=method
    )
