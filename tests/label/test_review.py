"""Review queues: audit suspects and disagreements wait for a reviewer; decisions are events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Engine, select

from inloop.label.annotations import annotate, current_labels, history
from inloop.label.consensus import agreement_summary
from inloop.label.io import import_items
from inloop.label.items import add_items
from inloop.label.projects import LabelError, LabelNotFoundError, create_project
from inloop.label.review import (
    Review,
    decide,
    get_review,
    queue_audit,
    queue_disagreements,
    review_queue,
)
from inloop.label.tables import label_reviews
from inloop.store.db import get_engine

N_ITEMS = 500
CLASSES = [str(k) for k in range(10)]


@pytest.fixture(scope="module")
def noisy_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, set[str]]:
    """500 digits, 10% of their labels changed to another class (seed 3); changed external ids."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:N_ITEMS], y[:N_ITEMS]
    rng = np.random.default_rng(3)
    changed = rng.choice(N_ITEMS, N_ITEMS // 10, replace=False)
    noisy = y.copy()
    noisy[changed] = (y[changed] + rng.integers(1, 10, size=len(changed))) % 10
    return X, y, noisy, {str(i) for i in changed}


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def digits(
    engine: Engine, noisy_digits: tuple[np.ndarray, np.ndarray, np.ndarray, set[str]]
) -> str:
    """A project of digit feature items whose imported labels are 10% wrong."""
    X, _, noisy, _ = noisy_digits
    create_project("digits", CLASSES, engine=engine)
    import_items("digits", X, labels=[str(v) for v in noisy], engine=engine)
    return "digits"


def _queued(engine: Engine, digits: str) -> list[Review]:
    return queue_audit(digits, budget=60, engine=engine)


# -- audit --------------------------------------------------------------------------------


def test_queue_audit_flags_mostly_flipped_labels(
    engine: Engine,
    digits: str,
    noisy_digits: tuple[np.ndarray, np.ndarray, np.ndarray, set[str]],
) -> None:
    _, truth, noisy, changed = noisy_digits
    reviews = _queued(engine, digits)
    flagged = {r.item.external_id for r in reviews}
    assert 30 <= len(reviews) <= 60
    assert len(flagged & changed) / len(flagged) >= 0.85  # precision
    assert len(flagged & changed) / len(changed) >= 0.7  # recall
    scores = [r.score for r in reviews]
    assert scores == sorted(scores, reverse=True)
    top = reviews[0]
    position = int(top.item.external_id)
    assert top.kind == "audit" and top.state == "open"
    assert top.given == str(noisy[position]) and top.suggested != top.given
    assert top.confidence is not None and 0.0 < top.confidence <= 1.0
    assert top.reason.startswith(f"model is {top.confidence:.2f} sure this is {top.suggested!r}")
    assert top.source is not None and "audit_labels" in top.source
    assert top.item.kind == "features" and top.item.payload is not None
    # Most suggestions are the true digit.
    right = [r.suggested == str(truth[int(r.item.external_id)]) for r in reviews]
    assert np.mean(right) >= 0.8
    # The queue lists the same reviews, most suspicious first, and honours kind and limit.
    queue = review_queue(digits, engine=engine, limit=100)
    assert [r.review_id for r in queue] == [r.review_id for r in reviews]
    assert [r.review_id for r in review_queue(digits, "audit", limit=5, engine=engine)] == [
        r.review_id for r in reviews[:5]
    ]
    assert review_queue(digits, "disagreement", engine=engine) == []
    payload = queue[0].to_json()
    assert set(payload) >= {"id", "kind", "item", "given", "suggested", "confidence", "score"}
    assert payload["item"]["external_id"] == top.item.external_id


def test_decide_keep_and_change_record_events_and_the_review_wins(
    engine: Engine, digits: str
) -> None:
    reviews = _queued(engine, digits)
    first, second = reviews[0], reviews[1]
    before = datetime.now(UTC)

    kept = decide(digits, first.review_id, "rita", "keep", engine=engine)
    assert kept.state == "decided" and kept.decision == "keep"
    assert kept.decided_by == "rita" and kept.decided_label == first.given
    assert kept.decided_at is not None and kept.decided_at >= before

    target = next(c for c in CLASSES if c not in (second.given, second.suggested))
    changed = decide(digits, second.review_id, "sam", "change", target, engine=engine)
    assert changed.decision == "change" and changed.decided_label == target
    assert changed.decided_by == "sam"

    labels = current_labels(digits, engine=engine)
    assert labels[first.item.item_id].label == first.given
    assert labels[first.item.item_id].origin == "review"
    assert labels[first.item.item_id].annotator == "rita"
    assert labels[second.item.item_id].label == target
    assert labels[second.item.item_id].annotator == "sam"
    # A later import-rank or human label does not override the reviewer.
    annotate(digits, second.item.item_id, "ana", second.given, engine=engine)
    assert current_labels(digits, engine=engine)[second.item.item_id].label == target

    events = history(first.item.item_id, engine=engine)
    assert [(e.origin, e.annotator) for e in events] == [("import", "import"), ("review", "rita")]
    assert events[-1].reason == "confirmed in review"
    assert events[-1].annotation_id == kept.annotation_id
    last = history(second.item.item_id, engine=engine)[1]
    assert last.origin == "review" and last.label == target
    assert last.reason is not None and repr(second.given) in last.reason

    # Decided reviews leave the queue; what is recorded stays readable.
    open_ids = {r.review_id for r in review_queue(digits, limit=100, engine=engine)}
    assert first.review_id not in open_ids and second.review_id not in open_ids
    assert len(open_ids) == len(reviews) - 2
    assert get_review(digits, first.review_id, engine=engine).decision == "keep"


def test_decide_errors_name_the_value_and_what_is_accepted(engine: Engine, digits: str) -> None:
    reviews = _queued(engine, digits)
    review = reviews[0]
    with pytest.raises(LabelError, match=r"'decision'.*\['keep', 'change'\].*'maybe'"):
        decide(digits, review.review_id, "rita", "maybe", engine=engine)
    with pytest.raises(LabelError, match=r"needs the new 'label'.*'0', '1'"):
        decide(digits, review.review_id, "rita", "change", engine=engine)
    with pytest.raises(LabelError, match=r"Label 'ten' is not a class.*Accepted"):
        decide(digits, review.review_id, "rita", "change", "ten", engine=engine)
    other = next(c for c in CLASSES if c != review.given)
    with pytest.raises(LabelError, match=rf"keeps the given label '{review.given}'.*'change'"):
        decide(digits, review.review_id, "rita", "keep", other, engine=engine)
    with pytest.raises(LabelError, match="'annotator'"):
        decide(digits, review.review_id, "", "keep", engine=engine)
    with pytest.raises(LabelNotFoundError, match=r"No review 999999 in project 'digits'"):
        decide(digits, 999_999, "rita", "keep", engine=engine)
    with pytest.raises(LabelError, match="'review_id'"):
        decide(digits, "1", "rita", "keep", engine=engine)  # type: ignore[arg-type]
    # None of the failed calls wrote anything.
    assert len(history(review.item.item_id, engine=engine)) == 1
    decide(digits, review.review_id, "rita", "keep", review.given, engine=engine)
    with pytest.raises(LabelError, match=r"already decided \(keep .* by rita at .*\)"):
        decide(digits, review.review_id, "sam", "change", other, engine=engine)
    assert len(history(review.item.item_id, engine=engine)) == 2


def test_a_new_audit_supersedes_open_reviews_and_skips_decided_items(
    engine: Engine, digits: str
) -> None:
    first = _queued(engine, digits)
    decided = first[0]
    decide(digits, decided.review_id, "rita", "keep", engine=engine)
    second = _queued(engine, digits)
    assert decided.item.item_id not in {r.item.item_id for r in second}
    again = {r.item.item_id for r in second}
    with engine.connect() as conn:
        rows = conn.execute(select(label_reviews.c.review_id, label_reviews.c.state)).all()
    states = {r.review_id: r.state for r in rows}
    for review in first[1:]:
        expected = "superseded" if review.item.item_id in again else "open"
        assert states[review.review_id] == expected
    stale = next(r for r in first[1:] if r.item.item_id in again)
    with pytest.raises(LabelError, match=r"superseded.*review_queue"):
        decide(digits, stale.review_id, "rita", "keep", engine=engine)
    # Each item has at most one open audit review.
    open_items = [r.item.item_id for r in review_queue(digits, "audit", limit=500, engine=engine)]
    assert len(open_items) == len(set(open_items))


def test_queue_audit_through_the_flow(engine: Engine) -> None:
    X = np.r_[np.zeros((12, 1)), np.ones((12, 1))] + np.linspace(0, 0.1, 24)[:, None]
    y = ["low"] * 12 + ["high"] * 12
    y[4] = "high"
    create_project("tiny", ["low", "high"], engine=engine)
    import_items("tiny", X, labels=y, engine=engine)
    reviews = queue_audit(
        "tiny", estimator=LogisticRegression(), folds=3, use_flow=True, engine=engine
    )
    assert [r.item.external_id for r in reviews] == ["4"]
    assert reviews[0].suggested == "low"
    assert reviews[0].source is not None and reviews[0].source.startswith("AuditFlow/")


def test_queue_audit_needs_feature_items_and_labels(engine: Engine) -> None:
    create_project("texts", ["a", "b"], engine=engine)
    with pytest.raises(LabelError, match="no labeled items to audit"):
        queue_audit("texts", engine=engine)
    add_items("texts", [{"external_id": "t", "text": "hi"}], engine=engine)
    annotate("texts", "t", "ana", "a", engine=engine)
    with pytest.raises(LabelError, match=r"'features' items.*\['text'\]"):
        queue_audit("texts", engine=engine)
    with pytest.raises(LabelError, match=r"'budget'.*>= 1\. Got 0"):
        queue_audit("texts", budget=0, engine=engine)
    with pytest.raises(LabelError, match=r"'kind'.*\['audit', 'disagreement'\].*'other'"):
        review_queue("texts", "other", engine=engine)
    with pytest.raises(LabelNotFoundError, match="No labeling project 'nope'"):
        review_queue("nope", engine=engine)


# -- disagreements ------------------------------------------------------------------------


def _three_annotators(engine: Engine) -> tuple[list[int], np.ndarray, dict[int, dict[str, str]]]:
    """60 items labeled by annotators right 90%, 75% and 60% of the time (seed 11)."""
    create_project("votes", ["cat", "dog", "bird"], overlap=3, engine=engine)
    ids = add_items(
        "votes", [{"external_id": f"v{k}", "text": f"item {k}"} for k in range(60)], engine=engine
    )
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 3, size=60)
    given: dict[int, dict[str, str]] = {}
    for name, accuracy in [("ana", 0.9), ("bo", 0.75), ("cy", 0.6)]:
        for item_id, true in zip(ids, truth.tolist(), strict=True):
            right = rng.random() < accuracy
            label = true if right else (true + int(rng.integers(1, 3))) % 3
            text = ["cat", "dog", "bird"][label]
            annotate("votes", item_id, name, text, seconds=float(rng.uniform(1, 5)), engine=engine)
            given.setdefault(item_id, {})[name] = text
    return ids, truth, given


def test_disagreements_from_three_annotators(engine: Engine) -> None:
    _, _, given = _three_annotators(engine)
    contested = {i for i, votes in given.items() if len(set(votes.values())) > 1}
    reviews = queue_disagreements("votes", engine=engine)
    assert {r.item.item_id for r in reviews} == contested
    assert all(r.kind == "disagreement" and r.state == "open" for r in reviews)
    for review in reviews:
        votes = list(given[review.item.item_id].values())
        counts = {label: votes.count(label) for label in votes}
        assert counts[review.given or ""] == max(counts.values())
        assert review.reason.startswith("3 votes: ")
        for name, label in given[review.item.item_id].items():
            assert name in review.reason and repr(label) in review.reason
        assert review.suggested in ("cat", "dog", "bird")
        assert review.score == pytest.approx(1 - max(counts.values()) / 3)
    scores = [r.score for r in reviews]
    assert scores == sorted(scores, reverse=True)

    # Asking again keeps the open reviews whose votes did not change.
    assert [r.review_id for r in queue_disagreements("votes", engine=engine)] == [
        r.review_id for r in reviews
    ]
    # A new vote supersedes the item's review; a decided item is not queued again.
    moved, decided = reviews[0], reviews[1]
    annotate("votes", moved.item.item_id, "dee", "bird", engine=engine)
    decide("votes", decided.review_id, "rita", "change", "cat", engine=engine)
    after = {r.item.item_id: r for r in queue_disagreements("votes", engine=engine)}
    assert decided.item.item_id not in after
    assert after[moved.item.item_id].review_id != moved.review_id
    assert after[moved.item.item_id].reason.startswith("4 votes: ")
    assert get_review("votes", moved.review_id, engine=engine).state == "superseded"
    assert current_labels("votes", engine=engine)[decided.item.item_id].label == "cat"
    assert len(review_queue("votes", "disagreement", limit=500, engine=engine)) == len(after)


def test_agreement_summary(engine: Engine) -> None:
    _, _, given = _three_annotators(engine)
    queue_disagreements("votes", engine=engine)
    add_items("votes", [{"external_id": "fresh", "text": "new"}], engine=engine)
    summary = agreement_summary("votes", engine=engine)
    items = summary["items"]
    contested = sum(len(set(v.values())) > 1 for v in given.values())
    assert items == {
        "total": 61,
        "unanimous": 60 - contested,
        "contested": contested,
        "single": 0,
        "unlabeled": 1,
    }
    by_name = {a["name"]: a for a in summary["annotators"]}
    assert set(by_name) == {"ana", "bo", "cy"}
    assert all(a["n_labeled"] == 60 for a in by_name.values())
    assert by_name["ana"]["agreement_with_consensus"] > by_name["cy"]["agreement_with_consensus"]
    assert 1.0 <= by_name["ana"]["median_seconds"] <= 5.0
    assert summary["fleiss_kappa"] is not None and 0.0 < summary["fleiss_kappa"] < 1.0
    ds = summary["dawid_skene"]
    assert ds["differs_from_majority"] == len(ds["items"])
    for entry in ds["items"]:
        assert entry["majority"] != entry["dawid_skene"]
    assert summary["reviews"]["open"]["disagreement"] == contested
    assert summary["reviews"]["open"]["audit"] == 0 and summary["reviews"]["decided"] == 0
    # An empty project summarizes to zeros and Nones.
    create_project("empty", ["a", "b"], engine=engine)
    empty = agreement_summary("empty", engine=engine)
    assert empty["annotators"] == [] and empty["fleiss_kappa"] is None
