"""The label audit as a flow: one task per cross-validation fold, then cleanlab.

:class:`AuditFlow` reads its data from the artifact store by key, fits one
clone of the estimator per fold in a ``foreach`` (so the folds run in
parallel on local worker processes, or on a Dask cluster with
``INLOOP_EXECUTOR=dask://...``), joins the held-out probabilities and ranks
the suspect labels with :func:`inloop.label.audit.find_suspect_labels`. Its
run keeps ``report`` (an :class:`~inloop.label.audit.AuditReport`), ``proba``
and ``classes`` as artifacts, reachable later through the client API
(``Flow("AuditFlow").latest_successful_run.data.report``).

:func:`run_audit` stores the inputs, runs the flow and returns the report;
for the same seed it flags the same items as
:func:`inloop.label.audit.audit_labels`.

>>> import numpy as np
>>> from sklearn.datasets import load_digits
>>> X, y = load_digits(return_X_y=True)
>>> noisy = y.copy()
>>> noisy[:10] = (y[:10] + 1) % 10
>>> report = run_audit(X[:600], noisy[:600], folds=3, budget=20)  # doctest: +SKIP
>>> sorted(set(range(10)) - set(report.indices.tolist()))  # doctest: +SKIP
[]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inloop import FlowSpec, Parameter, Runner, step
from inloop.errors import TaskFailedError
from inloop.label.audit import (
    AuditError,
    AuditReport,
    _check_budget,
    _check_estimator,
    _check_folds,
    _check_labels_1d,
    _check_method,
    _check_same_length,
    default_audit_estimator,
    find_suspect_labels,
    fold_proba,
    fold_test_indices,
)

__all__ = ["AuditFlow", "run_audit"]


def _load(key: str, what: str) -> Any:
    from inloop.errors import ArtifactNotFoundError
    from inloop.store import open_artifact_store

    store = open_artifact_store()
    try:
        return store.get(key)
    except ArtifactNotFoundError:
        raise AuditError(
            f"The '{what}' parameter of AuditFlow names artifact {key!r}, which the artifact "
            f"store {store.url} does not hold. Store the value first: "
            "inloop.store.open_artifact_store().put(value).key."
        ) from None


def _load_estimator(key: str, X: Any, labels: Any, folds: int) -> Any:
    """The pickled estimator at ``key``, or (no key) the default model for ``X`` and ``labels``."""
    if not key:
        return default_audit_estimator(X, labels, folds=folds)
    estimator = _load(key, "estimator")
    _check_estimator(estimator)
    return estimator


class AuditFlow(FlowSpec):
    """Find likely mislabels by K-fold cross-validation, one task per fold.

    Parameters are artifact keys (``open_artifact_store().put(value).key``):
    ``x_key`` the features, ``y_key`` the labels, ``estimator`` a pickled
    classifier with ``predict_proba`` (empty: ``default_audit_estimator(X, y,
    folds=folds)``).
    ``folds``, ``budget`` (empty: no limit), ``seed`` and ``method`` are as in
    :func:`inloop.label.audit.audit_labels`. Prefer :func:`run_audit` from Python.
    """

    x_key = Parameter("x_key", type=str, required=True, help="artifact key of the features X")
    y_key = Parameter("y_key", type=str, required=True, help="artifact key of the labels y")
    estimator = Parameter(
        "estimator",
        type=str,
        default="",
        help="artifact key of a pickled classifier (empty: the default estimator)",
    )
    folds = Parameter("folds", default=5, help="number of cross-validation folds (>= 2)")
    budget = Parameter("budget", type=int, default=None, help="longest review queue (no limit)")
    seed = Parameter("seed", default=0, help="random state of the fold split")
    method = Parameter("method", default="self_confidence", help="cleanlab's ranking method")

    @step
    def start(self) -> None:
        """Check the inputs and split the items into stratified folds."""
        labels = _check_labels_1d(_load(self.y_key, "y_key"))
        X = _load(self.x_key, "x_key")
        _check_same_length(X, labels)
        _check_budget(self.budget)
        _check_method(self.method)
        self.classes = _check_folds(labels, self.folds)
        _load_estimator(self.estimator, X, labels, self.folds)
        self.labels = labels
        self.test_folds = fold_test_indices(labels, folds=self.folds, random_state=self.seed)
        self.next(self.fold, foreach="test_folds")

    @step
    def fold(self) -> None:
        """Fit on the other folds, predict this one's held-out items."""
        X = _load(self.x_key, "x_key")
        self.test = self.input
        # The default model is chosen on all items, so that every fold fits the same one.
        estimator = _load_estimator(self.estimator, X, self.labels, self.folds)
        self.fold_proba = fold_proba(estimator, X, self.labels, self.test, self.classes)
        self.next(self.rank)

    @step
    def rank(self, inputs: Any) -> None:
        """Join the held-out probabilities and rank suspect labels with cleanlab."""
        self.merge_artifacts(inputs, include=["labels", "classes"])
        proba = np.empty((len(self.labels), len(self.classes)), dtype=np.float64)
        for part in inputs:
            proba[part.test] = part.fold_proba
        self.proba = proba
        self.report = find_suspect_labels(
            self.labels, proba, classes=self.classes, budget=self.budget, method=self.method
        )
        self.next(self.end)

    @step
    def end(self) -> None:
        """The report, probabilities and classes are the run's artifacts."""


def _first_failure(run: Any) -> str:
    """The failed task and the last line of its traceback, or the run's error."""
    for run_step in run:
        for task in run_step:
            if task.finished and not task.successful and task.exception:
                lines = [line for line in task.exception.splitlines() if line.strip()]
                return f"task {task.pathspec} raised {lines[-1] if lines else 'an error'}."
    return str(run.error)


def run_audit(
    X: Any,
    y: Any,
    estimator: Any = None,
    *,
    folds: int = 5,
    budget: int | None = None,
    random_state: int = 0,
    method: str = "self_confidence",
    max_workers: int | None = None,
    executor: str | None = None,
) -> AuditReport:
    """Audit the labels ``y`` of ``X`` with :class:`AuditFlow` and return its report.

    The inputs are checked here first (a bad input raises
    :class:`~inloop.label.audit.AuditError` and starts no run), then stored in
    the artifact store and the folds run as tasks: on local worker processes
    (``max_workers``), or on the executor named by ``executor`` or the
    settings. ``estimator=None`` uses ``default_audit_estimator(X, y, folds=folds)``.

    >>> import numpy as np
    >>> X = np.r_[np.zeros((10, 1)), np.ones((10, 1))]
    >>> y = np.array([0] * 10 + [1] * 10)
    >>> y[3] = 1
    >>> from sklearn.linear_model import LogisticRegression
    >>> run_audit(X, y, LogisticRegression(), max_workers=1).indices.tolist()  # doctest: +SKIP
    [3]
    """
    from inloop.store import open_artifact_store

    labels = _check_labels_1d(y)
    _check_same_length(X, labels)
    _check_folds(labels, folds)
    _check_budget(budget)
    _check_method(method)
    if estimator is not None:
        _check_estimator(estimator)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise AuditError(
            f"The 'random_state' parameter of run_audit must be an int (the flow's seed). "
            f"Got {random_state!r}."
        )
    store = open_artifact_store()
    features = X if hasattr(X, "shape") else np.asarray(X)
    params: dict[str, Any] = {
        "x_key": store.put(features).key,
        "y_key": store.put(labels).key,
        "estimator": "" if estimator is None else store.put(estimator).key,
        "folds": int(folds),
        "budget": budget,
        "seed": int(random_state),
        "method": method,
    }
    runner = Runner(AuditFlow, show_output=False, max_workers=max_workers, executor=executor)
    result = runner.run(**params)
    if result.status != "successful":
        raise TaskFailedError(
            f"The label audit run {result.run.pathspec} failed: {_first_failure(result.run)} "
            f"Inspect it with inloop.Flow('AuditFlow')[{result.run.id!r}]."
        )
    report: AuditReport = result.run.data.report
    return report
