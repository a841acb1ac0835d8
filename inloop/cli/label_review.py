"""``inloop label disagreements|reviews|decide``: the review queue from the shell.

Queue the items annotators disagree on, list what waits for a reviewer (from
the audit too), and record the reviewer's final call::

    inloop label disagreements digits          # queue contested items for review
    inloop label reviews digits                # open reviews, most suspicious first
    inloop label decide digits 12 keep         # the given label is right
    inloop label decide digits 13 change --label 7
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from inloop.cli.identity import TOKEN_OPTION, acting_user

if TYPE_CHECKING:
    from inloop.label.review import Review

__all__ = ["decide_command", "disagreements_command", "reviews_command"]


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports the label commands to register them."""
    from inloop.cli import main

    return main


def _table(title: str, reviews: list[Review], *, kinds: bool = True) -> Table:
    table = Table(title=title)
    columns = ("review", "kind", "item", "given", "suggested", "confidence", "why")
    for column in columns if kinds else [c for c in columns if c != "kind"]:
        table.add_column(column, justify="right" if column in ("review", "confidence") else "left")
    for r in reviews:
        table.add_row(
            str(r.review_id),
            *([r.kind] if kinds else []),
            escape(r.item.external_id),
            escape(str(r.given)),
            escape(str(r.suggested)),
            "" if r.confidence is None else f"{r.confidence:.2f}",
            escape(r.reason),
        )
    return table


def disagreements_command(
    name: str = typer.Argument(..., help="The project."),
    min_votes: int = typer.Option(
        2, "--min-votes", min=2, help="Only items labeled by at least this many people."
    ),
    show: int = typer.Option(20, "--show", min=1, help="Print this many of the queue."),
) -> None:
    """Queue every item whose annotators disagree for a reviewer's final call."""
    from inloop.label.review import queue_disagreements

    with _cli().user_errors():
        reviews = queue_disagreements(name, min_votes=min_votes)
    console = _cli()._stdout()
    if not reviews:
        console.print(escape(f"No contested items in {name!r}: the annotators agree."))
        return
    title = f"Contested items of {escape(name)} (top {min(show, len(reviews))})"
    console.print(_table(title, reviews[:show], kinds=False))
    console.print(
        escape(
            f"{len(reviews)} contested items wait for review in {name!r}. Decide with: "
            f"inloop label decide {name} REVIEW keep|change [--label LABEL]"
        ),
        soft_wrap=True,
    )


def reviews_command(
    name: str = typer.Argument(..., help="The project."),
    kind: str | None = typer.Option(
        None, "--kind", help="Only 'audit' (likely mislabels) or 'disagreement' reviews."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List the project's open reviews, most suspicious first."""
    from inloop.label.review import review_queue

    with _cli().user_errors():
        reviews = review_queue(name, kind, limit=limit)
    console = _cli()._stdout()
    if not reviews:
        console.print(
            escape(
                f"No open reviews in {name!r}. Queue some with: inloop label audit {name}, "
                f"or inloop label disagreements {name}"
            ),
            soft_wrap=True,
        )
        return
    console.print(_table(f"Open reviews of {escape(name)}", reviews))


def decide_command(
    name: str = typer.Argument(..., help="The project."),
    review_id: int = typer.Argument(..., help="The review's number (inloop label reviews)."),
    decision: str = typer.Argument(..., help="keep (the given label is right) or change."),
    label: str | None = typer.Option(None, "--label", help="The right label, with change."),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Record your final call on an open review: it becomes the item's label."""
    from inloop.label.review import decide

    with _cli().user_errors():
        user = acting_user(token, "deciding a review", role="reviewer")
        review = decide(name, review_id, user.name, decision, label)
    verb = "kept" if review.decision == "keep" else "changed to"
    _cli()._stdout().print(
        escape(
            f"Review {review.review_id} of {name!r}: {verb} {review.decided_label!r} for item "
            f"{review.item.external_id!r}, decided by {review.decided_by}."
        ),
        soft_wrap=True,
    )
