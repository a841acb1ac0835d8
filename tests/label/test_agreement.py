"""Consensus labels and agreement statistics, on hand-checked cases and simulated annotators.

Kappas are checked against scikit-learn's ``cohen_kappa_score``, against
Fleiss' statistic computed pair by pair in a loop, and against the worked
example of Fleiss' kappa (14 raters, 10 items, 5 categories; kappa 0.210).
"""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from inloop.errors import InloopError
from inloop.label import agreement
from inloop.label.agreement import (
    AgreementError,
    Consensus,
    DawidSkeneResult,
    annotator_report,
    cohen_kappa,
    dawid_skene,
    disagreements,
    fleiss_kappa,
    label_matrix,
    majority_vote,
    pairwise_kappa,
    vote_counts,
)


def simulate(
    truth: np.ndarray, confusion: np.ndarray, rng: np.random.Generator, missing: float = 0.0
) -> np.ndarray:
    """Labels drawn from each annotator's confusion matrix ``confusion[j, true, given]``."""
    n_annotators, n_classes, _ = confusion.shape
    labels = np.empty((len(truth), n_annotators), dtype=np.int64)
    for j in range(n_annotators):
        cumulative = confusion[j, truth].cumsum(axis=1)
        draws = rng.random((len(truth), 1))
        labels[:, j] = np.minimum((draws > cumulative).sum(axis=1), n_classes - 1)
    labels[rng.random(labels.shape) < missing] = -1
    return labels


def uniform_errors(accuracies: list[float], n_classes: int) -> np.ndarray:
    """Confusion matrices of annotators whose errors are uniform over the other classes."""
    out = []
    for accuracy in accuracies:
        matrix = np.full((n_classes, n_classes), (1 - accuracy) / (n_classes - 1))
        np.fill_diagonal(matrix, accuracy)
        out.append(matrix)
    return np.array(out)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(agreement, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0


# --------------------------------------------------------------------------- label_matrix


def test_label_matrix_orders_by_first_appearance_and_sorts_classes() -> None:
    records = [
        ("b", "ana", "dog"),
        ("a", "bo", "cat"),
        ("a", "ana", "dog"),
        ("c", "cy", None),  # a skip: no label, but nothing else either
    ]
    built = label_matrix(records)
    assert built.items == ["b", "a"]
    assert built.annotators == ["ana", "bo"]
    assert built.classes == ["cat", "dog"]
    np.testing.assert_array_equal(built.matrix, [[1, -1], [1, 0]])
    matrix, items, annotators, classes = built  # unpacks like a tuple
    assert matrix.dtype == np.int64
    assert (items, annotators, classes) == (built.items, built.annotators, built.classes)


def test_label_matrix_later_record_is_a_correction() -> None:
    built = label_matrix([(1, "ana", 0), (1, "ana", 2), (1, "ana", None)], classes=[0, 1, 2])
    np.testing.assert_array_equal(built.matrix, [[2]])


def test_label_matrix_follows_given_orderings() -> None:
    built = label_matrix(
        [(2, "bo", "x")], items=[1, 2, 3], annotators=["ana", "bo"], classes=["y", "x"]
    )
    np.testing.assert_array_equal(built.matrix, [[-1, -1], [-1, 1], [-1, -1]])
    assert built.classes == ["y", "x"]


def test_label_matrix_keeps_first_seen_order_of_unsortable_classes() -> None:
    built = label_matrix([(0, "a", "x"), (1, "a", 3)])
    assert built.classes == ["x", 3]


@pytest.mark.parametrize(
    ("records", "kwargs", "match"),
    [
        ([(1, "a", "x")], {"classes": ["y", "z"]}, r"label 'x' of item 1 .* \['y', 'z'\]"),
        ([(1, "a", "x")], {"items": [2]}, "item 1 labeled by 'a' is not one of the 'items'"),
        ([(1, "a", "x")], {"annotators": ["b"]}, "annotator 'a' of item 1"),
        ([(1, "a", "x")], {"classes": ["x", "x"]}, "'classes' .* must not repeat .* 'x'"),
        ([(1, "a")], {}, r"triples. Got \(1, 'a'\) at position 0"),
    ],
)
def test_label_matrix_rejects_bad_records(records: list, kwargs: dict, match: str) -> None:
    with pytest.raises(AgreementError, match=match):
        label_matrix(records, **kwargs)


# --------------------------------------------------------------------------- majority vote


def test_vote_counts_counts_each_class() -> None:
    np.testing.assert_array_equal(
        vote_counts([[0, 1, 1, -1], [-1, -1, -1, -1]], 3), [[1, 2, 0], [0, 0, 0]]
    )


def test_majority_vote_hand_checked() -> None:
    labels = [[2, 2, 1], [0, -1, -1], [1, 0, 1], [-1, -1, -1]]
    vote = majority_vote(labels, 3)
    assert isinstance(vote, Consensus)
    np.testing.assert_array_equal(vote.labels, [2, 0, 1, -1])
    np.testing.assert_array_equal(vote.n_votes, [3, 1, 3, 0])
    np.testing.assert_allclose(vote.confidence, [2 / 3, 1.0, 2 / 3, np.nan])


def test_majority_vote_breaks_ties_at_random_among_the_tied_classes_only() -> None:
    labels = np.array([[1, 3]] * 200)
    vote = majority_vote(labels, 4, random_state=0)
    assert set(vote.labels) == {1, 3}
    assert 60 < np.sum(vote.labels == 1) < 140
    np.testing.assert_array_equal(vote.labels, majority_vote(labels, 4, random_state=0).labels)
    np.testing.assert_array_equal(majority_vote(labels, 4, tie_break="lowest").labels, 1)


def test_perfect_agreement() -> None:
    labels = np.repeat(np.arange(4)[:, None], 3, axis=1)  # item i: class i from everyone
    vote = majority_vote(labels, 4)
    np.testing.assert_array_equal(vote.labels, np.arange(4))
    np.testing.assert_array_equal(vote.confidence, 1.0)
    np.testing.assert_array_equal(dawid_skene(labels, 4).labels, np.arange(4))
    assert fleiss_kappa(labels, 4) == pytest.approx(1.0)
    assert cohen_kappa(labels[:, 0], labels[:, 1]) == pytest.approx(1.0)
    np.testing.assert_allclose(pairwise_kappa(labels), 1.0)
    assert disagreements(labels).size == 0
    for stats in annotator_report(labels, 4):
        assert stats.agreement_with_consensus == 1.0
        assert stats.mean_kappa_with_others == pytest.approx(1.0)


# --------------------------------------------------------------------------- Dawid-Skene


def test_dawid_skene_recovers_a_known_confusion_structure() -> None:
    rng = np.random.default_rng(7)
    priors = np.array([0.5, 0.3, 0.2])
    truth = rng.choice(3, size=4000, p=priors)
    confusion = np.array(
        [
            [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]],
            [[0.7, 0.3, 0.0], [0.2, 0.7, 0.1], [0.0, 0.1, 0.9]],  # confuses 0 and 1
            [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]],
            [[0.95, 0.05, 0.0], [0.0, 0.5, 0.5], [0.0, 0.2, 0.8]],  # confuses 1 and 2
        ]
    )
    labels = simulate(truth, confusion, rng, missing=0.1)
    result = dawid_skene(labels, 3)
    assert isinstance(result, DawidSkeneResult)
    assert result.converged
    np.testing.assert_allclose(result.confusion, confusion, atol=0.04)
    np.testing.assert_allclose(result.priors, priors, atol=0.02)
    np.testing.assert_allclose(result.proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)
    true_accuracy = np.einsum("k,jkk->j", priors, confusion)
    np.testing.assert_allclose(result.annotator_accuracy, true_accuracy, atol=0.03)
    # The posterior is calibrated enough that its confidence tracks its accuracy.
    correct = result.labels == truth
    assert abs(result.confidence.mean() - correct.mean()) < 0.02


def test_dawid_skene_beats_majority_vote_when_one_annotator_is_poor() -> None:
    n_classes = 10
    confusion = uniform_errors([0.9, 0.75, 0.6], n_classes)
    gains = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, n_classes, size=2000)
        labels = simulate(truth, confusion, rng)
        vote = np.mean(majority_vote(labels, n_classes, random_state=seed).labels == truth)
        model = dawid_skene(labels, n_classes)
        gains.append(np.mean(model.labels == truth) - vote)
        np.testing.assert_allclose(model.annotator_accuracy, [0.9, 0.75, 0.6], atol=0.03)
    assert min(gains) > 0.01


def test_dawid_skene_ignores_an_annotator_who_always_answers_the_same_class() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, size=1000)
    good = simulate(truth, uniform_errors([0.8, 0.8, 0.8], 4), rng)
    spammers = np.zeros((1000, 2), dtype=np.int64)  # two spammers always answer 0
    labels = np.hstack([good, spammers])
    vote = np.mean(majority_vote(labels, 4, random_state=0).labels == truth)
    model = dawid_skene(labels, 4)
    assert np.mean(model.labels == truth) > vote + 0.05
    np.testing.assert_allclose(model.confusion[3:, :, 0], 1.0, atol=0.01)


def test_dawid_skene_gives_unlabeled_items_the_prior() -> None:
    labels = np.array([[0, 0], [0, 0], [1, 1], [-1, -1]])
    result = dawid_skene(labels, 2)
    assert result.labels[3] == -1
    np.testing.assert_allclose(result.proba[3], result.priors)
    assert result.priors[0] == pytest.approx(2 / 3, abs=0.01)


def test_dawid_skene_with_everything_missing_is_uniform() -> None:
    result = dawid_skene(np.full((5, 3), -1), 4)
    np.testing.assert_array_equal(result.labels, -1)
    np.testing.assert_allclose(result.proba, 0.25)
    np.testing.assert_allclose(result.confusion, 0.25)
    assert result.converged and result.n_iter == 0
    assert dawid_skene(np.empty((0, 2)), 3).labels.shape == (0,)


def test_one_annotator() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(50, 1))
    np.testing.assert_array_equal(dawid_skene(labels, 3).labels, labels[:, 0])
    np.testing.assert_array_equal(majority_vote(labels, 3).labels, labels[:, 0])
    assert np.isnan(fleiss_kappa(labels, 3))  # no item has two ratings
    assert disagreements(labels).size == 0
    (stats,) = annotator_report(labels, 3)
    assert stats.n_labeled == 50 and stats.n_compared == 0
    assert np.isnan(stats.agreement_with_consensus) and np.isnan(stats.mean_kappa_with_others)


def test_dawid_skene_without_smoothing_stays_finite() -> None:
    labels = np.array([[0, 0, 1], [1, 1, 1], [2, 2, 2], [0, 0, 0]])
    result = dawid_skene(labels, 4, smoothing=0.0)  # class 3 is never used by anyone
    assert np.all(np.isfinite(result.proba)) and np.all(np.isfinite(result.confusion))
    np.testing.assert_array_equal(result.labels, [0, 1, 2, 0])


def test_dawid_skene_starts_from_given_probabilities() -> None:
    labels = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])  # two annotators who always disagree
    trust_first = np.eye(2)[labels[:, 0]]
    trust_second = np.eye(2)[labels[:, 1]]
    np.testing.assert_array_equal(dawid_skene(labels, 2, init=trust_first).labels, labels[:, 0])
    np.testing.assert_array_equal(dawid_skene(labels, 2, init=trust_second).labels, labels[:, 1])
    with pytest.raises(AgreementError, match=r"'init' .* shape \(n_items, n_classes\) = \(4, 2\)"):
        dawid_skene(labels, 2, init=np.ones((3, 2)))
    with pytest.raises(AgreementError, match=r"'init' .* 'majority'"):
        dawid_skene(labels, 2, init="uniform")


def test_dawid_skene_does_not_depend_on_annotator_order() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, size=500)
    labels = simulate(truth, uniform_errors([0.9, 0.7, 0.5, 0.8], 5), rng, missing=0.3)
    order = np.array([2, 0, 3, 1])
    straight = dawid_skene(labels, 5)
    shuffled = dawid_skene(labels[:, order], 5)
    np.testing.assert_allclose(shuffled.confusion, straight.confusion[order], atol=1e-9)
    np.testing.assert_allclose(shuffled.proba, straight.proba, atol=1e-9)


def test_dawid_skene_on_thousands_of_items_and_dozens_of_annotators() -> None:
    # How fast this is belongs to benchmarks/labeling.py, not to a timed unit test.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, size=5000)
    accuracies = rng.uniform(0.4, 0.95, size=40)
    labels = simulate(truth, uniform_errors(list(accuracies), 10), rng, missing=0.5)
    result = dawid_skene(labels, 10)
    assert result.converged
    np.testing.assert_allclose(result.annotator_accuracy, accuracies, atol=0.05)


# --------------------------------------------------------------------------- kappas


def test_cohen_kappa_matches_scikit_learn_on_the_items_both_labeled() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        a = rng.integers(-1, 4, size=60)
        b = np.where(rng.random(60) < 0.6, a, rng.integers(-1, 4, size=60))
        both = (a >= 0) & (b >= 0)
        expected = cohen_kappa_score(a[both], b[both], labels=[0, 1, 2, 3])
        assert cohen_kappa(a, b) == pytest.approx(expected)


def test_cohen_kappa_hand_checked_and_undefined_cases() -> None:
    # Observed agreement 4/5; chance (2*3 + 2*1 + 1*1) / 25 = 0.36; kappa 0.44 / 0.64.
    assert cohen_kappa([0, 1, 1, 0, 2], [0, 1, 0, 0, 2]) == pytest.approx(0.6875)
    assert cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)
    assert np.isnan(cohen_kappa([0, -1], [-1, 1]))  # nothing in common
    assert np.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))  # one class only: chance agreement 1


def test_fleiss_kappa_on_the_textbook_example() -> None:
    # 10 items, 14 raters each, 5 categories: the worked example with kappa 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    labels = np.array([np.repeat(np.arange(5), row) for row in table])  # rater j: j-th label
    assert labels.shape == (10, 14)
    # Independently: per item, the share of agreeing pairs among all pairs of its ratings.
    agreeing = [np.mean([x == y for x, y in itertools.permutations(row, 2)]) for row in labels]
    shares = table.sum(axis=0) / table.sum()
    expected = (np.mean(agreeing) - np.sum(shares**2)) / (1 - np.sum(shares**2))
    assert np.mean(agreeing) == pytest.approx(0.378, abs=5e-4)
    assert np.sum(shares**2) == pytest.approx(0.213, abs=5e-4)
    assert fleiss_kappa(labels, 5) == pytest.approx(expected)
    assert fleiss_kappa(labels, 5) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_with_missing_ratings_matches_a_pairwise_loop() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, size=80)
    labels = simulate(truth, uniform_errors([0.8, 0.6, 0.7, 0.5], 3), rng, missing=0.4)
    per_item, pooled = [], []
    for row in labels:
        given = row[row >= 0]
        if len(given) >= 2:
            per_item.append(np.mean([x == y for x, y in itertools.permutations(given, 2)]))
            pooled.extend(given)
    shares = np.bincount(pooled, minlength=3) / len(pooled)
    chance = np.sum(shares**2)
    expected = (np.mean(per_item) - chance) / (1 - chance)
    assert fleiss_kappa(labels, 3) == pytest.approx(expected)


def test_fleiss_kappa_of_two_raters_is_scotts_pi() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, size=(100, 2))
    labels[:60, 1] = labels[:60, 0]
    observed = np.mean(labels[:, 0] == labels[:, 1])
    shares = np.bincount(labels.ravel(), minlength=4) / labels.size
    scott = (observed - np.sum(shares**2)) / (1 - np.sum(shares**2))
    assert fleiss_kappa(labels, 4) == pytest.approx(scott)


def test_pairwise_kappa_matches_scikit_learn_pair_by_pair() -> None:
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 4, size=120)
    labels = simulate(truth, uniform_errors([0.9, 0.7, 0.5, 0.6, 0.8], 4), rng, missing=0.3)
    labels[2:, 4] = -1  # annotator 4 labeled only two items, at most two in common with others
    labels[:2, 3] = -1  # ... and none in common with annotator 3
    kappas = pairwise_kappa(labels)
    np.testing.assert_allclose(kappas, kappas.T)
    for i, j in itertools.combinations(range(4), 2):
        both = (labels[:, i] >= 0) & (labels[:, j] >= 0)
        expected = cohen_kappa_score(labels[both, i], labels[both, j], labels=[0, 1, 2, 3])
        assert kappas[i, j] == pytest.approx(expected)
    assert np.isnan(kappas[3, 4]) and np.isnan(kappas[4, 3])


# --------------------------------------------------------------------------- report and queue


def test_annotator_report_hand_checked() -> None:
    labels = [[0, 0, 1], [1, 1, 1], [2, 2, 0], [0, -1, 0], [2, -1, -1]]
    seconds = np.array([[3, 5, 1], [4, 6, 1], [5, 7, 2], [2, np.nan, 1], [9, np.nan, np.nan]])
    report = annotator_report(labels, 3, seconds=seconds)
    assert [s.annotator_index for s in report] == [0, 1, 2]
    assert [s.n_labeled for s in report] == [5, 3, 4]
    # Item 4 has one label only: it is not compared with the consensus.
    assert [s.n_compared for s in report] == [4, 3, 4]
    assert [s.agreement_with_consensus for s in report] == [1.0, 1.0, 0.5]
    # kappa(0,1) = 1 on items 0-2; kappa(0,2) = 0.2 on items 0-3; kappa(1,2) = 0 on items 0-2.
    assert [s.mean_kappa_with_others for s in report] == pytest.approx([0.6, 0.5, 0.1])
    assert [s.median_seconds for s in report] == [4.0, 6.0, 1.0]
    assert np.isnan(annotator_report(labels, 3)[0].median_seconds)


def test_annotator_report_takes_any_consensus() -> None:
    labels = np.array([[0, 1], [1, 1], [0, 0]])
    by_array = annotator_report(labels, 2, consensus=[1, 1, 0])
    assert [s.agreement_with_consensus for s in by_array] == pytest.approx([2 / 3, 1.0])
    model = dawid_skene(labels, 2)
    by_model = annotator_report(labels, 2, consensus=model)
    expected = [np.mean(labels[:, j] == model.labels) for j in range(2)]
    assert [s.agreement_with_consensus for s in by_model] == pytest.approx(expected)
    with pytest.raises(AgreementError, match=r"'consensus' .* one label per item \(3\). Got 2"):
        annotator_report(labels, 2, consensus=[0, 1])
    with pytest.raises(AgreementError, match=r"'seconds' .* shape of 'labels', \(3, 2\)"):
        annotator_report(labels, 2, seconds=np.ones((3, 3)))
    with pytest.raises(AgreementError, match=r"'seconds' .* >= 0"):
        annotator_report(labels, 2, seconds=-np.ones((3, 2)))


def test_disagreements_most_contested_first() -> None:
    labels = [
        [0, 0, 1, -1],  # 2 vs 1
        [0, 0, 0, 0],  # agreed
        [0, 1, 2, 3],  # four ways: highest entropy
        [1, -1, -1, -1],  # one vote
        [1, 2, -1, -1],  # 1 vs 1
        [1, 2, 1, 2],  # 2 vs 2: same entropy as 1 vs 1, more votes
    ]
    np.testing.assert_array_equal(disagreements(labels), [2, 5, 4, 0])
    np.testing.assert_array_equal(disagreements(labels, min_votes=3), [2, 5, 0])
    assert disagreements(np.full((3, 2), -1)).size == 0
    with pytest.raises(AgreementError, match=r"'min_votes' .* int >= 2. Got 1"):
        disagreements(labels, min_votes=1)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("labels", "n_classes", "match"),
    [
        (
            [0, 1, 1],
            2,
            r"2-D array of shape \(n_items, n_annotators\). Got an array of shape \(3,\)",
        ),
        ([[0, 2]], 2, r"class indices in 0..1 \(n_classes=2\), or -1 for missing. Got 2 at "),
        ([[0, -2]], 2, r"class indices >= 0, or -1 for missing. Got -2 at position \(0, 1\)"),
        ([[0.5, 1.0]], 2, "integer class indices"),
        ([["cat", "dog"]], 2, "dtype <U3. Use label_matrix"),
        ([[0, 1]], 1, "'n_classes' parameter of majority_vote must be an int >= 2. Got 1."),
        ([[0, 1]], True, "'n_classes' .* Got True."),
    ],
)
def test_bad_labels_get_clear_errors(labels: object, n_classes: object, match: str) -> None:
    with pytest.raises(AgreementError, match=match):
        majority_vote(labels, n_classes)  # type: ignore[arg-type]


def test_bad_parameters_get_clear_errors() -> None:
    labels = [[0, 1], [1, 1]]
    with pytest.raises(AgreementError, match=r"'tie_break' .* \['random', 'lowest'\]. Got 'x'"):
        majority_vote(labels, 2, tie_break="x")
    with pytest.raises(AgreementError, match=r"'random_state' .* Got 'seed'"):
        majority_vote(labels, 2, random_state="seed")  # type: ignore[arg-type]
    with pytest.raises(AgreementError, match=r"'max_iter' parameter of dawid_skene .* Got 0"):
        dawid_skene(labels, 2, max_iter=0)
    with pytest.raises(AgreementError, match=r"'smoothing' .* >= 0. Got -1"):
        dawid_skene(labels, 2, smoothing=-1)
    with pytest.raises(AgreementError, match=r"'tol' .* Got nan"):
        dawid_skene(labels, 2, tol=float("nan"))
    with pytest.raises(AgreementError, match=r"'a' and 'b' .* same length .* Got 2 and 3"):
        cohen_kappa([0, 1], [0, 1, 1])
    with pytest.raises(AgreementError, match=r"'a' parameter of cohen_kappa must be a 1-D"):
        cohen_kappa([[0, 1]], [0, 1])
    float_labels = np.array([[0.0, 0.0], [1.0, -1.0]])  # whole numbers as floats are accepted
    np.testing.assert_array_equal(majority_vote(float_labels, 2).labels, [0, 1])


def test_agreement_error_is_an_inloop_error_and_a_value_error() -> None:
    assert issubclass(AgreementError, InloopError)
    assert issubclass(AgreementError, ValueError)
