"""check_strategy: every built-in strategy passes it, and each kind of broken strategy fails it."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from inloop import testing
from inloop.errors import InloopError
from inloop.label.strategies import (
    STRATEGIES,
    HybridSampler,
    MarginSampler,
    RandomSampler,
    SamplingStrategy,
    default_strategy,
)
from inloop.testing import ContractError, check_strategy

BUILT_INS: list[SamplingStrategy] = [
    *(cls() for cls in STRATEGIES.values()),
    *(cls(batch_size=1, random_state=3) for cls in STRATEGIES.values()),
    HybridSampler(pick="uncertain", prefilter=15),
    default_strategy(1),
    default_strategy(25),
]


@pytest.mark.parametrize("strategy", BUILT_INS, ids=repr)
def test_every_built_in_strategy_passes(strategy: SamplingStrategy) -> None:
    before = strategy.get_params()
    check_strategy(strategy)
    assert strategy.get_params() == before  # the checks run on clones


# -- deliberately broken strategies, one broken rule each --------------------------


class IgnoresExclude(MarginSampler):
    def select(self, proba: Any, *, X: Any = None, n: Any = None, exclude: Any = None) -> Any:
        return super().select(proba, X=X, n=n)


class ReturnsDuplicates(MarginSampler):
    def _select(self, proba: Any, X: Any, candidates: Any, n: int) -> Any:
        return np.repeat(candidates[:1], n)


class ReturnsAList(MarginSampler):
    def select(self, proba: Any, *, X: Any = None, n: Any = None, exclude: Any = None) -> Any:
        return super().select(proba, X=X, n=n, exclude=exclude).tolist()


class IgnoresRandomState(RandomSampler):
    def _select(self, proba: Any, X: Any, candidates: Any, n: int) -> Any:
        return np.random.default_rng().choice(candidates, size=n, replace=False)


class MutatesProba(MarginSampler):
    def _select(self, proba: Any, X: Any, candidates: Any, n: int) -> Any:
        proba[candidates[0]] = 1.0 / proba.shape[1]  # "smooths" a row in place
        return super()._select(proba, X, candidates, n)


class FailsOnSmallPools(MarginSampler):
    def select(self, proba: Any, *, X: Any = None, n: Any = None, exclude: Any = None) -> Any:
        picks = super().select(proba, X=X, n=n, exclude=exclude)
        if n is not None and len(picks) < n:
            raise RuntimeError("not enough items")
        return picks


class NeedsFeaturesSilently(MarginSampler):
    def select(self, proba: Any, *, X: Any = None, n: Any = None, exclude: Any = None) -> Any:
        _ = X.shape  # AttributeError when X is None
        return super().select(proba, X=X, n=n, exclude=exclude)


class NoValidation(BaseEstimator):
    """Correct picks on good input, but garbage in is garbage out."""

    def __init__(self, *, batch_size: int = 10, random_state: Any = None) -> None:
        self.batch_size = batch_size
        self.random_state = random_state

    def select(self, proba: Any, *, X: Any = None, n: Any = None, exclude: Any = None) -> Any:
        proba = np.asarray(proba, dtype=float)
        scores = -np.abs(proba[:, 0] - 0.5)
        if exclude is not None:
            mask = np.zeros(len(proba), bool)
            mask[np.asarray(exclude)] = True
            scores[mask] = -np.inf
            available = int((~mask).sum())
        else:
            available = len(proba)
        count = min(self.batch_size if n is None else n, available)
        return np.argsort(-scores, kind="stable")[:count]


class ChangesItsParameter(MarginSampler):
    def __init__(self, *, batch_size: int = 10, random_state: Any = None) -> None:
        super().__init__(batch_size=batch_size + 0.0, random_state=random_state)  # type: ignore[arg-type]


class BadScores(MarginSampler):
    def scores(self, proba: Any) -> Any:
        return np.asarray(proba)


BROKEN: list[tuple[Any, str, str]] = [
    (IgnoresExclude(), "respects_exclude", "picked excluded items"),
    (ReturnsDuplicates(), "default_batch_size", "duplicate indices"),
    (ReturnsAList(), "default_batch_size", "must return a numpy array"),
    (IgnoresRandomState(), "deterministic", "random_state=0"),
    (MutatesProba(), "does_not_mutate_inputs", "changed its 'proba' argument"),
    (FailsOnSmallPools(), "n_larger_than_pool", "not enough items"),
    (NeedsFeaturesSilently(), "works_without_X", "AttributeError"),
    (NoValidation(), "rejects_bad_input", "must raise a ValueError"),
    (ChangesItsParameter(), "sklearn_params", "store each keyword-only parameter unchanged"),
    (BadScores(), "scores", "one finite float per row"),
    (object(), "sklearn_params", "must have a get_params() method"),
]


@pytest.mark.parametrize(("strategy", "check", "message"), BROKEN, ids=lambda v: type(v).__name__)
def test_a_broken_strategy_fails_the_check_it_breaks(
    strategy: Any, check: str, message: str
) -> None:
    with pytest.raises(ContractError) as info:
        check_strategy(strategy)
    error = info.value
    assert error.check == check
    assert f"check_strategy({type(strategy).__name__}) failed '{check}'" in str(error)
    assert message in str(error)
    assert isinstance(error, InloopError) and not isinstance(error, AssertionError)


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(testing)
    assert tried >= 2 and failures == 0
