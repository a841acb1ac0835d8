"""``inloop label disagreements|reviews|decide``: the review queue from the shell."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from inloop.cli.main import app
from inloop.label import (
    Review,
    add_items,
    annotate,
    create_project,
    current_labels,
    get_review,
    review_queue,
)
from inloop.web.auth import create_user


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": "ana"})


@pytest.fixture
def pets(db_url: str) -> list[int]:
    """Three pets labeled by three people; p0 and p1 are contested, p2 is unanimous."""
    create_project("pets", ["cat", "dog"])
    items = add_items("pets", [{"external_id": f"p{i}", "text": f"pet {i}"} for i in range(3)])
    votes = {"ana": ["cat", "dog", "cat"], "bo": ["dog", "dog", "cat"], "cy": ["dog", "cat", "cat"]}
    for who, labels in votes.items():
        for item, label in zip(items, labels, strict=True):
            annotate("pets", item, who, label)
    return items


def test_queue_disagreements_list_and_decide(runner: CliRunner, pets: list[int]) -> None:
    out = runner.invoke(app, ["label", "disagreements", "pets"])
    assert out.exit_code == 0, out.output
    assert "p0" in out.output and "p1" in out.output and "p2" not in out.output
    assert "'dog' by bo, cy; 'cat' by ana" in out.output
    assert "2 contested items wait for review in 'pets'" in out.output
    again = runner.invoke(app, ["label", "disagreements", "pets"])
    assert again.output == out.output  # the same votes queue nothing new

    listed = runner.invoke(app, ["label", "reviews", "pets", "--kind", "disagreement"])
    assert listed.exit_code == 0 and "disagreement" in listed.output
    rows = [line.split("│") for line in listed.output.splitlines() if " p0 " in line]
    review_id = int(rows[0][1])

    out = runner.invoke(
        app, ["label", "decide", "pets", str(review_id), "change", "--label", "cat"]
    )
    assert out.exit_code == 0, out.output
    assert f"Review {review_id} of 'pets': changed to 'cat' for item 'p0', decided by ana." in (
        out.output
    )
    assert current_labels("pets")[pets[0]].label == "cat"
    assert get_review("pets", review_id).decided_by == "ana"
    left = runner.invoke(app, ["label", "reviews", "pets"])
    assert " p0 " not in left.output and " p1 " in left.output


def test_review_errors_are_one_line(runner: CliRunner, pets: list[int]) -> None:
    out = runner.invoke(app, ["label", "reviews", "pets"])
    assert out.exit_code == 0 and "No open reviews in 'pets'" in out.output
    out = runner.invoke(app, ["label", "disagreements", "nope"])
    assert out.exit_code == 1 and "nope" in out.output and out.output.count("\n") == 1
    out = runner.invoke(app, ["label", "reviews", "pets", "--kind", "odd"])
    assert out.exit_code == 1 and "['audit', 'disagreement']" in out.output
    runner.invoke(app, ["label", "disagreements", "pets"])
    out = runner.invoke(app, ["label", "decide", "pets", "1", "maybe"])
    assert out.exit_code == 1 and "must be one of ['keep', 'change']" in out.output
    out = runner.invoke(app, ["label", "decide", "pets", "1", "change"])
    assert out.exit_code == 1 and "needs the new 'label'" in out.output
    out = runner.invoke(app, ["label", "decide", "pets", "99", "keep"])
    assert out.exit_code == 1 and "No review 99" in out.output


def test_deciding_needs_a_reviewer(runner: CliRunner, pets: list[int]) -> None:
    [first, *_] = [r.review_id for r in _queued(runner)]
    create_user("admin", "admin")
    out = runner.invoke(app, ["label", "decide", "pets", str(first), "keep"])
    assert out.exit_code == 1
    assert "inloop users create ana --role reviewer" in out.output
    annotator = create_user("ann", "annotator")
    out = runner.invoke(app, ["label", "decide", "pets", str(first), "keep", "--token", annotator])
    assert out.exit_code == 1
    assert "reviewer" in out.output and "user 'ann' has the role 'annotator'" in out.output
    rita = create_user("rita", "reviewer")
    out = runner.invoke(
        app, ["label", "decide", "pets", str(first), "keep"], env={"INLOOP_TOKEN": rita}
    )
    assert out.exit_code == 0, out.output
    assert get_review("pets", first).decided_by == "rita"


def _queued(runner: CliRunner) -> list[Review]:
    assert runner.invoke(app, ["label", "disagreements", "pets"]).exit_code == 0
    return review_queue("pets")
