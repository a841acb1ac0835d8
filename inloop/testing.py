"""Contract checks for inloop's pluggable pieces, like scikit-learn's ``check_estimator``.

Every built-in sampling strategy passes :func:`check_strategy` in the test
suite; run it on your own strategy before plugging it into a labeling project.
A failed check raises :class:`ContractError` whose message names the check,
what was expected and what the strategy did.

>>> from inloop.label.strategies import MarginSampler
>>> check_strategy(MarginSampler())  # passes silently
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from inloop.errors import InloopError

__all__ = ["ContractError", "check_strategy"]

_POOL = 60
_CLASSES = 3
_FEATURES = 4


class ContractError(InloopError):
    """A pluggable object broke the contract of its extension point.

    ``check`` is the name of the failed check (such as ``"respects_exclude"``).
    """

    def __init__(self, message: str, *, check: str) -> None:
        super().__init__(message)
        self.check = check


class _Checker:
    """Runs the checks on one strategy and turns every failure into a ContractError."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.name = type(strategy).__name__
        rng = np.random.RandomState(0)
        logits = rng.normal(scale=2.0, size=(_POOL, _CLASSES))
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        self._proba = proba / proba.sum(axis=1, keepdims=True)
        self._X = rng.normal(size=(_POOL, _FEATURES))

    # Each check gets fresh copies, so a strategy that writes into its inputs cannot
    # change what later checks see; ``no_mutation`` compares against the originals.
    @property
    def proba(self) -> np.ndarray:
        return self._proba.copy()

    @property
    def X(self) -> np.ndarray:
        return self._X.copy()

    def fail(self, check: str, message: str) -> ContractError:
        return ContractError(
            f"check_strategy({self.name}) failed '{check}': {message}", check=check
        )

    def fresh(self) -> Any:
        """A clone of the strategy with ``random_state=0`` when it has that parameter."""
        from sklearn.base import clone

        copy = clone(self.strategy)
        if "random_state" in copy.get_params():
            copy.set_params(random_state=0)
        return copy

    def call(self, check: str, strategy: Any, proba: Any, **kwargs: Any) -> np.ndarray:
        """``strategy.select(...)``, with an error turned into a failure of ``check``."""
        try:
            result = strategy.select(proba, **kwargs)
        except Exception as exc:
            raise self.fail(
                check, f"select raised {type(exc).__name__}: {exc} (arguments: {sorted(kwargs)})"
            ) from exc
        return result

    def valid_indices(
        self, check: str, result: Any, *, n_rows: int, expected: int, allowed: np.ndarray
    ) -> np.ndarray:
        """``result`` is a 1-D int array of ``expected`` unique positions within ``allowed``."""
        if not isinstance(result, np.ndarray):
            raise self.fail(check, f"select must return a numpy array. Got {type(result)}.")
        if result.ndim != 1 or result.dtype.kind not in "iu":
            raise self.fail(
                check,
                f"select must return a 1-D array of ints. Got shape {result.shape}, "
                f"dtype {result.dtype}.",
            )
        if result.shape[0] != expected:
            raise self.fail(
                check, f"select must return {expected} indices here. Got {result.shape[0]}."
            )
        if np.unique(result).shape[0] != result.shape[0]:
            raise self.fail(check, f"select returned duplicate indices: {result.tolist()}.")
        if result.size and (result.min() < 0 or result.max() >= n_rows):
            raise self.fail(
                check, f"select returned indices outside [0, {n_rows}): {result.tolist()}."
            )
        forbidden = result[~allowed[result]] if result.size else result
        if forbidden.size:
            raise self.fail(check, f"select picked excluded items {forbidden.tolist()}.")
        return result

    # -- the checks ------------------------------------------------------------

    def has_params(self) -> None:
        check = "sklearn_params"
        for method in ("get_params", "set_params", "select"):
            if not callable(getattr(self.strategy, method, None)):
                raise self.fail(
                    check,
                    f"a strategy must have a {method}() method (subclass "
                    f"inloop.label.strategies.SamplingStrategy or sklearn.base.BaseEstimator).",
                )
        from sklearn.base import clone

        try:
            copy = clone(self.strategy)
        except Exception as exc:
            raise self.fail(
                check,
                f"sklearn.base.clone failed ({type(exc).__name__}: {exc}); __init__ must "
                f"store each keyword-only parameter unchanged under its own name.",
            ) from exc
        params, cloned = self.strategy.get_params(), copy.get_params()
        if set(params) != set(cloned) or any(
            params[k] is not cloned[k] and params[k] != cloned[k] for k in params
        ):
            raise self.fail(check, f"a clone has other parameters: {params} != {cloned}.")

    def default_batch(self) -> None:
        check = "default_batch_size"
        strategy = self.fresh()
        batch = strategy.get_params().get("batch_size")
        if batch is None:
            return
        result = self.call(check, strategy, self.proba, X=self.X)
        self.valid_indices(
            check, result, n_rows=_POOL, expected=min(batch, _POOL), allowed=np.ones(_POOL, bool)
        )

    def respects_n_and_exclude(self) -> None:
        check = "respects_exclude"
        strategy = self.fresh()
        excluded = np.arange(0, _POOL, 3)
        allowed = np.ones(_POOL, dtype=bool)
        allowed[excluded] = False
        for n in (1, 5):
            by_index = self.call(check, strategy, self.proba, X=self.X, n=n, exclude=excluded)
            self.valid_indices(check, by_index, n_rows=_POOL, expected=n, allowed=allowed)
            by_mask = self.call(check, strategy, self.proba, X=self.X, n=n, exclude=~allowed)
            self.valid_indices(check, by_mask, n_rows=_POOL, expected=n, allowed=allowed)
            if not np.array_equal(by_index, by_mask):
                raise self.fail(
                    check,
                    f"exclude as an index array and as the equivalent boolean mask gave "
                    f"different picks: {by_index.tolist()} != {by_mask.tolist()}.",
                )

    def n_beyond_pool(self) -> None:
        check = "n_larger_than_pool"
        strategy = self.fresh()
        allowed = np.ones(_POOL, dtype=bool)
        allowed[: _POOL - 7] = False
        result = self.call(
            check, strategy, self.proba, X=self.X, n=_POOL, exclude=np.flatnonzero(~allowed)
        )
        self.valid_indices(check, result, n_rows=_POOL, expected=7, allowed=allowed)
        everything = self.call(check, strategy, self.proba, X=self.X, n=_POOL + 10)
        self.valid_indices(
            check, everything, n_rows=_POOL, expected=_POOL, allowed=np.ones(_POOL, bool)
        )
        none_left = self.call(
            check, strategy, self.proba, X=self.X, n=3, exclude=np.ones(_POOL, bool)
        )
        self.valid_indices(check, none_left, n_rows=_POOL, expected=0, allowed=allowed)

    def deterministic(self) -> None:
        check = "deterministic"
        first = self.call(check, self.fresh(), self.proba, X=self.X, n=6, exclude=[0, 1])
        again_strategy = self.fresh()
        second = self.call(check, again_strategy, self.proba, X=self.X, n=6, exclude=[0, 1])
        third = self.call(check, again_strategy, self.proba, X=self.X, n=6, exclude=[0, 1])
        if not (np.array_equal(first, second) and np.array_equal(second, third)):
            raise self.fail(
                check,
                f"with random_state=0 the same call gave {first.tolist()}, {second.tolist()} "
                f"and {third.tolist()}; seed every random choice from random_state.",
            )

    def no_mutation(self) -> None:
        check = "does_not_mutate_inputs"
        proba, X = self.proba.copy(), self.X.copy()
        exclude = np.array([3, 4, 5])
        self.call(check, self.fresh(), proba, X=X, n=5, exclude=exclude)
        for name, given, original in (
            ("proba", proba, self._proba),
            ("X", X, self._X),
            ("exclude", exclude, np.array([3, 4, 5])),
        ):
            if not np.array_equal(given, original):
                raise self.fail(check, f"select changed its '{name}' argument in place.")
        readonly = [a.copy() for a in (self.proba, self.X)]
        for array in readonly:
            array.flags.writeable = False
        self.call(check, self.fresh(), readonly[0], X=readonly[1], n=5)

    def works_without_features(self) -> None:
        check = "works_without_X"
        try:
            result = self.fresh().select(self.proba, n=4)
        except ValueError as exc:
            if "'X'" in str(exc):
                return  # a strategy may require features, if it says so clearly
            raise self.fail(check, f"select without X raised ValueError: {exc}") from exc
        except Exception as exc:
            raise self.fail(
                check,
                f"select without X raised {type(exc).__name__}: {exc}; use the probabilities "
                f"or raise a ValueError naming 'X'.",
            ) from exc
        self.valid_indices(check, result, n_rows=_POOL, expected=4, allowed=np.ones(_POOL, bool))

    def rejects_bad_input(self) -> None:
        check = "rejects_bad_input"
        nan = self.proba.copy()
        nan[2, 1] = np.nan
        cases: list[tuple[str, Any, dict[str, Any]]] = [
            ("a 1-D proba", self.proba[:, 0], {}),
            ("a proba with one column", np.ones((_POOL, 1)), {}),
            ("a proba holding NaN", nan, {}),
            ("a proba whose rows do not sum to 1", self.proba * 2.0, {}),
            ("negative probabilities", self.proba - self.proba.max(), {}),
            ("X with the wrong number of rows", self.proba, {"X": self.X[:-1]}),
            ("n=0", self.proba, {"n": 0}),
            ("an exclude index out of range", self.proba, {"exclude": [_POOL + 5]}),
        ]
        for what, proba, kwargs in cases:
            kwargs = {"X": self.X, **kwargs}
            try:
                self.fresh().select(proba, **kwargs)
            except ValueError as exc:
                if not str(exc).strip():
                    raise self.fail(check, f"the error for {what} has no message.") from exc
                continue
            except Exception as exc:
                raise self.fail(
                    check, f"{what} must raise a ValueError. Got {type(exc).__name__}: {exc}"
                ) from exc
            raise self.fail(check, f"{what} was accepted; select must raise a ValueError.")

    def scores_if_offered(self) -> None:
        check = "scores"
        scores_method = getattr(self.strategy, "scores", None)
        if scores_method is None:
            return
        try:
            scores = np.asarray(self.fresh().scores(self.proba))
        except Exception as exc:
            raise self.fail(check, f"scores(proba) raised {type(exc).__name__}: {exc}") from exc
        if scores.shape != (_POOL,) or scores.dtype.kind != "f" or not np.isfinite(scores).all():
            raise self.fail(
                check,
                f"scores(proba) must return one finite float per row ({_POOL}). "
                f"Got shape {scores.shape}, dtype {scores.dtype}.",
            )


def check_strategy(strategy: Any) -> None:
    """Check that ``strategy`` keeps the sampling-strategy contract; raise ContractError if not.

    The checks, each named in a failure's message and in ``ContractError.check``:

    - ``sklearn_params``: ``get_params``/``set_params`` exist and ``sklearn.base.clone``
      reproduces the parameters (``__init__`` stores them unchanged);
    - ``deterministic``: with ``random_state=0`` repeated calls return the same picks;
    - ``default_batch_size``: ``select(proba)`` returns ``batch_size`` indices;
    - ``respects_exclude``: ``n`` unique int indices, none excluded, the same for an
      index array and the equivalent boolean mask;
    - ``n_larger_than_pool``: asking for more than is available returns all of it,
      and nothing when everything is excluded;
    - ``does_not_mutate_inputs``: ``proba``, ``X`` and ``exclude`` are left unchanged,
      and read-only arrays work;
    - ``works_without_X``: ``X=None`` works, or raises a ValueError naming 'X';
    - ``rejects_bad_input``: malformed probabilities, mismatched ``X``, ``n=0`` and
      an out-of-range exclude index raise a ValueError with a message;
    - ``scores``: if offered, ``scores(proba)`` gives one finite float per row.

    The strategy itself is not changed: every check runs on a clone.

    >>> from inloop.label.strategies import HybridSampler
    >>> check_strategy(HybridSampler(batch_size=3))
    """
    checker = _Checker(strategy)
    checker.has_params()
    checks: list[Callable[[], None]] = [
        checker.deterministic,
        checker.default_batch,
        checker.respects_n_and_exclude,
        checker.n_beyond_pool,
        checker.no_mutation,
        checker.works_without_features,
        checker.rejects_bad_input,
        checker.scores_if_offered,
    ]
    for run_check in checks:
        run_check()
