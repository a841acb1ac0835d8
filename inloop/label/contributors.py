"""Contributors: the people (and importers and models) behind a snapshot's labels, with counts.

A model trained on a snapshot learned from the labels of its items as they
were then. :func:`snapshot_contributors` says who gave them: for each
annotator, how many labels they gave those items up to the snapshot, how many
review decisions, and how many of the snapshot's labels are theirs (a
reviewer's decision wins over people's labels, which win over imported and
model labels: see :mod:`inloop.label.annotations`). It reads the metadata
database only, not the snapshot's arrays.

>>> import numpy as np
>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.label.annotations import annotate
>>> from inloop.label.projects import create_project
>>> from inloop.label.io import import_items
>>> from inloop.label.snapshots import snapshot
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://contrib-doc")
>>> _ = create_project("contrib-doc", ["a", "b"], engine=engine)
>>> ids = import_items("contrib-doc", np.eye(2), labels=["a", "b"], engine=engine).item_ids
>>> _ = annotate("contrib-doc", ids[0], "rita", "b", origin="review", engine=engine)
>>> taken = snapshot("contrib-doc", engine=engine, artifacts=store)
>>> people = snapshot_contributors(taken.snapshot_id, engine=engine).contributors
>>> [(p.name, p.labels, p.reviews, p.final) for p in people]
[('import', 2, 0, 1), ('rita', 0, 1, 1)]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from inloop.label.annotations import current_query, derive_current
from inloop.label.projects import LabelError, LabelNotFoundError, _engine, load_project
from inloop.label.tables import label_annotations, label_projects, label_snapshots

__all__ = ["Contributor", "SnapshotContributors", "snapshot_contributors"]


@dataclass(frozen=True)
class Contributor:
    """One annotator of a snapshot's items.

    ``labels`` counts the labels they gave those items up to the snapshot
    (a person's, an import's or a model's; skips excluded), ``reviews`` their
    review decisions, ``final`` the snapshot's labels that are theirs.
    ``origins`` says which kinds of events they gave.
    """

    name: str
    labels: int
    reviews: int
    final: int
    origins: tuple[str, ...]


@dataclass(frozen=True)
class SnapshotContributors:
    """A snapshot's record (no arrays) and the contributors of its labels, most final first."""

    snapshot_id: int
    name: str
    project: str
    created_at: datetime
    created_by: str
    as_of: datetime
    content_hash: str
    n_items: int
    contributors: tuple[Contributor, ...]


def snapshot_contributors(
    snapshot_ref: int | str, *, engine: Engine | None = None
) -> SnapshotContributors:
    """The snapshot ``snapshot_ref`` (id or name) and who gave its labels, with counts."""
    if isinstance(snapshot_ref, bool) or not isinstance(snapshot_ref, int | str):
        raise LabelError(f"Pass a snapshot id (int) or name (str). Got {snapshot_ref!r}.")
    column = (
        label_snapshots.c.snapshot_id if isinstance(snapshot_ref, int) else label_snapshots.c.name
    )
    with _engine(engine).connect() as conn:
        row = conn.execute(
            select(label_snapshots, label_projects.c.name.label("project_name"))
            .join(label_projects, label_projects.c.project_id == label_snapshots.c.project_id)
            .where(column == snapshot_ref)
        ).first()
        if row is None:
            raise LabelNotFoundError(
                f"No snapshot {snapshot_ref!r}. List them with list_snapshots(project)."
            )
        given: list[tuple[str, str, int]] = []
        final: Counter[str] = Counter()
        if row.last_annotation_id is not None:
            project = load_project(conn, row.project_id)
            given = [
                (r.annotator, r.origin, int(r.n))
                for r in conn.execute(
                    select(
                        label_annotations.c.annotator,
                        label_annotations.c.origin,
                        func.count().label("n"),
                    )
                    .where(
                        label_annotations.c.project_id == row.project_id,
                        label_annotations.c.annotation_id <= row.last_annotation_id,
                        label_annotations.c.created_at <= row.as_of,
                        ~label_annotations.c.skipped,
                    )
                    .group_by(label_annotations.c.annotator, label_annotations.c.origin)
                )
            ]
            events = conn.execute(
                current_query(project, as_of=row.as_of, up_to_id=row.last_annotation_id)
            ).all()
            final.update(label.annotator for label in derive_current(events).values())
    labels: Counter[str] = Counter()
    reviews: Counter[str] = Counter()
    origins: dict[str, set[str]] = {}
    for name, origin, n in given:
        (reviews if origin == "review" else labels)[name] += n
        origins.setdefault(name, set()).add(origin)
    people = [
        Contributor(name, labels[name], reviews[name], final[name], tuple(sorted(kinds)))
        for name, kinds in origins.items()
    ]
    people.sort(key=lambda p: (-p.final, -p.labels - p.reviews, p.name))
    return SnapshotContributors(
        snapshot_id=row.snapshot_id,
        name=row.name,
        project=row.project_name,
        created_at=row.created_at,
        created_by=row.created_by,
        as_of=row.as_of,
        content_hash=row.content_hash,
        n_items=row.n_items,
        contributors=tuple(people),
    )
