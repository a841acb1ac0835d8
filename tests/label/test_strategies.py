"""Sampling strategies: orderings against brute-force references, diversity, exclude, errors."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from inloop.errors import InloopError
from inloop.label import strategies
from inloop.label.strategies import (
    STRATEGIES,
    CoreSetSampler,
    EntropySampler,
    HybridSampler,
    LeastConfidenceSampler,
    MarginSampler,
    RandomSampler,
    SamplingStrategy,
    StrategyError,
    default_strategy,
    make_strategy,
)


def random_proba(rng: np.random.RandomState, rows: int, classes: int) -> np.ndarray:
    logits = rng.normal(scale=2.0, size=(rows, classes))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    return proba / proba.sum(axis=1, keepdims=True)


# -- brute-force references: plain Python, one row at a time -----------------


def ref_least_confidence(row: list[float]) -> float:
    return 1.0 - max(row)


def ref_margin(row: list[float]) -> float:
    first, second = sorted(row, reverse=True)[:2]
    return 1.0 - (first - second)


def ref_entropy(row: list[float]) -> float:
    return -sum(p * math.log(p) for p in row if p > 0)


def ref_select(score: Any, proba: np.ndarray, n: int, excluded: set[int]) -> list[int]:
    scored = [(score(row), i) for i, row in enumerate(proba.tolist()) if i not in excluded]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [i for _, i in scored[:n]]


def ref_k_center(X: np.ndarray, excluded: list[int], n: int) -> list[int]:
    """Greedy k-center with the excluded rows as the first centres, in plain Python."""
    rows = X.tolist()
    centres = [rows[i] for i in excluded]
    picks: list[int] = []
    for _ in range(n):
        best, best_distance = -1, -1.0
        for i, row in enumerate(rows):
            if i in excluded or i in picks:
                continue
            distance = min(sum((a - b) ** 2 for a, b in zip(row, c, strict=True)) for c in centres)
            if distance > best_distance:
                best, best_distance = i, distance
        picks.append(best)
        centres.append(rows[best])
    return picks


UNCERTAINTY = [
    (LeastConfidenceSampler, ref_least_confidence),
    (MarginSampler, ref_margin),
    (EntropySampler, ref_entropy),
]


@pytest.mark.parametrize(("cls", "reference"), UNCERTAINTY)
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_uncertainty_scores_and_order_match_brute_force(
    cls: type[strategies.UncertaintySampler], reference: Any, classes: int
) -> None:
    rng = np.random.RandomState(classes)
    proba = random_proba(rng, 500, classes)
    strategy = cls()
    expected_scores = [reference(row) for row in proba.tolist()]
    np.testing.assert_allclose(strategy.scores(proba), expected_scores, rtol=1e-12, atol=1e-12)
    for n in (1, 7, 50):
        got = strategy.select(proba, n=n).tolist()
        assert got == ref_select(reference, proba, n, set())
    excluded = set(rng.choice(500, 200, replace=False).tolist())
    got = strategy.select(proba, n=30, exclude=sorted(excluded)).tolist()
    assert got == ref_select(reference, proba, 30, excluded)


@pytest.mark.parametrize(("cls", "reference"), UNCERTAINTY)
def test_uncertainty_on_a_larger_pool_uses_partition_correctly(
    cls: type[strategies.UncertaintySampler], reference: Any
) -> None:
    rng = np.random.RandomState(7)
    proba = random_proba(rng, 20_000, 5)
    mask = rng.rand(20_000) < 0.5
    got = cls().select(proba, n=25, exclude=mask).tolist()
    assert got == ref_select(reference, proba, 25, set(np.flatnonzero(mask).tolist()))


def test_ties_go_to_the_lower_position() -> None:
    proba = np.full((50, 4), 0.25)
    assert MarginSampler().select(proba, n=5).tolist() == [0, 1, 2, 3, 4]
    assert MarginSampler().select(proba, n=3, exclude=[0, 2]).tolist() == [1, 3, 4]


def test_entropy_treats_zero_probabilities_as_zero_contribution() -> None:
    proba = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(EntropySampler().scores(proba), [0.0, math.log(2), math.log(3)])
    assert EntropySampler().select(proba, n=3).tolist() == [2, 1, 0]


def test_least_confidence_and_entropy_differ_from_margin_where_they_should() -> None:
    # Row 0: two classes tied, the rest near zero (margin 0 -> most uncertain by margin).
    # Row 1: flat over many classes but one slightly ahead (high entropy, larger margin).
    proba = np.array([[0.49, 0.49, 0.02, 0.0, 0.0], [0.3, 0.175, 0.175, 0.175, 0.175]])
    assert MarginSampler().select(proba, n=1).tolist() == [0]
    assert EntropySampler().select(proba, n=1).tolist() == [1]
    assert LeastConfidenceSampler().select(proba, n=1).tolist() == [1]


# -- hybrid --------------------------------------------------------------------


def test_hybrid_batch_of_k_hits_k_different_blobs() -> None:
    grid = np.array([[x, y] for x in range(4) for y in range(2)], dtype=float) * 10.0
    for seed in range(5):
        # Eight well-separated blobs (centres 10 apart, spread 0.5) in shuffled order.
        X, blob = make_blobs(n_samples=400, centers=grid, cluster_std=0.5, random_state=seed)
        rng = np.random.RandomState(seed)
        proba = random_proba(rng, 400, 3)
        # prefilter=400: every item passes the uncertainty filter, so diversity decides.
        picks = HybridSampler(batch_size=8, prefilter=400, random_state=seed).select(proba, X=X)
        assert sorted(set(blob[picks].tolist())) == list(range(8))


def test_hybrid_spreads_more_than_margin_alone() -> None:
    centres = np.array([[x, y] for x in range(5) for y in range(2)], dtype=float) * 10.0
    X, blob = make_blobs(n_samples=1000, centers=centres, cluster_std=0.4, random_state=3)
    # The model is most unsure inside blob 0, a little unsure elsewhere.
    rng = np.random.RandomState(3)
    proba = random_proba(rng, 1000, 4)
    proba[blob == 0] = 0.25
    margin_blobs = set(blob[MarginSampler(batch_size=10).select(proba)].tolist())
    hybrid = HybridSampler(batch_size=10, prefilter_factor=20, random_state=0)
    hybrid_blobs = set(blob[hybrid.select(proba, X=X)].tolist())
    assert margin_blobs == {0}
    assert len(hybrid_blobs) >= 5


def test_hybrid_picks_only_from_the_prefiltered_most_uncertain() -> None:
    rng = np.random.RandomState(1)
    proba = random_proba(rng, 3000, 6)
    X = rng.normal(size=(3000, 5))
    exclude = rng.rand(3000) < 0.3
    picks = HybridSampler(batch_size=10, random_state=0).select(proba, X=X, exclude=exclude)
    top_200 = set(MarginSampler().select(proba, n=200, exclude=exclude).tolist())
    assert len(picks) == 10
    assert set(picks.tolist()) <= top_200
    assert not exclude[picks].any()
    margin = MarginSampler().scores(proba)[picks]
    assert np.all(np.diff(margin) <= 0)  # ordered most uncertain first


def test_hybrid_is_deterministic_with_a_seed_and_depends_on_it() -> None:
    rng = np.random.RandomState(2)
    proba = random_proba(rng, 2000, 10)
    X = rng.normal(size=(2000, 16))
    runs = [HybridSampler(random_state=s).select(proba, X=X).tolist() for s in (0, 0, 1, 2, 3)]
    assert runs[0] == runs[1]
    assert any(run != runs[0] for run in runs[2:])
    hybrid = HybridSampler(random_state=5)
    assert hybrid.select(proba, X=X).tolist() == hybrid.select(proba, X=X).tolist()


def test_hybrid_without_features_clusters_the_probabilities() -> None:
    # Three groups of rows with different (but equally uncertain) confusions.
    rows = [[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.5, 0.5]]
    proba = np.repeat(np.array(rows), 10, axis=0)
    picks = HybridSampler(batch_size=3, random_state=0).select(proba)
    assert sorted((picks // 10).tolist()) == [0, 1, 2]


def test_hybrid_with_fewer_distinct_rows_than_clusters_still_fills_the_batch() -> None:
    proba = np.tile([[0.6, 0.4], [0.55, 0.45]], (20, 1))
    X = np.tile([[0.0, 1.0], [1.0, 0.0]], (20, 1))
    picks = HybridSampler(batch_size=5, random_state=0).select(proba, X=X)
    assert len(set(picks.tolist())) == 5


@pytest.mark.parametrize("pick", ["center", "uncertain"])
def test_hybrid_pick_rules(pick: str) -> None:
    # One tight blob per cluster; within a blob the member nearest the centre is item 0
    # of the blob, the most uncertain is item 1.
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    offsets = np.array([[0.0, 0.0], [0.5, 0.0], [-0.3, 0.2], [0.2, -0.3]])
    X = np.concatenate([c + offsets for c in centres])
    proba = np.tile([[0.8, 0.2], [0.52, 0.48], [0.9, 0.1], [0.95, 0.05]], (3, 1))
    picks = HybridSampler(batch_size=3, pick=pick, random_state=0).select(proba, X=X)
    expected_member = 0 if pick == "center" else 1
    assert sorted(picks.tolist()) == [4 * b + expected_member for b in range(3)]


def test_hybrid_parameters_are_validated_when_used() -> None:
    proba = np.full((5, 2), 0.5)
    bad = HybridSampler(prefilter=0)  # stored unchanged, scikit-learn style
    assert bad.prefilter == 0
    with pytest.raises(StrategyError, match=r"'prefilter' parameter of HybridSampler .* Got 0"):
        bad.select(proba)
    with pytest.raises(StrategyError, match=r"'pick' .* \['center', 'uncertain'\]"):
        HybridSampler(pick="nearest").select(proba)
    with pytest.raises(
        StrategyError, match=r"'X' argument of HybridSampler\.select must be finite"
    ):
        HybridSampler(batch_size=2).select(proba, X=np.full((5, 2), np.nan))


# -- core-set and random ---------------------------------------------------------


def test_coreset_matches_brute_force_k_center() -> None:
    rng = np.random.RandomState(4)
    X = rng.normal(size=(120, 3))
    proba = random_proba(rng, 120, 3)
    excluded = [5, 17, 60]
    picks = CoreSetSampler(batch_size=8).select(proba, X=X, exclude=excluded)
    assert picks.tolist() == ref_k_center(X, excluded, 8)


def test_coreset_without_exclude_starts_at_random_then_goes_far() -> None:
    X = np.array([[0.0], [1.0], [2.0], [100.0]])
    proba = np.full((4, 2), 0.5)
    for seed in range(5):
        picks = CoreSetSampler(batch_size=2, random_state=seed).select(proba, X=X).tolist()
        assert picks[1] == (3 if picks[0] != 3 else 0)


def test_random_sampler_is_uniform_over_the_available_items() -> None:
    proba = np.full((20, 2), 0.5)
    counts = np.zeros(20)
    rng = np.random.RandomState(0)
    for _ in range(2000):
        counts[RandomSampler(random_state=rng).select(proba, n=2, exclude=[0, 1])] += 1
    assert counts[:2].sum() == 0
    assert counts[2:].min() > 150 and counts[2:].max() < 300  # expected 222 each
    same = [RandomSampler(random_state=3).select(proba).tolist() for _ in range(2)]
    assert same[0] == same[1]


# -- inputs, exclude, n ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_handles_exclude_and_n(name: str) -> None:
    rng = np.random.RandomState(5)
    proba = random_proba(rng, 300, 4)
    X = rng.normal(size=(300, 6))
    mask = rng.rand(300) < 0.9
    strategy = make_strategy(name, random_state=0)
    by_mask = strategy.select(proba, X=X, n=12, exclude=mask)
    by_index = strategy.select(proba, X=X, n=12, exclude=np.flatnonzero(mask))
    assert by_mask.tolist() == by_index.tolist()
    assert by_mask.dtype == np.intp and len(set(by_mask.tolist())) == 12
    assert not mask[by_mask].any()
    rest = strategy.select(proba, X=X, n=10_000, exclude=mask)
    assert sorted(rest.tolist()) == np.flatnonzero(~mask).tolist()
    assert strategy.select(proba, X=X, exclude=np.ones(300, bool)).tolist() == []
    assert strategy.select(np.empty((0, 3)), n=3).tolist() == []


def test_probabilities_in_other_dtypes_are_accepted() -> None:
    one_hot = np.eye(3, dtype=int)[[0, 1, 2, 1]]
    assert MarginSampler().select(one_hot, n=2).tolist() == [0, 1]
    proba32 = random_proba(np.random.RandomState(0), 100, 10).astype(np.float32)
    assert (
        MarginSampler().select(proba32, n=5).tolist()
        == MarginSampler().select(proba32.astype(np.float64), n=5).tolist()
    )


def test_inputs_are_not_modified() -> None:
    rng = np.random.RandomState(6)
    proba = random_proba(rng, 200, 5)
    X = rng.normal(size=(200, 3))
    exclude = np.array([3, 1, 2])
    copies = proba.copy(), X.copy(), exclude.copy()
    for cls in STRATEGIES.values():
        cls(random_state=0).select(proba, X=X, exclude=exclude)
    for given, original in zip((proba, X, exclude), copies, strict=True):
        np.testing.assert_array_equal(given, original)


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"proba": [0.5, 0.5]}, r"'proba' argument of MarginSampler.select must be a 2-D .* \(2,\)"),
    ({"proba": [[1.0], [1.0]]}, r"n_classes >= 2.* Got shape \(2, 1\)"),
    ({"proba": [[0.5, np.nan]]}, r"must be finite. Row 0"),
    ({"proba": [[0.5, 0.5], [2.0, 3.0]]}, r"must sum to 1 .* Row 1 sums to 5"),
    ({"proba": [[1.5, -0.5]]}, r"probabilities >= 0. Row 0"),
    ({"proba": [["a", "b"]]}, r"must hold numbers .* Got dtype <U1"),
    ({"proba": [[0.5, 0.5], [1.0]]}, r"could not be read as an array"),
    ({"X": np.zeros((3, 2))}, r"'X' argument .* one row per row of 'proba' \(2\). Got shape"),
    ({"X": np.zeros(2)}, r"'X' argument .* Got shape \(2,\)"),
    ({"n": 0}, r"The 'n' parameter of MarginSampler.select must be an int >= 1. Got 0."),
    ({"n": 2.0}, r"'n' parameter .* Got 2.0"),
    ({"n": True}, r"'n' parameter .* Got True"),
    ({"exclude": [5]}, r"'exclude' argument .* holds index 5; indices must be in \[0, 2\)"),
    ({"exclude": [-1]}, r"holds index -1"),
    ({"exclude": [True]}, r"boolean mask must have one entry per row of 'proba' \(2\)"),
    ({"exclude": [0.5]}, r"1-D array of row indices or a boolean mask of length 2"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS)
def test_bad_inputs_get_errors_naming_the_argument(kwargs: dict[str, Any], message: str) -> None:
    kwargs = {"proba": [[0.6, 0.4], [0.5, 0.5]], **kwargs}
    with pytest.raises(StrategyError, match=message) as info:
        MarginSampler().select(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InloopError)


def test_probabilities_within_the_tolerance_are_accepted() -> None:
    proba = np.array([[0.6004, 0.4], [0.5, 0.4996]])
    assert MarginSampler().select(proba, n=1).tolist() == [1]


def test_parameters_are_stored_unchanged_and_validated_when_used() -> None:
    strategy = MarginSampler(batch_size=0)
    assert strategy.get_params() == {"batch_size": 0, "random_state": None}
    with pytest.raises(
        StrategyError,
        match=r"^The 'batch_size' parameter of MarginSampler must be an int >= 1. "
        r"Got 0.$",
    ):
        strategy.select([[0.5, 0.5]])
    with pytest.raises(StrategyError, match="'random_state' parameter of RandomSampler"):
        RandomSampler(random_state="seed").select([[0.5, 0.5]])
    with pytest.raises(TypeError):
        MarginSampler(5)  # type: ignore[call-arg]  # parameters are keyword-only


# -- registry and defaults ------------------------------------------------------------


def test_registry_names_the_built_ins() -> None:
    assert {
        "random": RandomSampler,
        "least_confidence": LeastConfidenceSampler,
        "margin": MarginSampler,
        "entropy": EntropySampler,
        "hybrid": HybridSampler,
        "coreset": CoreSetSampler,
    } == STRATEGIES
    assert all(issubclass(cls, SamplingStrategy) for cls in STRATEGIES.values())


def test_make_strategy_builds_and_explains_its_errors() -> None:
    strategy = make_strategy("least-confidence", batch_size=3)
    assert isinstance(strategy, LeastConfidenceSampler) and strategy.batch_size == 3
    with pytest.raises(
        StrategyError, match=r"'uncertainty'. Valid names: coreset, entropy, hybrid"
    ):
        make_strategy("uncertainty")
    with pytest.raises(
        StrategyError, match=r"no parameter 'k'. Valid parameters: batch_size, pick"
    ):
        make_strategy("hybrid", k=3)


def test_default_strategy_is_margin_for_one_and_hybrid_for_batches() -> None:
    single = default_strategy(1)
    assert isinstance(single, MarginSampler) and single.batch_size == 1
    batch = default_strategy(10, random_state=4)
    assert isinstance(batch, HybridSampler) and batch.get_params()["batch_size"] == 10
    assert batch.random_state == 4
    with pytest.raises(StrategyError, match=r"'batch_size' parameter of default_strategy.*Got 0"):
        default_strategy(0)


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(strategies, optionflags=doctest.ELLIPSIS)
    assert tried > 10 and failures == 0
