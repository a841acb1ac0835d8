"""The model in the loop: retrain on new labels, rescore the pool, reorder the queue.

An :class:`ActiveLearner` watches one labeling project of feature items. Its
:meth:`~ActiveLearner.refresh` fits a fresh clone of the estimator on the
items' current labels, asks it for ``predict_proba`` on the pool (the items the
queue can still hand out), and writes the sampling strategy's uncertainty
scores as the items' queue priorities, so annotators get the items the model
is least sure about next. :meth:`~ActiveLearner.maybe_refresh` does so only once
``retrain_every`` new labels have arrived; :meth:`~ActiveLearner.start` runs
that in a background thread, so annotators never wait on training.

Each refresh records a :class:`StoppingReport`: how often this model and the
previous one predict the same class on the pool. When they agree on at least
``stop_agreement`` of it for ``patience`` refreshes in a row, ``should_stop``
turns true: the model has stopped changing, and more labels stop paying.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from inloop.store import get_engine
>>> from inloop.label.projects import create_project
>>> from inloop.label.io import import_items
>>> engine = get_engine("sqlite://")
>>> _ = create_project("learner-doc", ["a", "b"], engine=engine)
>>> X = np.linspace(0, 1, 20).reshape(-1, 1)
>>> labels = ["a", "b"] + [None] * 18
>>> _ = import_items("learner-doc", X, labels=labels, engine=engine)
>>> learner = ActiveLearner("learner-doc", LogisticRegression(), engine=engine)
>>> report = learner.refresh()
>>> (report.n_labels, report.n_pool, report.should_stop)
(2, 18, False)
"""

from __future__ import annotations

import logging
import numbers
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, func, select

from inloop.label.annotations import current_query, derive_current
from inloop.label.items import Item, get_items, item_payload
from inloop.label.projects import (
    LabelError,
    Project,
    ProjectRef,
    _engine,
    _now,
    load_project,
    require_single_label,
)
from inloop.label.queue import active_leases, set_priorities
from inloop.label.tables import label_annotations, label_items

if TYPE_CHECKING:
    # Imported where used: the strategies import scikit-learn, which `inloop server`
    # should not wait for before it answers.
    from inloop.label.strategies import SamplingStrategy

__all__ = ["ActiveLearner", "LearnerError", "StoppingReport", "default_estimator"]

_log = logging.getLogger(__name__)

# Label events the learner trains on and counts as "new labels": people's, reviewers' and
# imported labels. A model's own suggestions are never fed back into it.
_TRAINING_ORIGINS = ("human", "review", "import")


class LearnerError(LabelError):
    """An active learner got a parameter, a project or an estimator it cannot use."""


@dataclass(frozen=True)
class StoppingReport:
    """What one refresh found, and whether more labels still pay.

    ``agreement`` is the share of pool items on which this model and the
    previous one predict the same class (None at the first refresh).
    ``stable_refreshes`` counts the refreshes in a row, ending with this one,
    whose agreement reached ``stop_agreement``; ``should_stop`` is true once it
    reaches ``patience``, or when the pool is empty. ``reason`` says why, in a
    sentence a person can read.
    """

    refresh: int
    n_labels: int
    n_classes: int
    n_pool: int
    agreement: float | None
    stable_refreshes: int
    stop_agreement: float
    patience: int
    should_stop: bool
    reason: str
    last_annotation_id: int
    seconds: float
    created_at: datetime


@dataclass(frozen=True)
class _Data:
    """The project's feature items as the learner sees them at one moment."""

    item_ids: np.ndarray  # every feature item, ascending
    X: np.ndarray
    labeled: np.ndarray  # positions with a training label
    y: np.ndarray  # the labels of `labeled`
    pool: np.ndarray  # positions the queue can still hand out
    last_annotation_id: int


def default_estimator() -> Any:
    """The model in the loop when none is given: logistic regression on standardized features.

    ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``: it
    trains in well under a second on the few hundred labels a project has while
    people label, so the queue can be reordered every few labels. (A label
    audit has its own default, :func:`inloop.label.audit.default_audit_estimator`.)

    >>> [type(step).__name__ for step in default_estimator()]
    ['StandardScaler', 'LogisticRegression']
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@contextmanager
def _single_threaded() -> Iterator[None]:
    """BLAS and OpenMP on one thread: threaded BLAS stalls a small machine under load."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


class ActiveLearner:
    """Keep a project's queue ordered by what the model is least sure about.

    Parameters (stored unchanged, checked when used, scikit-learn style):

    - ``project``: the labeling project (name, id or record); its feature items
      are the pool, other kinds are ignored.
    - ``estimator``: any classifier with ``fit`` and ``predict_proba``; each
      refresh fits a clone, so the object passed is never changed. None means
      :func:`default_estimator` (logistic regression on standardized features).
    - ``strategy``: a :class:`~inloop.label.strategies.SamplingStrategy`;
      None means ``default_strategy(retrain_every)`` (the hybrid for batches,
      margin for single picks). Uncertainty strategies set every pool item's
      priority to its score; the hybrid also lifts the batch it selects above
      all others, in its order. Other strategies (random, core-set) give their
      selected batch the top priorities and the rest 0.
    - ``retrain_every``: how many new labels :meth:`maybe_refresh` waits for.
    - ``stop_agreement``, ``patience``: the stopping rule (see :class:`StoppingReport`).
    - ``interval``: seconds between the background thread's checks.
    - ``random_state``: seeds the default strategy; with an int, and an
      estimator with a fixed ``random_state``, refreshes are repeatable.

    Learned state: ``model_`` (the latest fitted clone, None before the first
    refresh), ``classes_``, ``report_`` (latest :class:`StoppingReport`),
    ``reports_`` (all of them), ``suggestions_`` (``{item_id: (label,
    confidence)}`` on the pool), ``last_annotation_id_`` and ``error_`` (the last
    exception the background thread met, or None).

    >>> from sklearn.linear_model import LogisticRegression
    >>> ActiveLearner("digits", LogisticRegression(), retrain_every=20)
    ActiveLearner(project='digits', estimator=LogisticRegression(), retrain_every=20)
    """

    def __init__(
        self,
        project: ProjectRef,
        estimator: Any = None,
        *,
        strategy: SamplingStrategy | None = None,
        retrain_every: int = 10,
        stop_agreement: float = 0.99,
        patience: int = 2,
        interval: float = 1.0,
        random_state: Any = None,
        engine: Engine | None = None,
    ) -> None:
        self.project = project
        self.estimator = estimator
        self.strategy = strategy
        self.retrain_every = retrain_every
        self.stop_agreement = stop_agreement
        self.patience = patience
        self.interval = interval
        self.random_state = random_state
        self.engine = engine
        self.model_: Any = None
        self.classes_: np.ndarray | None = None
        self.report_: StoppingReport | None = None
        self.reports_: list[StoppingReport] = []
        self.suggestions_: dict[int, tuple[str, float]] = {}
        self.last_annotation_id_: int | None = None
        self.error_: BaseException | None = None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._features: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        project = self.project.name if isinstance(self.project, Project) else self.project
        parts = [f"project={project!r}", f"estimator={self.estimator!r}"]
        defaults = {
            "strategy": None,
            "retrain_every": 10,
            "stop_agreement": 0.99,
            "patience": 2,
            "interval": 1.0,
            "random_state": None,
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return f"ActiveLearner({', '.join(parts)})"

    # -- parameters ------------------------------------------------------------------------

    def _check_params(self) -> None:
        name = "ActiveLearner"
        estimator = self.estimator
        if estimator is not None and not (
            hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")
        ):
            raise LearnerError(
                f"The 'estimator' parameter of {name} must be a classifier with fit and "
                f"predict_proba, such as LogisticRegression(). Got {self.estimator!r}."
            )
        from inloop.label.strategies import SamplingStrategy

        if self.strategy is not None and not isinstance(self.strategy, SamplingStrategy):
            raise LearnerError(
                f"The 'strategy' parameter of {name} must be a SamplingStrategy such as "
                f"make_strategy('margin'), or None for the default. Got {self.strategy!r}."
            )
        for param, minimum in (("retrain_every", 1), ("patience", 1)):
            value = getattr(self, param)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise LearnerError(
                    f"The '{param}' parameter of {name} must be an int >= {minimum}. Got {value!r}."
                )
        agreement = self.stop_agreement
        if (
            isinstance(agreement, bool)
            or not isinstance(agreement, numbers.Real)
            or not 0.0 < float(agreement) <= 1.0
        ):
            raise LearnerError(
                f"The 'stop_agreement' parameter of {name} must be a number in (0, 1], such "
                f"as 0.99. Got {agreement!r}."
            )
        interval = self.interval
        if (
            isinstance(interval, bool)
            or not isinstance(interval, numbers.Real)
            or not float(interval) > 0
        ):
            raise LearnerError(
                f"The 'interval' parameter of {name} must be a number of seconds > 0. "
                f"Got {interval!r}."
            )

    def _strategy(self) -> SamplingStrategy:
        from inloop.label.strategies import default_strategy

        if self.strategy is not None:
            return self.strategy
        return default_strategy(int(self.retrain_every), random_state=self.random_state)

    # -- reading the project ---------------------------------------------------------------

    def _load(self, conn: Connection) -> Project:
        record = load_project(conn, self.project)
        require_single_label(record, "ActiveLearner")
        return record

    def _read(self) -> _Data:
        engine = _engine(self.engine)
        with engine.connect() as conn, conn.begin():
            record = self._load(conn)
            last_id = self._max_annotation_id(conn, record)
            rows = conn.execute(
                select(label_items.c.item_id, label_items.c.kind, label_items.c.n_labels)
                .where(label_items.c.project_id == record.project_id)
                .order_by(label_items.c.item_id)
            ).all()
            events = conn.execute(current_query(record, up_to_id=last_id)).all() if last_id else []
        kinds = sorted({r.kind for r in rows})
        features = [r for r in rows if r.kind == "features"]
        if not features:
            found = f"items of kinds {kinds}" if kinds else "no items"
            raise LearnerError(
                f"Project {record.name!r} has {found}: an ActiveLearner needs feature items "
                "(kind 'features', e.g. from import_items(project, X)) to train and score a "
                "model on."
            )
        self._load_features(
            record, [r.item_id for r in features if r.item_id not in self._features]
        )
        item_ids = np.asarray([r.item_id for r in features], dtype=np.int64)
        widths = {self._features[int(i)].shape[0] for i in item_ids}
        if len(widths) > 1:
            raise LearnerError(
                f"The feature items of project {record.name!r} have rows of different lengths "
                f"{sorted(widths)}: a model needs one length. Put each kind of row in its own "
                "project."
            )
        X = np.vstack([self._features[int(i)] for i in item_ids])
        current = derive_current(r for r in events if r.origin in _TRAINING_ORIGINS)
        position = {int(i): p for p, i in enumerate(item_ids)}
        labeled_pairs = sorted(
            (position[item_id], c.label) for item_id, c in current.items() if item_id in position
        )
        labeled = np.asarray([p for p, _ in labeled_pairs], dtype=np.intp)
        y = np.asarray([label for _, label in labeled_pairs], dtype=object)
        pool = np.asarray(
            [p for p, r in enumerate(features) if r.n_labels < record.overlap], dtype=np.intp
        )
        return _Data(item_ids, X, labeled, y, pool, int(last_id or 0))

    @staticmethod
    def _max_annotation_id(conn: Connection, record: Project) -> int | None:
        value = conn.execute(
            select(func.max(label_annotations.c.annotation_id)).where(
                label_annotations.c.project_id == record.project_id
            )
        ).scalar()
        return None if value is None else int(value)

    def _load_features(self, record: Project, ids: list[int]) -> None:
        if not ids:
            return
        items: list[Item] = get_items(record, item_ids=ids, engine=self.engine)
        for item in items:
            payload = item_payload(item)
            self._features[item.item_id] = np.asarray(payload["features"], dtype=np.float64)

    def new_labels(self) -> int:
        """How many label events (not skips, not model suggestions) arrived since the last refresh.

        Before the first refresh, every label counts.
        """
        engine = _engine(self.engine)
        with engine.connect() as conn:
            record = self._load(conn)
            query = (
                select(func.count())
                .select_from(label_annotations)
                .where(
                    label_annotations.c.project_id == record.project_id,
                    label_annotations.c.label.is_not(None),
                    label_annotations.c.origin.in_(_TRAINING_ORIGINS),
                )
            )
            if self.last_annotation_id_ is not None:
                query = query.where(label_annotations.c.annotation_id > self.last_annotation_id_)
            return int(conn.execute(query).scalar_one())

    # -- refreshing ------------------------------------------------------------------------

    def refresh(self) -> StoppingReport | None:
        """Retrain on the current labels, rescore the pool and reorder the queue, now.

        Returns the new :class:`StoppingReport`, or None (nothing changes) while
        fewer than 2 classes are labeled.
        """
        self._check_params()
        with self._lock:
            return self._refresh()

    def maybe_refresh(self) -> StoppingReport | None:
        """:meth:`refresh` if ``retrain_every`` new labels arrived since the last one, else None.

        Until a first model could be trained (fewer than 2 classes labeled), any
        new label is enough to try again.
        """
        self._check_params()
        with self._lock:
            needed = int(self.retrain_every) if self.model_ is not None else 1
            if self.new_labels() < needed:
                return None
            return self._refresh()

    def _refresh(self) -> StoppingReport | None:
        from sklearn.base import clone

        started = time.perf_counter()
        data = self._read()
        classes = np.unique(data.y) if data.y.size else np.empty(0, dtype=object)
        if classes.shape[0] < 2:
            self.last_annotation_id_ = data.last_annotation_id
            _log.info(
                "ActiveLearner: %d labels in %d classes; waiting for 2 classes to train.",
                data.y.size,
                classes.shape[0],
            )
            return None
        model = clone(default_estimator() if self.estimator is None else self.estimator)
        X_pool = data.X[data.pool]
        with _single_threaded():
            model.fit(data.X[data.labeled], data.y.astype(str))
            proba = model.predict_proba(X_pool) if X_pool.shape[0] else None
            previous = None
            if self.model_ is not None and X_pool.shape[0]:
                previous = _predicted(self.model_, self.model_.predict_proba(X_pool))
            priorities = self._priorities(proba, X_pool, data) if proba is not None else np.empty(0)
        predicted = _predicted(model, proba) if proba is not None else np.empty(0, dtype=object)
        if priorities.size:
            pool_ids = data.item_ids[data.pool]
            set_priorities(
                self.project,
                {int(i): float(p) for i, p in zip(pool_ids, priorities, strict=True)},
                engine=self.engine,
            )
        report = self._report(data, classes, predicted, previous, time.perf_counter() - started)
        suggestions: dict[int, tuple[str, float]] = {}
        if proba is not None:
            confidence = proba.max(axis=1)
            for item_id, label, conf in zip(
                data.item_ids[data.pool], predicted, confidence, strict=True
            ):
                suggestions[int(item_id)] = (str(label), float(conf))
        self.model_ = model
        self.classes_ = np.asarray(model.classes_)
        self.suggestions_ = suggestions
        self.last_annotation_id_ = data.last_annotation_id
        self.reports_.append(report)
        self.report_ = report
        _log.info("ActiveLearner refresh %d: %s", report.refresh, report.reason)
        return report

    def _priorities(self, proba: np.ndarray, X_pool: np.ndarray, data: _Data) -> np.ndarray:
        from inloop.label.strategies import HybridSampler, UncertaintySampler

        strategy = self._strategy()
        leased_ids = {lease.item_id for lease in active_leases(self.project, engine=self.engine)}
        pool_ids = data.item_ids[data.pool]
        exclude = np.asarray([int(i) in leased_ids for i in pool_ids], dtype=bool)
        if isinstance(strategy, UncertaintySampler):
            return np.asarray(strategy.scores(proba), dtype=np.float64)
        if isinstance(strategy, HybridSampler):
            scores = np.asarray(strategy.scores(proba), dtype=np.float64)
        else:
            scores = np.zeros(proba.shape[0])
        picks = strategy.select(proba, X=X_pool, exclude=exclude)
        if picks.size:
            top = float(scores.max()) + 1.0
            scores = scores.copy()
            scores[picks] = top + np.arange(picks.size, 0, -1, dtype=np.float64)
        return scores

    def _report(
        self,
        data: _Data,
        classes: np.ndarray,
        predicted: np.ndarray,
        previous: np.ndarray | None,
        seconds: float,
    ) -> StoppingReport:
        agreement = None
        if previous is not None and predicted.size:
            agreement = float(np.mean(previous.astype(str) == predicted.astype(str)))
        before = self.report_.stable_refreshes if self.report_ is not None else 0
        threshold = float(self.stop_agreement)
        stable = before + 1 if agreement is not None and agreement >= threshold else 0
        patience = int(self.patience)
        n_pool = int(data.pool.shape[0])
        if n_pool == 0:
            should_stop, reason = True, "the pool is empty: every item has its labels"
        elif agreement is None:
            should_stop = False
            reason = f"first model on {data.y.size} labels; nothing to compare with yet"
        else:
            should_stop = stable >= patience
            verdict = (
                "predictions have stabilised; more labels stop paying"
                if should_stop
                else "predictions still changing"
                if stable == 0
                else f"stable for {stable} of {patience} refreshes"
            )
            reason = (
                f"{agreement:.1%} of {n_pool} pool items keep their predicted class "
                f"(threshold {threshold:.1%}): {verdict}"
            )
        return StoppingReport(
            refresh=len(self.reports_) + 1,
            n_labels=int(data.y.size),
            n_classes=int(classes.shape[0]),
            n_pool=n_pool,
            agreement=agreement,
            stable_refreshes=stable,
            stop_agreement=threshold,
            patience=patience,
            should_stop=should_stop,
            reason=reason,
            last_annotation_id=data.last_annotation_id,
            seconds=seconds,
            created_at=_now(),
        )

    # -- background thread -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ActiveLearner:
        """Check for new labels every ``interval`` seconds in a background thread; returns self.

        The thread refreshes when :meth:`maybe_refresh` says so. An error in a
        refresh is logged and kept in ``error_``; the thread carries on.
        Stop it with :meth:`stop`, or use the learner as a context manager.
        """
        self._check_params()
        if self.running:
            raise LearnerError(
                "This ActiveLearner is already running; call stop() before start() again."
            )
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="inloop-active-learner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the background thread, waiting up to ``timeout`` seconds for a refresh to end."""
        self._stop_event.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None

    def __enter__(self) -> ActiveLearner:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.maybe_refresh()
                self.error_ = None
            except Exception as exc:  # keep serving; the error is visible in error_
                self.error_ = exc
                _log.exception("ActiveLearner refresh failed")
            self._stop_event.wait(float(self.interval))


def _predicted(model: Any, proba: np.ndarray) -> np.ndarray:
    """The class each row of ``proba`` predicts, as the model's class labels."""
    return np.asarray(model.classes_)[np.argmax(proba, axis=1)]
