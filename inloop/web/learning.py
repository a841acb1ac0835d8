"""The model in the loop of ``inloop server``: one background thread for every project.

A :class:`LearnerPool` keeps an :class:`~inloop.label.learner.ActiveLearner`
for each labeling project that has feature items (kind ``features``). One
thread polls them all every ``interval`` seconds and retrains a project's model
once ``retrain_every`` new labels arrived (fits run under
``threadpool_limits(1)``, so the server stays light); the model reorders the
queue, and :meth:`LearnerPool.suggestion` answers with its label and confidence
for an item, which ``POST /api/projects/{name}/next`` puts in each lease.

A project chooses its model in its settings (``projects.settings``)::

    {"model": {"estimator": "logistic_regression",   # or the artifact key of a
                                                     # pickled classifier
               "retrain_every": 10,                  # labels between refits
               "strategy": "hybrid"}}                # a name of STRATEGIES

Every key is optional. Without a ``"model"`` setting (or with ``null``) a
project with feature items gets the default model
(:func:`inloop.label.default_estimator`: logistic regression on standardized
features), retrained every 10 labels, with the default strategy
(:func:`inloop.label.default_strategy`).
``"model": false`` turns the model off for that project. A setting the pool
cannot use is logged and kept in ``errors_``; the other projects carry on.

>>> from inloop.store import get_engine
>>> from inloop.label import create_project
>>> from inloop.label.io import import_items
>>> import numpy as np
>>> engine = get_engine("sqlite://")
>>> _ = create_project("pool-doc", ["a", "b"], engine=engine)
>>> X = np.linspace(0, 1, 20).reshape(-1, 1)
>>> _ = import_items("pool-doc", X, labels=["a", "b"] + [None] * 18, engine=engine)
>>> pool = LearnerPool(engine)
>>> sorted(r.n_labels for r in pool.refresh_all().values() if r is not None)
[2]
"""

from __future__ import annotations

import json
import logging
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from inloop.label import default_estimator
from inloop.label.learner import ActiveLearner, LearnerError, StoppingReport
from inloop.label.projects import Project, list_projects
from inloop.label.tables import label_items
from inloop.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    # Imported where used: the strategies import scikit-learn, which the server
    # should not wait for before it answers (the pool's thread imports it).
    from inloop.label.strategies import SamplingStrategy

__all__ = [
    "DEFAULT_ESTIMATOR",
    "LearnerPool",
    "ModelSettingsError",
    "pool_for",
]

_log = logging.getLogger(__name__)

#: The estimator name a project's ``{"model": {"estimator": ...}}`` may give besides an
#: artifact key; it is also the default.
DEFAULT_ESTIMATOR = "logistic_regression"
_MODEL_KEYS = ("estimator", "retrain_every", "strategy")
_ARTIFACT_KEY = re.compile(r"[0-9a-f]{64}")

# The running pools by the engine they serve, so the API finds the pool of its app.
_POOLS: weakref.WeakKeyDictionary[Engine, LearnerPool] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


class ModelSettingsError(LearnerError):
    """A project's ``"model"`` setting names something the pool cannot build."""


def pool_for(engine: Engine) -> LearnerPool | None:
    """The running :class:`LearnerPool` on ``engine``, or None when no model is in the loop.

    >>> from inloop.store import get_engine
    >>> pool_for(get_engine("sqlite://")) is None
    True
    """
    with _POOLS_LOCK:
        return _POOLS.get(engine)


@dataclass(frozen=True)
class _Config:
    """One project's model setting, checked."""

    estimator: str
    retrain_every: int
    strategy: str | None

    @property
    def fingerprint(self) -> str:
        return json.dumps([self.estimator, self.retrain_every, self.strategy])


def _config(project: Project) -> _Config | None:
    """The checked ``"model"`` setting of ``project``; None when it turns the model off."""
    raw = project.settings.get("model")
    if raw is False:
        return None
    if raw is None:
        raw = {}
    where = f"The 'model' setting of project {project.name!r}"
    if not isinstance(raw, Mapping):
        raise ModelSettingsError(
            f"{where} must be an object such as {{'estimator': 'logistic_regression', "
            f"'retrain_every': 10, 'strategy': 'hybrid'}}, null (the default model) or false "
            f"(no model). Got {raw!r}."
        )
    unknown = sorted(set(raw) - set(_MODEL_KEYS))
    if unknown:
        raise ModelSettingsError(
            f"{where} has unknown keys {unknown}. Valid keys: {', '.join(_MODEL_KEYS)}."
        )
    estimator = raw.get("estimator", DEFAULT_ESTIMATOR)
    if not isinstance(estimator, str) or not (
        estimator == DEFAULT_ESTIMATOR or _ARTIFACT_KEY.fullmatch(estimator)
    ):
        raise ModelSettingsError(
            f"{where} has 'estimator' {estimator!r}; accepted: {DEFAULT_ESTIMATOR!r} or the "
            "64-hex-digit artifact key of a pickled classifier with fit and predict_proba."
        )
    every = raw.get("retrain_every", 10)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ModelSettingsError(
            f"{where} has 'retrain_every' {every!r}; accepted: an integer >= 1, such as 10."
        )
    from inloop.label.strategies import STRATEGIES

    strategy = raw.get("strategy")
    name = strategy.strip().lower().replace("-", "_") if isinstance(strategy, str) else None
    if strategy is not None and name not in STRATEGIES:
        raise ModelSettingsError(
            f"{where} has 'strategy' {strategy!r}; accepted: null (the default) or one of "
            f"{', '.join(sorted(STRATEGIES))}."
        )
    return _Config(estimator, every, strategy)


class LearnerPool:
    """Active learners for every project with feature items, on one background thread.

    - ``engine``: the metadata database the projects live in.
    - ``interval``: seconds between the thread's polls of all projects.
    - ``artifacts``: where estimator artifact keys are looked up (default: the
      configured artifact store, opened on first need).

    Learned state: ``learners_`` (``{project_id: ActiveLearner}``), ``errors_``
    (``{project_id: exception}`` of the latest failed setting or refresh).

    >>> from inloop.store import get_engine
    >>> LearnerPool(get_engine("sqlite://"), interval=5.0).running
    False
    """

    def __init__(
        self, engine: Engine, *, interval: float = 2.0, artifacts: ArtifactStore | None = None
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise LearnerError(
                f"The 'interval' parameter of LearnerPool must be a number of seconds > 0. "
                f"Got {interval!r}."
            )
        self.engine = engine
        self.interval = float(interval)
        self.artifacts = artifacts
        self.learners_: dict[int, ActiveLearner] = {}
        self.errors_: dict[int, BaseException] = {}
        self._fingerprints: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LearnerPool(engine={self.engine!r}, interval={self.interval!r})"

    # -- projects --------------------------------------------------------------------------

    def _feature_projects(self) -> set[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(label_items.c.project_id)
                .where(label_items.c.kind == "features")
                .group_by(label_items.c.project_id)
            ).all()
        return {int(r.project_id) for r in rows}

    def _estimator(self, config: _Config) -> Any:
        if config.estimator == DEFAULT_ESTIMATOR:
            return default_estimator()
        if self.artifacts is None:
            from inloop.store.artifacts import open_artifact_store

            self.artifacts = open_artifact_store()
        # The server unpickles it: only the very blob its key names (see ArtifactStore.get).
        estimator = self.artifacts.get(config.estimator, verify=True)
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise ModelSettingsError(
                f"The artifact {config.estimator!r} named as 'estimator' holds "
                f"{type(estimator).__name__}, not a classifier with fit and predict_proba."
            )
        return estimator

    def _learner(self, project: Project, config: _Config) -> ActiveLearner:
        from inloop.label.strategies import make_strategy

        strategy: SamplingStrategy | None = None
        if config.strategy is not None:
            strategy = make_strategy(config.strategy, batch_size=config.retrain_every)
        return ActiveLearner(
            project.project_id,
            self._estimator(config),
            strategy=strategy,
            retrain_every=config.retrain_every,
            engine=self.engine,
        )

    def sync(self) -> dict[int, ActiveLearner]:
        """Match the learners to the projects and their settings now; returns ``learners_``.

        A single-label project gains a learner when it has feature items and a
        usable setting, and gets a new one when its setting changes; multi-label
        projects get none.
        """
        with_features = self._feature_projects()
        # An ActiveLearner handles single-label projects only: skip the others quietly.
        projects = [
            p
            for p in list_projects(engine=self.engine)
            if p.project_id in with_features and p.task_type == "single_label"
        ]
        with self._lock:
            wanted: set[int] = set()
            for project in projects:
                pid = project.project_id
                try:
                    config = _config(project)
                    if config is None:
                        continue
                    wanted.add(pid)
                    if self._fingerprints.get(pid) == config.fingerprint and pid in self.learners_:
                        continue
                    self.learners_[pid] = self._learner(project, config)
                    self._fingerprints[pid] = config.fingerprint
                    self.errors_.pop(pid, None)
                except Exception as exc:  # a bad setting must not stop the other projects
                    self._failed(pid, exc, "cannot build the model of project %r", project.name)
            for pid in set(self.learners_) - wanted:
                del self.learners_[pid]
                self._fingerprints.pop(pid, None)
            return dict(self.learners_)

    def _failed(self, pid: int, exc: BaseException, message: str, *args: object) -> None:
        previous = self.errors_.get(pid)
        self.errors_[pid] = exc
        if previous is None or str(previous) != str(exc):  # log each new error once
            _log.warning(message + ": %s", *args, exc)

    # -- refreshing ------------------------------------------------------------------------

    def _each(self, force: bool) -> dict[int, StoppingReport | None]:
        reports: dict[int, StoppingReport | None] = {}
        for pid, learner in self.sync().items():
            if self._stop_event.is_set() and not force:
                break
            try:
                reports[pid] = learner.refresh() if force else learner.maybe_refresh()
                if self.errors_.get(pid) is not None:
                    self.errors_.pop(pid, None)
            except Exception as exc:  # keep serving the other projects
                self._failed(pid, exc, "refreshing the model of project %d failed", pid)
        return reports

    def refresh_all(self) -> dict[int, StoppingReport | None]:
        """Retrain every project's model now, whatever the count of new labels.

        Returns ``{project_id: StoppingReport or None}`` (None: fewer than 2
        classes labeled yet); projects whose refresh failed are left out and
        their error is in ``errors_``.
        """
        return self._each(force=True)

    def poll(self) -> dict[int, StoppingReport | None]:
        """One round of the background thread: refresh the projects with enough new labels."""
        return self._each(force=False)

    def suggestion(self, project_id: int, item_id: int) -> tuple[str, float] | None:
        """The latest model's ``(label, confidence)`` for an item, or None when it has none.

        The confidence is the model's highest class probability, in (0, 1].
        Items labeled or added since the project's last refresh have none.
        """
        with self._lock:
            learner = self.learners_.get(project_id)
        if learner is None:
            return None
        return learner.suggestions_.get(item_id)

    # -- background thread -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LearnerPool:
        """Poll every ``interval`` seconds in a background thread, and serve suggestions."""
        if self.running:
            raise LearnerError("This LearnerPool is already running; call stop() first.")
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="inloop-learner-pool", daemon=True)
        with _POOLS_LOCK:
            _POOLS[self.engine] = self
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for a refresh under way."""
        self._stop_event.set()
        with _POOLS_LOCK:
            if _POOLS.get(self.engine) is self:
                del _POOLS[self.engine]
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None

    def _run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll()
            except Exception:  # the database may be away for a moment: try again later
                _log.exception("LearnerPool: polling the projects failed")
            self._stop_event.wait(self.interval)
