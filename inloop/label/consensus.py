"""Consensus over a project's human labels: the vote matrix and the agreement summary.

:func:`agreement_summary` is what ``inloop label status`` and the review pages show:
how many items are unanimous or contested, each annotator's agreement with the
majority and with the others, Fleiss' kappa, and where Dawid-Skene's estimate of
the true label differs from the majority vote. The review queue of disagreements
(:mod:`inloop.label.review`) is built from the same :class:`Votes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, select

from inloop.label.projects import (
    Project,
    ProjectRef,
    _engine,
    load_project,
    require_single_label,
)
from inloop.label.tables import REVIEW_KINDS, label_annotations, label_items, label_reviews

__all__ = ["Votes", "agreement_summary", "consensus_dawid_skene", "human_votes", "vote_reason"]


@dataclass(frozen=True)
class Votes:
    """The human label matrix of a project, with time spent per label."""

    matrix: np.ndarray
    seconds: np.ndarray
    items: list[int]
    annotators: list[str]
    classes: list[str]


def human_votes(conn: Connection, project: Project) -> Votes:
    from inloop.label.agreement import label_matrix

    rows = conn.execute(
        select(
            label_annotations.c.item_id,
            label_annotations.c.annotator,
            label_annotations.c.label,
            label_annotations.c.seconds,
        )
        .where(
            label_annotations.c.project_id == project.project_id,
            label_annotations.c.origin == "human",
            label_annotations.c.label.is_not(None),
        )
        .order_by(label_annotations.c.annotation_id)
    ).all()
    built = label_matrix(
        [(r.item_id, r.annotator, r.label) for r in rows], classes=list(project.class_names)
    )
    items = [int(i) for i in built.items]  # type: ignore[call-overload]
    annotators = [str(a) for a in built.annotators]
    seconds = np.full(built.matrix.shape, np.nan)
    row_of = {item: i for i, item in enumerate(items)}
    column_of = {name: j for j, name in enumerate(annotators)}
    for r in rows:  # the later answer wins, as in the matrix
        seconds[row_of[r.item_id], column_of[r.annotator]] = (
            np.nan if r.seconds is None else r.seconds
        )
    return Votes(built.matrix, seconds, items, annotators, list(project.class_names))


def vote_reason(votes: Votes, row: int) -> str:
    by_class: dict[int, list[str]] = {}
    for j, k in enumerate(votes.matrix[row].tolist()):
        if k >= 0:
            by_class.setdefault(k, []).append(votes.annotators[j])
    ordered = sorted(by_class.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    n_votes = sum(len(names) for names in by_class.values())
    parts = [f"{votes.classes[k]!r} by {', '.join(sorted(names))}" for k, names in ordered]
    return f"{n_votes} votes: " + "; ".join(parts)


def consensus_dawid_skene(votes: Votes) -> Any:
    from inloop.label.agreement import dawid_skene

    if votes.matrix.size == 0 or not (votes.matrix >= 0).any():
        return None
    return dawid_skene(votes.matrix, len(votes.classes))


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def agreement_summary(project: ProjectRef, *, engine: Engine | None = None) -> dict[str, Any]:
    """What the project's annotators agree on, as JSON-ready values.

    ``items``: counts of items by consensus (``unanimous``: two or more people,
    one label; ``contested``: two or more people, several labels; ``single``:
    one person; ``unlabeled``: no person yet) and ``total``. ``annotators``:
    per annotator, labels given, agreement with the majority, mean Cohen's
    kappa with the others and median seconds per label
    (:func:`inloop.label.agreement.annotator_report`). ``fleiss_kappa`` of all
    annotators together. ``dawid_skene``: how many items it labels otherwise
    than the majority vote, and those items. ``reviews``: open reviews by
    kind, and decided ones. A value that cannot be computed is None.

    >>> from inloop.store import get_engine
    >>> from inloop.label.projects import create_project
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("summary-doc", ["a", "b"], engine=engine)
    >>> agreement_summary("summary-doc", engine=engine)["items"]
    {'total': 0, 'unanimous': 0, 'contested': 0, 'single': 0, 'unlabeled': 0}
    """
    from inloop.label.agreement import annotator_report, fleiss_kappa, majority_vote

    with _engine(engine).connect() as conn:
        record = load_project(conn, project)
        require_single_label(record, "agreement_summary")
        votes = human_votes(conn, record)
        total = conn.execute(
            select(func.count()).where(label_items.c.project_id == record.project_id)
        ).scalar_one()
        review_counts = conn.execute(
            select(label_reviews.c.kind, label_reviews.c.state, func.count())
            .where(label_reviews.c.project_id == record.project_id)
            .group_by(label_reviews.c.kind, label_reviews.c.state)
        ).all()
        external = {
            r.item_id: r.external_id
            for r in conn.execute(
                select(label_items.c.item_id, label_items.c.external_id).where(
                    label_items.c.project_id == record.project_id
                )
            )
        }
    n_classes = len(record.class_names)
    matrix = votes.matrix
    n_votes = (matrix >= 0).sum(axis=1) if matrix.size else np.zeros(0, dtype=int)
    distinct = (
        np.array([len(set(row[row >= 0].tolist())) for row in matrix], dtype=int)
        if matrix.size
        else np.zeros(0, dtype=int)
    )
    items = {
        "total": int(total),
        "unanimous": int(((n_votes >= 2) & (distinct == 1)).sum()),
        "contested": int(((n_votes >= 2) & (distinct >= 2)).sum()),
        "single": int((n_votes == 1).sum()),
        "unlabeled": int(total) - int((n_votes >= 1).sum()),
    }
    annotators: list[dict[str, Any]] = []
    kappa: float | None = None
    ds_summary: dict[str, Any] = {"differs_from_majority": 0, "items": []}
    if matrix.size:
        vote = majority_vote(matrix, n_classes, tie_break="lowest")
        for name, stats in zip(
            votes.annotators,
            annotator_report(matrix, n_classes, consensus=vote, seconds=votes.seconds),
            strict=True,
        ):
            annotators.append(
                {
                    "name": name,
                    "n_labeled": stats.n_labeled,
                    "agreement_with_consensus": _number(stats.agreement_with_consensus),
                    "mean_kappa_with_others": _number(stats.mean_kappa_with_others),
                    "median_seconds": _number(stats.median_seconds),
                    "n_compared": stats.n_compared,
                }
            )
        kappa = _number(fleiss_kappa(matrix, n_classes))
        ds = consensus_dawid_skene(votes)
        if ds is not None:
            differ = np.flatnonzero((vote.labels >= 0) & (ds.labels != vote.labels))
            ds_summary = {
                "differs_from_majority": len(differ),
                "items": [
                    {
                        "item_id": votes.items[i],
                        "external_id": external.get(votes.items[i]),
                        "majority": votes.classes[int(vote.labels[i])],
                        "dawid_skene": votes.classes[int(ds.labels[i])],
                        "confidence": float(ds.proba[i].max()),
                    }
                    for i in differ.tolist()
                ],
            }
    reviews: dict[str, Any] = {"open": dict.fromkeys(REVIEW_KINDS, 0), "decided": 0}
    for kind, state, count in review_counts:
        if state == "open":
            reviews["open"][kind] = int(count)
        elif state == "decided":
            reviews["decided"] += int(count)
    return {
        "project": record.name,
        "classes": list(record.class_names),
        "items": items,
        "annotators": annotators,
        "fleiss_kappa": kappa,
        "dawid_skene": ds_summary,
        "reviews": reviews,
    }
