"""Agreement between annotators, and one consensus label per item.

When a project asks for overlap, several people label the same item and their
answers sometimes differ. This module turns those answers into one label per
item and says how far each annotator can be trusted:

* :func:`majority_vote`: the most frequent answer and its share of the votes;
* :func:`dawid_skene`: Dawid and Skene's (1979) EM estimate of every
  annotator's confusion matrix and of every item's true class. Use it when
  annotators differ in skill: a careful annotator's answer counts for more
  than a careless one's, which a plain vote cannot do;
* :func:`cohen_kappa`, :func:`fleiss_kappa` and :func:`pairwise_kappa`:
  agreement corrected for the agreement expected by chance;
* :func:`annotator_report`: per annotator, agreement with the consensus and
  with the others, and speed;
* :func:`disagreements`: the items whose annotators disagree, most contested
  first, for a reviewer's final call.

Every function takes the same input, a *label matrix*: an ``(n_items,
n_annotators)`` integer array of class indices in which ``-1`` means "this
annotator did not label this item". :func:`label_matrix` builds one from
``(item_id, annotator, label)`` records.

>>> labels = np.array([[0, 0, 1], [1, 1, 1], [2, 0, -1]])
>>> majority_vote(labels, 3, tie_break="lowest").labels
array([0, 1, 0])
>>> disagreements(labels)
array([2, 0])
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from inloop.errors import InloopError

__all__ = [
    "MISSING",
    "AgreementError",
    "AnnotatorStats",
    "Consensus",
    "DawidSkeneResult",
    "LabelMatrix",
    "annotator_report",
    "cohen_kappa",
    "dawid_skene",
    "disagreements",
    "fleiss_kappa",
    "label_matrix",
    "majority_vote",
    "pairwise_kappa",
    "vote_counts",
]

#: The entry of a label matrix that means "this annotator did not label this item".
MISSING = -1

_TIE_BREAKS = ("random", "lowest")
_TINY = np.finfo(np.float64).tiny
# Chance agreement this close to 1 leaves kappa undefined (0 / 0): everyone used one class.
_UNDEFINED = 1e-12


class AgreementError(InloopError, ValueError):
    """A label matrix or a parameter of an agreement function is invalid."""


# --------------------------------------------------------------------------- results


class LabelMatrix(NamedTuple):
    """A label matrix and what its rows, columns and class indices stand for.

    ``matrix[i, j]`` is the index into ``classes`` of the label annotator
    ``annotators[j]`` gave item ``items[i]``, or ``-1`` (:data:`MISSING`).
    """

    matrix: np.ndarray
    items: list[Hashable]
    annotators: list[Hashable]
    classes: list[Hashable]


@dataclass(frozen=True, eq=False)
class Consensus:
    """One label per item by majority vote.

    ``labels[i]`` is the winning class (``-1`` when nobody labeled item ``i``),
    ``confidence[i]`` the share of item ``i``'s votes that went to it (``nan``
    without votes) and ``n_votes[i]`` how many annotators labeled the item.
    """

    labels: np.ndarray
    confidence: np.ndarray
    n_votes: np.ndarray


@dataclass(frozen=True, eq=False)
class DawidSkeneResult:
    """The outcome of :func:`dawid_skene`.

    ``proba[i, k]`` is the posterior probability that item ``i`` is of class
    ``k``; ``labels`` is its arg-max (``-1`` for items nobody labeled, whose
    ``proba`` row is the prior). ``confusion[j, k, l]`` is the estimated
    probability that annotator ``j`` answers ``l`` when the true class is
    ``k``; ``priors[k]`` the estimated share of class ``k``.
    ``log_likelihood`` is the mean log-probability of one labeled item's
    answers under the fitted model.
    """

    labels: np.ndarray
    proba: np.ndarray
    confusion: np.ndarray
    priors: np.ndarray
    n_iter: int
    converged: bool
    log_likelihood: float

    @property
    def confidence(self) -> np.ndarray:
        """The posterior probability of each item's label, ``proba.max(axis=1)``."""
        return self.proba.max(axis=1) if self.proba.size else np.zeros(len(self.proba))

    @property
    def annotator_accuracy(self) -> np.ndarray:
        """Each annotator's estimated accuracy: ``sum_k priors[k] * confusion[j, k, k]``."""
        diagonal = np.diagonal(self.confusion, axis1=1, axis2=2)
        return np.asarray(diagonal @ self.priors, dtype=np.float64)


@dataclass(frozen=True)
class AnnotatorStats:
    """How one annotator (column ``annotator_index`` of the label matrix) fares.

    ``agreement_with_consensus`` is the share of the items they labeled,
    among those someone else labeled too (``n_compared``), on which their
    label equals the consensus; ``mean_kappa_with_others`` the mean of their
    Cohen's kappas with every annotator they share at least two items with;
    ``median_seconds`` their median time per item. A value that cannot be
    computed (no shared items, no times given) is ``nan``.
    """

    annotator_index: int
    n_labeled: int
    agreement_with_consensus: float
    mean_kappa_with_others: float
    median_seconds: float
    n_compared: int


# --------------------------------------------------------------------------- checks


def _check_n_classes(n_classes: Any, where: str) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise AgreementError(
            f"The 'n_classes' parameter of {where} must be an int >= 2. Got {n_classes!r}."
        )
    return int(n_classes)


def _check_labels(
    labels: ArrayLike,
    where: str,
    *,
    n_classes: int | None = None,
    ndim: int = 2,
    name: str = "labels",
) -> np.ndarray:
    """Return ``labels`` as an int64 array of class indices and -1, or say what is wrong."""
    shape_text = "(n_items, n_annotators)" if ndim == 2 else "(n_items,)"
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise AgreementError(
            f"The {name!r} parameter of {where} must be an array of shape {shape_text} "
            f"holding class indices and -1 for missing. It could not be read as one: {exc}"
        ) from exc
    if array.ndim != ndim:
        raise AgreementError(
            f"The {name!r} parameter of {where} must be a {ndim}-D array of shape {shape_text}. "
            f"Got an array of shape {array.shape}."
        )
    if array.dtype.kind == "f" and array.size:
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise AgreementError(
                f"The {name!r} parameter of {where} must hold integer class indices and -1 for "
                f"missing. Got non-integer values such as {array[array != np.round(array)][:3]}."
                " Use label_matrix() to build one from (item, annotator, label) records."
            )
    elif array.dtype.kind not in "iuf":
        raise AgreementError(
            f"The {name!r} parameter of {where} must hold integer class indices and -1 for "
            f"missing. Got an array of dtype {array.dtype}. Use label_matrix() to build one "
            "from (item, annotator, label) records."
        )
    array = array.astype(np.int64, copy=False)
    if array.size:
        low = int(array.min())
        high = int(array.max())
        if low < MISSING:
            where_low = tuple(int(i) for i in np.argwhere(array == low)[0])
            raise AgreementError(
                f"The {name!r} parameter of {where} must hold class indices >= 0, or -1 for "
                f"missing. Got {low} at position {where_low}."
            )
        if n_classes is not None and high >= n_classes:
            where_high = tuple(int(i) for i in np.argwhere(array == high)[0])
            raise AgreementError(
                f"The {name!r} parameter of {where} must hold class indices in 0..{n_classes - 1} "
                f"(n_classes={n_classes}), or -1 for missing. Got {high} at position "
                f"{where_high}."
            )
    return array


def _check_int(value: Any, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise AgreementError(
            f"The {name!r} parameter of {where} must be an int >= {minimum}. Got {value!r}."
        )
    return int(value)


def _check_nonnegative(value: Any, name: str, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
        or value < 0
    ):
        raise AgreementError(
            f"The {name!r} parameter of {where} must be a finite number >= 0. Got {value!r}."
        )
    return float(value)


def _n_classes_seen(*arrays: np.ndarray) -> int:
    high = max((int(a.max()) for a in arrays if a.size), default=0)
    return max(high + 1, 1)


# --------------------------------------------------------------------------- building


def label_matrix(
    records: Iterable[tuple[Hashable, Hashable, Hashable | None]],
    *,
    classes: Sequence[Hashable] | None = None,
    items: Sequence[Hashable] | None = None,
    annotators: Sequence[Hashable] | None = None,
) -> LabelMatrix:
    """Build a label matrix from ``(item_id, annotator, label)`` records.

    Records are read in order. When an annotator labeled the same item twice
    the later record wins (a correction is a new event); a record whose label
    is ``None`` (a skip) is ignored. Rows follow ``items`` and columns follow
    ``annotators`` when given (an item without records becomes a row of -1),
    otherwise the order in which they first appear. Class indices follow
    ``classes`` when given, otherwise the sorted distinct labels (the order of
    first appearance when the labels cannot be sorted).

    >>> records = [(10, "ana", "cat"), (10, "bo", "dog"), (11, "ana", "dog"), (10, "bo", "cat")]
    >>> built = label_matrix(records)
    >>> built.matrix
    array([[ 0,  0],
           [ 1, -1]])
    >>> built.items, built.annotators, built.classes
    ([10, 11], ['ana', 'bo'], ['cat', 'dog'])
    """
    where = "label_matrix"
    triples: list[tuple[Hashable, Hashable, Hashable]] = []
    for position, record in enumerate(records):
        try:
            item, annotator, label = record
        except (TypeError, ValueError) as exc:
            raise AgreementError(
                f"The 'records' parameter of {where} must hold (item_id, annotator, label) "
                f"triples. Got {record!r} at position {position}."
            ) from exc
        if label is not None:
            triples.append((item, annotator, label))

    item_order = _ordering(items, (t[0] for t in triples), "items", where)
    annotator_order = _ordering(annotators, (t[1] for t in triples), "annotators", where)
    if classes is None:
        distinct = list(dict.fromkeys(t[2] for t in triples))
        try:
            class_order: list[Hashable] = sorted(distinct)  # type: ignore[type-var]
        except TypeError:
            class_order = distinct
        class_index = {c: k for k, c in enumerate(class_order)}
    else:
        class_order = list(classes)
        class_index = _index(class_order, "classes", where)

    row = {item: i for i, item in enumerate(item_order)}
    column = {a: j for j, a in enumerate(annotator_order)}
    matrix = np.full((len(item_order), len(annotator_order)), MISSING, dtype=np.int64)
    for item, annotator, label in triples:
        if label not in class_index:
            raise AgreementError(
                f"The label {label!r} of item {item!r} by annotator {annotator!r} is not one of "
                f"the 'classes' given to {where}: {class_order!r}."
            )
        if item not in row:
            raise AgreementError(
                f"The item {item!r} labeled by {annotator!r} is not one of the 'items' given to "
                f"{where}. Add it there, or leave 'items' out to take the items from the records."
            )
        if annotator not in column:
            raise AgreementError(
                f"The annotator {annotator!r} of item {item!r} is not one of the 'annotators' "
                f"given to {where}. Add them there, or leave 'annotators' out."
            )
        matrix[row[item], column[annotator]] = class_index[label]
    return LabelMatrix(matrix, item_order, annotator_order, class_order)


def _index(values: list[Hashable], name: str, where: str) -> dict[Hashable, int]:
    index: dict[Hashable, int] = {}
    for position, value in enumerate(values):
        if value in index:
            raise AgreementError(
                f"The {name!r} parameter of {where} must not repeat a value. Got {value!r} at "
                f"positions {index[value]} and {position}."
            )
        index[value] = position
    return index


def _ordering(
    given: Sequence[Hashable] | None, seen: Iterable[Hashable], name: str, where: str
) -> list[Hashable]:
    if given is None:
        return list(dict.fromkeys(seen))
    order = list(given)
    _index(order, name, where)
    return order


def vote_counts(labels: ArrayLike, n_classes: int) -> np.ndarray:
    """Count each item's votes per class: an ``(n_items, n_classes)`` int array.

    >>> vote_counts([[0, 0, 1], [2, -1, -1]], 3)
    array([[2, 1, 0],
           [0, 0, 1]])
    """
    n_classes = _check_n_classes(n_classes, "vote_counts")
    array = _check_labels(labels, "vote_counts", n_classes=n_classes)
    return _counts(array, n_classes)


def _counts(array: np.ndarray, n_classes: int) -> np.ndarray:
    n_items = array.shape[0]
    rows, _ = np.nonzero(array >= 0)
    flat = rows * n_classes + array[array >= 0]
    counts = np.bincount(flat, minlength=n_items * n_classes)
    return counts.reshape(n_items, n_classes)


# --------------------------------------------------------------------------- consensus


def majority_vote(
    labels: ArrayLike,
    n_classes: int,
    *,
    tie_break: str = "random",
    random_state: int | np.random.Generator | None = None,
) -> Consensus:
    """The most frequent label of each item, with its share of the votes.

    Use it when annotators are about equally reliable, or as a baseline for
    :func:`dawid_skene`. A tie goes to one of the tied classes at random
    (``tie_break="random"``, seeded by ``random_state``) or to the lowest
    class index (``"lowest"``, which favours low classes).

    >>> vote = majority_vote([[0, 0, 1], [1, 2, -1], [-1, -1, -1]], 3, tie_break="lowest")
    >>> vote.labels, vote.n_votes
    (array([ 0,  1, -1]), array([3, 2, 0]))
    >>> vote.confidence.round(2)
    array([0.67, 0.5 ,  nan])
    """
    where = "majority_vote"
    n_classes = _check_n_classes(n_classes, where)
    array = _check_labels(labels, where, n_classes=n_classes)
    if tie_break not in _TIE_BREAKS:
        raise AgreementError(
            f"The 'tie_break' parameter of {where} must be one of {list(_TIE_BREAKS)}. "
            f"Got {tie_break!r}."
        )
    counts = _counts(array, n_classes)
    n_votes = counts.sum(axis=1)
    top = counts.max(axis=1)
    is_top = counts == top[:, None]
    if tie_break == "lowest":
        winner = is_top.argmax(axis=1)
    else:
        rng = _rng(random_state, where)
        winner = np.where(is_top, rng.random(counts.shape), -1.0).argmax(axis=1)
    voted = n_votes > 0
    confidence = np.full(len(counts), np.nan)
    np.divide(top, n_votes, out=confidence, where=voted)
    return Consensus(
        labels=np.where(voted, winner, MISSING).astype(np.int64),
        confidence=confidence,
        n_votes=n_votes.astype(np.int64),
    )


def _rng(random_state: Any, where: str) -> np.random.Generator:
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise AgreementError(
            f"The 'random_state' parameter of {where} must be None, an int >= 0 or a "
            f"numpy Generator. Got {random_state!r}."
        ) from exc


def dawid_skene(
    labels: ArrayLike,
    n_classes: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    init: str | ArrayLike = "majority",
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Estimate each item's class and each annotator's confusion matrix by EM.

    The model of Dawid and Skene (1979): an item's true class is drawn from
    ``priors``; annotator ``j`` then answers ``l`` with probability
    ``confusion[j, true class, l]``, independently of the other annotators.
    EM alternates between the posterior of every item's class (E-step) and
    the confusion matrices and priors those posteriors imply (M-step), each
    count increased by ``smoothing`` so that no probability is exactly zero.
    It stops when the mean log-likelihood per labeled item changes by at most
    ``tol``, or after ``max_iter`` rounds.

    It starts from the vote shares (``init="majority"``) or from the
    ``(n_items, n_classes)`` class probabilities you give, such as a model's
    predictions. Prefer it over :func:`majority_vote` when each item has
    three or more labels and annotators differ in skill; with two labels per
    item it mostly learns whom to believe when they disagree.

    >>> labels = [[0, 0, 1], [1, 1, 1], [2, 2, 0], [0, 0, 2], [1, 1, 0]]
    >>> result = dawid_skene(labels, 3)
    >>> result.labels
    array([0, 1, 2, 0, 1])
    >>> result.annotator_accuracy.round(2)
    array([0.99, 0.99, 0.2 ])
    """
    where = "dawid_skene"
    n_classes = _check_n_classes(n_classes, where)
    array = _check_labels(labels, where, n_classes=n_classes)
    max_iter = _check_int(max_iter, "max_iter", where, 1)
    tol = _check_nonnegative(tol, "tol", where)
    smoothing = _check_nonnegative(smoothing, "smoothing", where)
    n_items, n_annotators = array.shape
    k = n_classes

    obs_item, obs_annotator = np.nonzero(array >= 0)  # row-major: sorted by item
    obs_label = array[obs_item, obs_annotator]
    labeled = np.bincount(obs_item, minlength=n_items) > 0
    post = _initial_posterior(init, array, k, labeled, where)

    uniform = np.full(k, 1.0 / k)
    if obs_item.size == 0:
        return DawidSkeneResult(
            labels=np.full(n_items, MISSING, dtype=np.int64),
            proba=np.tile(uniform, (n_items, 1)),
            confusion=np.tile(uniform, (n_annotators, k, 1)),
            priors=uniform,
            n_iter=0,
            converged=True,
            log_likelihood=0.0,
        )

    # Observations grouped by item (for the E-step) and by (annotator, answer) cell (M-step).
    item_starts = np.flatnonzero(np.r_[True, obs_item[1:] != obs_item[:-1]])
    item_ids = obs_item[item_starts]
    cell = obs_annotator * k + obs_label
    by_cell = np.argsort(cell, kind="stable")
    cell_sorted = cell[by_cell]
    cell_starts = np.flatnonzero(np.r_[True, cell_sorted[1:] != cell_sorted[:-1]])
    cell_ids = cell_sorted[cell_starts]
    item_of_cell_obs = obs_item[by_cell]
    n_labeled = len(item_ids)

    previous = -np.inf
    converged = False
    n_iter = 0
    log_likelihood = -np.inf
    while n_iter < max_iter:
        n_iter += 1
        # M-step: expected counts of (annotator, true class, answer), smoothed, normalized.
        counts = np.zeros((n_annotators * k, k))
        counts[cell_ids] = np.add.reduceat(post[item_of_cell_obs], cell_starts, axis=0)
        confusion = counts.reshape(n_annotators, k, k).transpose(0, 2, 1) + smoothing
        row_sums = confusion.sum(axis=2, keepdims=True)
        confusion = np.divide(
            confusion,
            row_sums,
            out=np.broadcast_to(uniform, confusion.shape).copy(),
            where=row_sums > 0,
        )
        prior_counts = post[labeled].sum(axis=0) + smoothing
        priors = prior_counts / prior_counts.sum() if prior_counts.sum() > 0 else uniform

        # E-step: log prior plus the log-probability of every answer the item got.
        log_confusion = np.log(np.maximum(confusion, _TINY))
        per_answer = log_confusion[obs_annotator, :, obs_label]  # (n_observations, k)
        log_joint = np.tile(np.log(np.maximum(priors, _TINY)), (n_items, 1))
        log_joint[item_ids] += np.add.reduceat(per_answer, item_starts, axis=0)
        top = log_joint.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))
        post = np.exp(log_joint - log_norm[:, None])

        log_likelihood = float(log_norm[labeled].sum() / n_labeled)
        if abs(log_likelihood - previous) <= tol:
            converged = True
            break
        previous = log_likelihood

    return DawidSkeneResult(
        labels=np.where(labeled, post.argmax(axis=1), MISSING).astype(np.int64),
        proba=post,
        confusion=confusion,
        priors=priors,
        n_iter=n_iter,
        converged=converged,
        log_likelihood=log_likelihood,
    )


def _initial_posterior(
    init: str | ArrayLike, array: np.ndarray, k: int, labeled: np.ndarray, where: str
) -> np.ndarray:
    n_items = array.shape[0]
    if isinstance(init, str):
        if init != "majority":
            raise AgreementError(
                f"The 'init' parameter of {where} must be 'majority' or an array of shape "
                f"(n_items, n_classes) = ({n_items}, {k}) of class probabilities. Got {init!r}."
            )
        counts = _counts(array, k).astype(np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.full_like(counts, 1.0 / k), where=totals > 0)
    post = np.asarray(init, dtype=np.float64)
    if post.shape != (n_items, k):
        raise AgreementError(
            f"The 'init' parameter of {where} must be 'majority' or an array of shape "
            f"(n_items, n_classes) = ({n_items}, {k}). Got an array of shape {post.shape}."
        )
    sums = post.sum(axis=1)
    if not np.all(np.isfinite(post)) or np.any(post < 0) or np.any(sums[labeled] <= 0):
        raise AgreementError(
            f"The 'init' parameter of {where} must hold finite probabilities >= 0 with a "
            "positive sum in every row of a labeled item."
        )
    return np.divide(post, sums[:, None], out=np.full_like(post, 1.0 / k), where=sums[:, None] > 0)


# --------------------------------------------------------------------------- kappas


def _kappa_from_table(table: np.ndarray) -> float:
    """Cohen's kappa of a square contingency table (rows: rater a, columns: rater b)."""
    total = table.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(table) / total
    expected = float(table.sum(axis=1) @ table.sum(axis=0)) / total**2
    if 1.0 - expected <= _UNDEFINED:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def _pair_kappa(a: np.ndarray, b: np.ndarray, n_classes: int) -> tuple[float, int]:
    both = (a >= 0) & (b >= 0)
    shared = int(both.sum())
    flat = a[both] * n_classes + b[both]
    table = np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return _kappa_from_table(table), shared


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa between two annotators, on the items both labeled.

    ``a`` and ``b`` are two columns of a label matrix (-1 where missing).
    Kappa is 1 for perfect agreement, 0 for the agreement expected by chance
    from each one's class frequencies, and negative below chance. It is
    ``nan`` when they share no item, or when both gave one and the same
    class throughout (chance agreement is then 1 and kappa is undefined).

    >>> round(cohen_kappa([0, 1, 1, 0, 2, -1], [0, 1, 0, 0, 2, 1]), 3)
    0.688
    """
    where = "cohen_kappa"
    first = _check_labels(a, where, ndim=1, name="a")
    second = _check_labels(b, where, ndim=1, name="b")
    if first.shape != second.shape:
        raise AgreementError(
            f"The 'a' and 'b' parameters of {where} must have the same length (one entry per "
            f"item). Got {len(first)} and {len(second)}."
        )
    kappa, _ = _pair_kappa(first, second, _n_classes_seen(first, second))
    return kappa


def fleiss_kappa(labels: ArrayLike, n_classes: int) -> float:
    """Fleiss' kappa of all annotators together, over the items with two or more labels.

    Per item, the agreement is the share of ordered pairs of its labels that
    agree; the items' mean is compared with the agreement expected from the
    pooled class frequencies. Items may have different numbers of labels;
    each counts once. ``nan`` when no item has two labels, or when every
    label is the same class.

    >>> round(fleiss_kappa([[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, -1]], 2), 3)
    0.16
    """
    where = "fleiss_kappa"
    n_classes = _check_n_classes(n_classes, where)
    array = _check_labels(labels, where, n_classes=n_classes)
    counts = _counts(array, n_classes).astype(np.float64)
    n_votes = counts.sum(axis=1)
    rated = n_votes >= 2
    if not rated.any():
        return float("nan")
    counts, n_votes = counts[rated], n_votes[rated]
    per_item = ((counts * (counts - 1)).sum(axis=1)) / (n_votes * (n_votes - 1))
    observed = float(per_item.mean())
    shares = counts.sum(axis=0) / n_votes.sum()
    expected = float(shares @ shares)
    if 1.0 - expected <= _UNDEFINED:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def pairwise_kappa(labels: ArrayLike) -> np.ndarray:
    """Cohen's kappa between every two annotators: an ``(n_annotators, n_annotators)`` matrix.

    Entry ``[i, j]`` is :func:`cohen_kappa` of columns ``i`` and ``j`` on the
    items both labeled; ``nan`` where they share fewer than two items or
    kappa is undefined. The diagonal is an annotator against themself.

    >>> pairwise_kappa([[0, 0, 1, 2], [1, 1, -1, -1], [0, 1, 0, -1]]).round(2)
    array([[ 1. ,  0.4,  0. ,  nan],
           [ 0.4,  1. , -1. ,  nan],
           [ 0. , -1. ,  1. ,  nan],
           [ nan,  nan,  nan,  nan]])
    """
    where = "pairwise_kappa"
    array = _check_labels(labels, where)
    return _pairwise(array, _n_classes_seen(array))


def _pairwise(array: np.ndarray, n_classes: int) -> np.ndarray:
    n_annotators = array.shape[1]
    kappas = np.full((n_annotators, n_annotators), np.nan)
    for i in range(n_annotators):
        for j in range(i, n_annotators):
            kappa, shared = _pair_kappa(array[:, i], array[:, j], n_classes)
            if shared >= 2:
                kappas[i, j] = kappas[j, i] = kappa
    return kappas


# --------------------------------------------------------------------------- reports


def annotator_report(
    labels: ArrayLike,
    n_classes: int,
    *,
    consensus: Consensus | DawidSkeneResult | ArrayLike | None = None,
    seconds: ArrayLike | None = None,
) -> list[AnnotatorStats]:
    """Per annotator: how much they label, agree with the consensus and the others, and how fast.

    ``consensus`` is the result of :func:`majority_vote` or
    :func:`dawid_skene`, or an array of one label per item; by default a
    majority vote with ties broken at random (seed 0). Agreement with the
    consensus counts only items someone else labeled too: on an item only
    they labeled an annotator agrees with any vote. ``seconds`` is an
    ``(n_items, n_annotators)`` array of time spent per label (``nan`` where
    unknown).

    >>> labels = [[0, 0, 1], [1, 1, 1], [2, 2, 0], [0, -1, 0]]
    >>> seconds = [[3.0, 5.0, 1.0], [4.0, 6.0, 1.0], [5.0, 7.0, 2.0], [2.0, np.nan, 1.0]]
    >>> for stats in annotator_report(labels, 3, seconds=seconds):
    ...     print(stats.annotator_index, stats.n_labeled, stats.agreement_with_consensus,
    ...           round(stats.mean_kappa_with_others, 2), stats.median_seconds)
    0 4 1.0 0.6 3.5
    1 3 1.0 0.5 6.0
    2 4 0.5 0.1 1.0
    """
    where = "annotator_report"
    n_classes = _check_n_classes(n_classes, where)
    array = _check_labels(labels, where, n_classes=n_classes)
    n_items, n_annotators = array.shape
    if consensus is None:
        consensus_labels = majority_vote(array, n_classes, random_state=0).labels
    else:
        raw = consensus.labels if isinstance(consensus, Consensus | DawidSkeneResult) else consensus
        consensus_labels = _check_labels(raw, where, n_classes=n_classes, ndim=1, name="consensus")
        if len(consensus_labels) != n_items:
            raise AgreementError(
                f"The 'consensus' parameter of {where} must have one label per item "
                f"({n_items}). Got {len(consensus_labels)}."
            )
    times = _check_seconds(seconds, array.shape, where)

    seen = array >= 0
    shared_item = seen.sum(axis=1) >= 2
    kappas = _pairwise(array, n_classes)
    report = []
    for j in range(n_annotators):
        compared = seen[:, j] & shared_item & (consensus_labels >= 0)
        n_compared = int(compared.sum())
        agreement = (
            float(np.mean(array[compared, j] == consensus_labels[compared]))
            if n_compared
            else float("nan")
        )
        others = np.delete(kappas[j], j)
        others = others[np.isfinite(others)]
        mean_kappa = float(others.mean()) if others.size else float("nan")
        median = float("nan")
        if times is not None:
            own = times[seen[:, j], j]
            own = own[np.isfinite(own)]
            median = float(np.median(own)) if own.size else float("nan")
        report.append(
            AnnotatorStats(
                annotator_index=j,
                n_labeled=int(seen[:, j].sum()),
                agreement_with_consensus=agreement,
                mean_kappa_with_others=mean_kappa,
                median_seconds=median,
                n_compared=n_compared,
            )
        )
    return report


def _check_seconds(
    seconds: ArrayLike | None, shape: tuple[int, ...], where: str
) -> np.ndarray | None:
    if seconds is None:
        return None
    try:
        times = np.asarray(seconds, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AgreementError(
            f"The 'seconds' parameter of {where} must be an array of numbers of shape {shape} "
            f"(seconds per label, nan where unknown). It could not be read as one: {exc}"
        ) from exc
    if times.shape != shape:
        raise AgreementError(
            f"The 'seconds' parameter of {where} must have the shape of 'labels', {shape}. "
            f"Got {times.shape}."
        )
    if np.any(times[np.isfinite(times)] < 0) or np.any(np.isinf(times)):
        raise AgreementError(
            f"The 'seconds' parameter of {where} must hold finite times >= 0, or nan where "
            "unknown. Got a negative or infinite value."
        )
    return times


def disagreements(labels: ArrayLike, *, min_votes: int = 2) -> np.ndarray:
    """The items whose annotators disagree, most contested first: the review queue.

    An item is listed when at least ``min_votes`` annotators labeled it and
    they did not all give the same label. Items are ordered by the entropy of
    their votes (an even split first), then by their number of votes (more
    first), then by position.

    >>> disagreements([[0, 0, 1], [0, 0, 0], [0, 1, 2], [1, -1, -1], [1, 2, -1]])
    array([2, 4, 0])
    """
    where = "disagreements"
    min_votes = _check_int(min_votes, "min_votes", where, 2)
    array = _check_labels(labels, where)
    counts = _counts(array, _n_classes_seen(array)).astype(np.float64)
    n_votes = counts.sum(axis=1)
    contested = (n_votes >= min_votes) & (np.count_nonzero(counts, axis=1) >= 2)
    index = np.flatnonzero(contested)
    shares = counts[index] / n_votes[index, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(shares > 0, shares * np.log(shares), 0.0).sum(axis=1)
    # Round so that equal splits computed in a different order still tie.
    order = np.lexsort((index, -n_votes[index], -np.round(entropy, 12)))
    return index[order].astype(np.int64)
