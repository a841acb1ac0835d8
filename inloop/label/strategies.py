"""Active-learning sampling strategies: which unlabeled items people should label next.

A strategy looks at a model's predicted class probabilities on the pool of
unlabeled items (and, for the diversity strategies, at their features) and
returns the positions of the items worth labeling, most valuable first. Every
strategy is a small scikit-learn-style object with one hook::

    strategy.select(proba, *, X=None, n=None, exclude=None) -> indices

- ``proba``: the model's ``predict_proba`` on the pool, shape (n_items, n_classes).
- ``X``: the items' features, shape (n_items, n_features); used by the diversity
  strategies (hybrid, core-set), ignored by the others.
- ``n``: how many to pick; ``None`` means the strategy's ``batch_size``.
- ``exclude``: items that must not be picked (already labeled, leased to an
  annotator), as an index array or a boolean mask over the pool.

The result holds ``min(n, available)`` unique positions into the pool.

Which one to use:

- ``MarginSampler`` (the default for single picks): the items whose two most
  likely classes are closest. The strongest plain uncertainty measure with many
  classes and few labels.
- ``HybridSampler`` (the default for batches): the most uncertain items by margin,
  then one item per k-means cluster among them, so a batch does not spend ten
  labels on ten copies of the same confusion.
- ``LeastConfidenceSampler``, ``EntropySampler``: the other classic uncertainty
  measures; with many classes and few seed labels they start below random.
- ``RandomSampler``: the baseline every other strategy must beat.
- ``CoreSetSampler``: greedy k-center on the features. Offered for comparison;
  on the data sets tried it was worse than random, so it is never a default.

Uncertainty strategies (least confidence, margin, entropy, and the hybrid's
prefilter) also offer ``scores(proba)``, higher meaning more worth labeling, so
a queue can be ordered by them.

To write a strategy, subclass :class:`SamplingStrategy`, store your
keyword-only parameters unchanged in ``__init__`` and implement
``_select(proba, X, candidates, n)``; the base class validates the inputs and
turns ``exclude`` into the candidate positions. Then run
``inloop.testing.check_strategy`` on it.

>>> import numpy as np
>>> from inloop.label.strategies import default_strategy, make_strategy
>>> proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
>>> make_strategy("margin").select(proba, n=2).tolist()
[1, 2]
>>> default_strategy(1)
MarginSampler(batch_size=1)
"""

from __future__ import annotations

import numbers
import warnings
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from inloop.errors import InloopError

__all__ = [
    "STRATEGIES",
    "CoreSetSampler",
    "EntropySampler",
    "HybridSampler",
    "LeastConfidenceSampler",
    "MarginSampler",
    "RandomSampler",
    "SamplingStrategy",
    "StrategyError",
    "UncertaintySampler",
    "check_proba",
    "default_strategy",
    "make_strategy",
]

PROBA_TOLERANCE = 1e-3
"""How far a row of ``proba`` may sum from 1 (float32 softmax output passes)."""

_MAX_SEED = np.iinfo(np.int32).max
_CHUNK = 65_536  # rows per block when computing distances, to bound memory


class StrategyError(InloopError, ValueError):
    """A sampling strategy got a parameter or an input it cannot use.

    The message names the parameter or argument, the value, and what would be
    accepted.
    """


# ---------------------------------------------------------------------------
# Validation helpers


def _owner(obj: object, method: str) -> str:
    return f"{type(obj).__name__}.{method}"


def _check_int(value: object, name: str, owner: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise StrategyError(
            f"The '{name}' parameter of {owner} must be an int >= {minimum}. Got {value!r}."
        )
    return int(value)


def _random_state(value: object, owner: str) -> np.random.RandomState:
    """A RandomState for ``random_state``: None (global), an int seed, or a RandomState."""
    if value is None:
        return np.random.mtrand._rand
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0:
        return np.random.RandomState(int(value))
    if isinstance(value, np.random.RandomState):
        return value
    raise StrategyError(
        f"The 'random_state' parameter of {owner} must be None, an int >= 0 or a "
        f"numpy.random.RandomState. Got {value!r}."
    )


def check_proba(proba: object, owner: str = "select") -> np.ndarray:
    """Validate predicted class probabilities and return them as a float array.

    ``proba`` must be 2-D with at least 2 columns, finite, non-negative, and
    each row must sum to 1 within ``PROBA_TOLERANCE``. Float arrays are not
    copied; other numeric arrays are converted to float64.

    >>> check_proba([[0.25, 0.75]]).dtype
    dtype('float64')
    """
    try:
        array = np.asarray(proba)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise StrategyError(
            f"The 'proba' argument of {owner} must be a 2-D array of class probabilities. "
            f"It could not be read as an array: {exc}"
        ) from None
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        raise StrategyError(
            f"The 'proba' argument of {owner} must hold numbers (class probabilities). "
            f"Got dtype {array.dtype}."
        )
    if array.ndim != 2 or array.shape[1] < 2:
        raise StrategyError(
            f"The 'proba' argument of {owner} must be a 2-D array of shape "
            f"(n_items, n_classes) with n_classes >= 2, such as predict_proba(X). "
            f"Got shape {array.shape}."
        )
    if array.shape[0] == 0:
        return array
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise StrategyError(
            f"The 'proba' argument of {owner} must be finite. Row {row} holds NaN or inf: "
            f"{array[row].tolist()}."
        )
    if array.min() < -PROBA_TOLERANCE:
        row = int(np.flatnonzero((array < -PROBA_TOLERANCE).any(axis=1))[0])
        raise StrategyError(
            f"The 'proba' argument of {owner} must hold probabilities >= 0. "
            f"Row {row} is {array[row].tolist()}."
        )
    deviation = np.abs(array.sum(axis=1) - 1.0)
    worst = int(np.argmax(deviation))
    if deviation[worst] > PROBA_TOLERANCE:
        raise StrategyError(
            f"Each row of the 'proba' argument of {owner} must sum to 1 "
            f"(within {PROBA_TOLERANCE}). Row {worst} sums to {float(array[worst].sum()):.6g}; "
            f"pass predict_proba output, not decision_function scores or logits."
        )
    return array


def _check_features(X: object, n_rows: int, owner: str) -> np.ndarray:
    """``X`` as a 2-D numeric array with one row per pool item (finiteness checked later)."""
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise StrategyError(
            f"The 'X' argument of {owner} must be a 2-D array of features. "
            f"It could not be read as an array: {exc}"
        ) from None
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[0] != n_rows:
        raise StrategyError(
            f"The 'X' argument of {owner} must be a numeric 2-D array with one row per "
            f"row of 'proba' ({n_rows}). Got shape {array.shape} and dtype {array.dtype}."
        )
    return array


def _finite_features(features: np.ndarray, owner: str) -> np.ndarray:
    """``features`` as floats (float32 kept), refusing NaN or inf; call on the rows used."""
    if features.dtype.kind != "f":
        features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise StrategyError(
            f"The 'X' argument of {owner} must be finite; the rows it uses hold NaN or inf."
        )
    return features


def _candidates(exclude: object, n_rows: int, owner: str) -> np.ndarray | None:
    """The positions that may be picked, or None when every row may be."""
    if exclude is None:
        return None
    array = np.asarray(exclude)
    if array.size == 0 and array.ndim == 1:
        return None
    if array.dtype.kind == "b":
        if array.shape != (n_rows,):
            raise StrategyError(
                f"The 'exclude' argument of {owner} as a boolean mask must have one entry "
                f"per row of 'proba' ({n_rows}). Got shape {array.shape}."
            )
        return np.flatnonzero(~array)
    if array.dtype.kind not in "iu" or array.ndim != 1:
        raise StrategyError(
            f"The 'exclude' argument of {owner} must be a 1-D array of row indices or a "
            f"boolean mask of length {n_rows}. Got shape {array.shape} and dtype {array.dtype}."
        )
    if array.min() < 0 or array.max() >= n_rows:
        bad = int(array[(array < 0) | (array >= n_rows)][0])
        raise StrategyError(
            f"The 'exclude' argument of {owner} holds index {bad}; indices must be in "
            f"[0, {n_rows})."
        )
    available = np.ones(n_rows, dtype=bool)
    available[array] = False
    return np.flatnonzero(available)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, highest first, ties to the lower position.

    Uses ``argpartition`` (linear time), then sorts only the ``n`` chosen.
    """
    size = scores.shape[0]
    n = min(n, size)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    if n < size:
        threshold = scores[np.argpartition(scores, size - n)[size - n]]
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)[: n - above.shape[0]]
        chosen = np.concatenate([above, tied])
    else:
        chosen = np.arange(size)
    # lexsort: last key is primary (score descending), then position ascending.
    return chosen[np.lexsort((chosen, -scores[chosen]))]


def _margin_scores(proba: np.ndarray) -> np.ndarray:
    """1 minus the gap between the two most likely classes (higher = more uncertain)."""
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


# ---------------------------------------------------------------------------
# Base classes


class SamplingStrategy(BaseEstimator, ABC):
    """Base of every sampling strategy: picks pool items worth labeling.

    Subclasses store keyword-only parameters unchanged in ``__init__`` (validated
    when ``select`` runs, scikit-learn style) and implement ``_select``. Parameters
    shared by all: ``batch_size`` (how many ``select`` returns when ``n`` is not
    given, default 10) and ``random_state`` (None, an int seed or a
    ``numpy.random.RandomState``; an int makes every call repeatable).

    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4]])
    >>> MarginSampler(batch_size=2).select(proba, exclude=[1]).tolist()
    [2, 0]
    """

    def __init__(self, *, batch_size: int = 10, random_state: Any = None) -> None:
        self.batch_size = batch_size
        self.random_state = random_state

    def select(
        self,
        proba: Any,
        *,
        X: Any = None,
        n: int | None = None,
        exclude: Any = None,
    ) -> np.ndarray:
        """Positions of the pool items to label next, most valuable first.

        ``proba`` is the model's ``predict_proba`` on the pool; ``X`` the pool's
        features (used by diversity strategies); ``n`` how many (default
        ``batch_size``); ``exclude`` an index array or boolean mask of items not
        to pick. Returns ``min(n, available)`` unique int positions.
        """
        owner = _owner(self, "select")
        if n is None:
            count = _check_int(self.batch_size, "batch_size", type(self).__name__)
        else:
            count = _check_int(n, "n", owner)
        checked = check_proba(proba, owner)
        n_rows = checked.shape[0]
        features = None if X is None else _check_features(X, n_rows, owner)
        candidates = _candidates(exclude, n_rows, owner)
        self._check_params()
        if candidates is None:
            candidates = np.arange(n_rows)
        if candidates.shape[0] == 0:
            return np.empty(0, dtype=np.intp)
        picked = self._select(checked, features, candidates, min(count, candidates.shape[0]))
        return np.asarray(picked, dtype=np.intp)

    def _check_params(self) -> None:
        """Validate the strategy's own parameters; extend in subclasses with more."""
        _random_state(self.random_state, type(self).__name__)

    @abstractmethod
    def _select(
        self, proba: np.ndarray, X: np.ndarray | None, candidates: np.ndarray, n: int
    ) -> np.ndarray:
        """Pick ``n`` of ``candidates`` (sorted positions, never empty, ``n <= len``)."""


class UncertaintySampler(SamplingStrategy):
    """Base of strategies that rank items by one uncertainty score per item.

    Implement ``_scores(proba)``; ``select`` returns the ``n`` highest-scoring
    candidates, highest first, ties to the lower position. ``scores(proba)`` is
    public so a queue can be ordered by it.
    """

    def scores(self, proba: Any) -> np.ndarray:
        """How worth labeling each row of ``proba`` is; higher = more uncertain.

        >>> LeastConfidenceSampler().scores([[0.9, 0.1], [0.5, 0.5]]).tolist()
        [0.09999999999999998, 0.5]
        """
        return self._scores(check_proba(proba, _owner(self, "scores")))

    @abstractmethod
    def _scores(self, proba: np.ndarray) -> np.ndarray: ...

    def _select(
        self, proba: np.ndarray, X: np.ndarray | None, candidates: np.ndarray, n: int
    ) -> np.ndarray:
        scores = self._scores(proba)
        if candidates.shape[0] < proba.shape[0]:
            return candidates[_top(scores[candidates], n)]
        return _top(scores, n)


# ---------------------------------------------------------------------------
# Strategies


class RandomSampler(SamplingStrategy):
    """Pick uniformly at random among the available items: the baseline.

    >>> import numpy as np
    >>> proba = np.full((5, 2), 0.5)
    >>> RandomSampler(batch_size=3, random_state=0).select(proba).tolist()
    [2, 0, 1]
    """

    def _select(
        self, proba: np.ndarray, X: np.ndarray | None, candidates: np.ndarray, n: int
    ) -> np.ndarray:
        rng = _random_state(self.random_state, type(self).__name__)
        return rng.choice(candidates, size=n, replace=False)


class LeastConfidenceSampler(UncertaintySampler):
    """Pick the items whose most likely class has the lowest probability.

    Score: ``1 - max(p)``.

    >>> LeastConfidenceSampler(batch_size=1).select([[0.7, 0.3], [0.4, 0.6]]).tolist()
    [1]
    """

    def _scores(self, proba: np.ndarray) -> np.ndarray:
        return 1.0 - proba.max(axis=1)


class MarginSampler(UncertaintySampler):
    """Pick the items whose two most likely classes are closest: the default single pick.

    Score: ``1 - (p_first - p_second)``; 1 when the model cannot tell the top
    two classes apart, 0 when it is certain.

    >>> MarginSampler(batch_size=1).select([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25]]).tolist()
    [1]
    """

    def _scores(self, proba: np.ndarray) -> np.ndarray:
        return _margin_scores(proba)


class EntropySampler(UncertaintySampler):
    """Pick the items whose predicted distribution has the highest Shannon entropy.

    Score: ``-sum(p * log p)`` in nats (``0 log 0 = 0``).

    >>> EntropySampler(batch_size=1).select([[0.5, 0.5, 0.0], [0.6, 0.2, 0.2]]).tolist()
    [1]
    """

    def _scores(self, proba: np.ndarray) -> np.ndarray:
        safe = np.where(proba > 0, proba, 1.0)
        return -(proba * np.log(safe)).sum(axis=1)


class HybridSampler(SamplingStrategy):
    """Uncertain and diverse: margin prefilter, then one pick per k-means cluster.

    The default for batches. For a batch of ``n``:

    1. keep the ``prefilter`` candidates with the highest margin score
       (``None``: ``prefilter_factor * n``, 20 * n by default; at least ``n``);
    2. cluster them into ``n`` groups with k-means on their features ``X``
       (on ``proba`` when ``X`` is not given);
    3. from each cluster take the member closest to its centre
       (``pick="center"``) or its most uncertain member (``pick="uncertain"``);
       a cluster left empty is made up for by the next most uncertain item;
    4. return the picks ordered by margin score, most uncertain first.

    Only the prefiltered rows are clustered, so the cost is one pass over
    ``proba`` plus a k-means on ``prefilter`` rows, whatever the pool size.
    With an int ``random_state`` the k-means, and so the result, is repeatable.

    Defaults, tuned on scikit-learn's digits (``benchmarks/labeling.py``:
    LogisticRegression, 20 seed labels, batches of 10) on seeds 5-14, kept apart
    from the benchmark's seeds 0-4. Mean labels to reach 95 % of full-data
    accuracy (margin alone: 98 on seeds 0-4):

    ================  ===  ===  ===  ===  ===  ===
    prefilter_factor    5   10   15   20   30   40
    ================  ===  ===  ===  ===  ===  ===
    pick="center"      76   74   70   67   68   76
    ================  ===  ===  ===  ===  ===  ===

    ``pick="uncertain"`` did worse (76-88 on seeds 0-4 against 72-74 for
    "center"). So the default prefilter is the top 200 for a batch of 10 and
    the pick is the member closest to its cluster's centre. Between 10 and 30
    the differences are within a few labels; a much wider prefilter trades
    away too much uncertainty.

    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = np.concatenate([rng.normal(c, 0.1, size=(20, 2)) for c in (0, 5, 10)])
    >>> proba = np.full((60, 2), 0.5)
    >>> hybrid = HybridSampler(batch_size=3, prefilter=60, random_state=0)
    >>> picks = hybrid.select(proba, X=X)
    >>> sorted(int(i) // 20 for i in picks)  # one item from each of the three blobs
    [0, 1, 2]
    """

    def __init__(
        self,
        *,
        batch_size: int = 10,
        random_state: Any = None,
        prefilter: int | None = None,
        prefilter_factor: int = 20,
        pick: str = "center",
    ) -> None:
        super().__init__(batch_size=batch_size, random_state=random_state)
        self.prefilter = prefilter
        self.prefilter_factor = prefilter_factor
        self.pick = pick

    PICKS = ("center", "uncertain")

    def _check_params(self) -> None:
        super()._check_params()
        name = type(self).__name__
        if self.prefilter is not None:
            _check_int(self.prefilter, "prefilter", name)
        _check_int(self.prefilter_factor, "prefilter_factor", name)
        if self.pick not in self.PICKS:
            raise StrategyError(
                f"The 'pick' parameter of {name} must be one of {list(self.PICKS)}. "
                f"Got {self.pick!r}."
            )

    def scores(self, proba: Any) -> np.ndarray:
        """The margin scores the prefilter ranks by; use them to order a queue.

        >>> HybridSampler().scores([[0.9, 0.1], [0.5, 0.5]]).tolist()
        [0.19999999999999996, 1.0]
        """
        return _margin_scores(check_proba(proba, _owner(self, "scores")))

    def _select(
        self, proba: np.ndarray, X: np.ndarray | None, candidates: np.ndarray, n: int
    ) -> np.ndarray:
        owner = _owner(self, "select")
        size = self.prefilter if self.prefilter is not None else self.prefilter_factor * n
        size = max(size, n)
        scores = _margin_scores(proba)
        if candidates.shape[0] < proba.shape[0]:
            top = candidates[_top(scores[candidates], size)]
        else:
            top = _top(scores, size)
        if top.shape[0] <= n:
            return top[:n]
        source = proba if X is None else X
        features = _finite_features(source[top], owner)
        rng = _random_state(self.random_state, type(self).__name__)
        kmeans = KMeans(n_clusters=n, n_init=1, random_state=rng.randint(_MAX_SEED))
        with warnings.catch_warnings():
            # Fewer distinct rows than clusters: the empty clusters are made up below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = kmeans.fit_predict(features)
        # `top` is in uncertainty order, so position in it breaks ties toward uncertainty.
        if self.pick == "center":
            distances = ((features - kmeans.cluster_centers_[labels]) ** 2).sum(axis=1)
            order = np.lexsort((np.arange(top.shape[0]), distances, labels))
        else:
            order = np.lexsort((np.arange(top.shape[0]), labels))
        sorted_labels = labels[order]
        first = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        picked_positions = np.sort(order[first])[:n]  # back to uncertainty order
        if picked_positions.shape[0] < n:
            rest = np.setdiff1d(np.arange(top.shape[0]), picked_positions)
            picked_positions = np.sort(
                np.concatenate([picked_positions, rest[: n - picked_positions.shape[0]]])
            )
        return top[picked_positions]


class CoreSetSampler(SamplingStrategy):
    """Greedy k-center: each pick is the item farthest from everything chosen or excluded.

    Covers the feature space (``X``; ``proba`` when ``X`` is not given) without
    looking at uncertainty. Excluded items (the labeled set) count as centres
    already; with nothing excluded the first pick is random. Costs ``n`` passes
    over the pool plus the distances from the pool to the excluded items.
    Offered for comparison, never a default: on the data sets tried it did
    worse than random.

    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [5.0], [10.0]])
    >>> proba = np.full((4, 2), 0.5)
    >>> CoreSetSampler(batch_size=2).select(proba, X=X, exclude=[0]).tolist()
    [3, 2]
    """

    def _select(
        self, proba: np.ndarray, X: np.ndarray | None, candidates: np.ndarray, n: int
    ) -> np.ndarray:
        owner = _owner(self, "select")
        source = proba if X is None else X
        pool = _finite_features(source[candidates], owner)
        nearest = np.full(pool.shape[0], np.inf)
        if candidates.shape[0] < proba.shape[0]:
            covered = np.ones(proba.shape[0], dtype=bool)
            covered[candidates] = False
            centres = _finite_features(source[covered], owner)
            for start in range(0, pool.shape[0], _CHUNK):
                block = pool[start : start + _CHUNK]
                nearest[start : start + _CHUNK] = _nearest_squared_distance(block, centres)
            first = int(np.argmax(nearest))
        else:
            rng = _random_state(self.random_state, type(self).__name__)
            first = int(rng.randint(pool.shape[0]))
        norms = np.einsum("ij,ij->i", pool, pool)
        picks = [first]
        for _ in range(n - 1):
            chosen = pool[picks[-1]]
            distances = norms - 2.0 * (pool @ chosen) + norms[picks[-1]]
            np.minimum(nearest, distances, out=nearest)
            nearest[picks] = -np.inf
            picks.append(int(np.argmax(nearest)))
        return candidates[np.asarray(picks, dtype=np.intp)]


def _nearest_squared_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of ``a``, the squared Euclidean distance to its nearest row of ``b``."""
    nearest = np.full(a.shape[0], np.inf)
    a_norms = (a**2).sum(axis=1)[:, None]
    step = max(1, _CHUNK // 16)
    for start in range(0, b.shape[0], step):
        block = b[start : start + step]
        d = a_norms - 2.0 * (a @ block.T) + (block**2).sum(axis=1)[None, :]
        np.minimum(nearest, d.min(axis=1), out=nearest)
    return np.maximum(nearest, 0.0)


# ---------------------------------------------------------------------------
# Registry and defaults

STRATEGIES: dict[str, type[SamplingStrategy]] = {
    "random": RandomSampler,
    "least_confidence": LeastConfidenceSampler,
    "margin": MarginSampler,
    "entropy": EntropySampler,
    "hybrid": HybridSampler,
    "coreset": CoreSetSampler,
}
"""The built-in strategies by name, as ``make_strategy`` and the CLI accept them."""


def make_strategy(name: str, **params: Any) -> SamplingStrategy:
    """The built-in strategy called ``name`` (a key of ``STRATEGIES``) with ``params``.

    Hyphens are accepted for underscores (``"least-confidence"``).

    >>> make_strategy("hybrid", batch_size=5, random_state=0)
    HybridSampler(batch_size=5, random_state=0)
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in STRATEGIES:
        raise StrategyError(
            f"Unknown sampling strategy {name!r}. Valid names: {', '.join(sorted(STRATEGIES))}."
        )
    cls = STRATEGIES[key]
    valid = sorted(cls._get_param_names())
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise StrategyError(
            f"The {key!r} strategy ({cls.__name__}) has no parameter "
            f"{', '.join(repr(u) for u in unknown)}. Valid parameters: {', '.join(valid)}."
        )
    return cls(**params)


def default_strategy(batch_size: int, *, random_state: Any = None) -> SamplingStrategy:
    """The strategy inloop uses when none is chosen: margin for 1, hybrid for batches.

    >>> default_strategy(10)
    HybridSampler()
    """
    size = _check_int(batch_size, "batch_size", "default_strategy")
    if size == 1:
        return MarginSampler(batch_size=1, random_state=random_state)
    return HybridSampler(batch_size=size, random_state=random_state)
