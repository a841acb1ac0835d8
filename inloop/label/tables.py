"""The metadata tables of labeling, as SQLAlchemy Core, on the store's ``metadata``.

They live on the same :data:`inloop.store.tables.metadata` object as the flow
tables, so a new database gets them with ``create_all`` and the schema test
compares them with the migrations. Revision ``0002_labeling`` creates them in
databases made before labeling existed; this module must describe the same
schema as the newest migration.

Tables:

``label_projects``
    one row per labeling project: its classes (``[{"name", "key"}]``), how many
    annotators each item needs (``overlap``) and how long a lease lasts.
``label_items``
    what people label: a small JSON ``payload`` or the artifact key of a large
    one, the ``external_id`` the user knows it by (unique per project), where it
    came from and its queue ``priority`` (higher first). ``n_labels`` counts the
    annotators who gave it a label through the queue or ``annotate``: derived
    from ``label_annotations`` and kept on the row so that the queue can lock
    and re-check one row per item. ``note`` (revision ``0010_item_note``) is
    optional text shown to labelers beside the item: why it is in the queue.
    ``count`` (revision ``0012``) is how many times the item was added: serving
    routes an input it has routed before to the same item and counts it.
``label_annotations``
    append-only events: a label (NULL for a skip) an annotator, a model, an
    import or a reviewer gave an item. A correction is a new event; the current
    label is derived. In a ``multi_label`` project (revision ``0006_multi_label``)
    ``label`` stays NULL and ``labels`` holds the sorted list of classes given
    (possibly empty); ``skipped`` tells a skip from an answer in both.
``label_assignments``
    leases: an item handed to an annotator until ``expires_at``. ``state`` is
    ``active`` (held, or expired when ``expires_at`` is past), ``done`` (answered)
    or ``released`` (given back).
``label_snapshots``
    the labels of a project as of a moment, with the content hash of their
    canonical bytes and the artifact keys of the stored arrays.
``label_reviews``
    the review queue (revision ``0003_reviews``): an item whose label an audit
    suspects (``kind`` ``audit``) or whose annotators disagree
    (``disagreement``), with the given and the suggested label, how suspicious
    it is (``score``, higher first) and why. A row is ``open`` until a
    reviewer decides it (``decided``: ``decision``, ``decided_label``, who and
    when, and the ``annotation_id`` of the review event that carries the
    label) or a newer review of the same item replaces it (``superseded``).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from inloop.store.tables import UTCDateTime, json_type, metadata

__all__ = [
    "ASSIGNMENT_STATES",
    "ITEM_KINDS",
    "ORIGINS",
    "REVIEW_DECISIONS",
    "REVIEW_KINDS",
    "REVIEW_STATES",
    "TASK_TYPES",
    "label_annotations",
    "label_assignments",
    "label_items",
    "label_projects",
    "label_reviews",
    "label_snapshots",
]

#: Task types a project can have: one class per item, or a set of classes (revision 0006).
TASK_TYPES = ("single_label", "multi_label")
#: What an item's payload is.
ITEM_KINDS = ("text", "image", "features")
#: Who gave an annotation.
ORIGINS = ("human", "model", "import", "review")
#: States of a lease.
ASSIGNMENT_STATES = ("active", "done", "released")
#: Why an item waits for a reviewer.
REVIEW_KINDS = ("audit", "disagreement")
#: States of a review.
REVIEW_STATES = ("open", "decided", "superseded")
#: A reviewer's final call.
REVIEW_DECISIONS = ("keep", "change")


label_projects = Table(
    "label_projects",
    metadata,
    Column("project_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("task_type", String(32), nullable=False),
    Column("classes", json_type(), nullable=False),
    Column("instructions", Text, nullable=False),
    Column("overlap", Integer, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("settings", json_type(), nullable=False),
    UniqueConstraint("name", name="uq_label_projects_name"),
    sqlite_autoincrement=True,
)

label_items = Table(
    "label_items",
    metadata,
    Column("item_id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", json_type(), nullable=True),
    Column("payload_key", String(64), nullable=True),
    Column("source", String(32), nullable=False),
    Column("priority", Float, nullable=False),
    Column("n_labels", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("note", Text, nullable=True),
    Column("count", Integer, nullable=False, server_default="1"),
    UniqueConstraint("project_id", "external_id", name="uq_label_items_external_id"),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_label_items_project",
        ondelete="CASCADE",
    ),
    sqlite_autoincrement=True,
)
# The queue walks a project's items in exactly this order (highest priority, then oldest)
# and stops at the first it may hand out: no sort of the whole project per call.
Index(
    "ix_label_items_queue",
    label_items.c.project_id,
    label_items.c.priority.desc(),
    label_items.c.item_id,
)

label_annotations = Table(
    "label_annotations",
    metadata,
    Column("annotation_id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("annotator", String(255), nullable=False),
    Column("label", String(255), nullable=True),
    Column("skipped", Boolean, nullable=False),
    Column("seconds", Float, nullable=True),
    Column("origin", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("labels", json_type(), nullable=True),
    ForeignKeyConstraint(
        ["item_id"], ["label_items.item_id"], name="fk_label_annotations_item", ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_label_annotations_project",
        ondelete="CASCADE",
    ),
    # "Has this annotator seen this item?" (the queue) and an item's history.
    Index("ix_label_annotations_item", "item_id", "annotator"),
    # Current labels and exports read a project's events in order.
    Index("ix_label_annotations_project", "project_id", "annotation_id"),
    sqlite_autoincrement=True,
)

label_assignments = Table(
    "label_assignments",
    metadata,
    Column("lease_id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("annotator", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("leased_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    ForeignKeyConstraint(
        ["item_id"], ["label_items.item_id"], name="fk_label_assignments_item", ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_label_assignments_project",
        ondelete="CASCADE",
    ),
    # The queue counts an item's live leases; answering finds the annotator's lease.
    Index("ix_label_assignments_item", "item_id", "state", "annotator"),
    Index("ix_label_assignments_annotator", "project_id", "annotator", "state"),
    sqlite_autoincrement=True,
)

label_snapshots = Table(
    "label_snapshots",
    metadata,
    Column("snapshot_id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("as_of", UTCDateTime(), nullable=False),
    Column("last_annotation_id", Integer, nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("artifact_keys", json_type(), nullable=False),
    Column("n_items", Integer, nullable=False),
    Column("created_by", String(255), nullable=False),
    UniqueConstraint("name", name="uq_label_snapshots_name"),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_label_snapshots_project",
        ondelete="CASCADE",
    ),
    Index("ix_label_snapshots_project", "project_id", "snapshot_id"),
    sqlite_autoincrement=True,
)

label_reviews = Table(
    "label_reviews",
    metadata,
    Column("review_id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("item_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("given_label", String(255), nullable=True),
    Column("suggested_label", String(255), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", String(255), nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decided_by", String(255), nullable=True),
    Column("decision", String(16), nullable=True),
    Column("decided_label", String(255), nullable=True),
    Column("annotation_id", Integer, nullable=True),
    ForeignKeyConstraint(
        ["item_id"], ["label_items.item_id"], name="fk_label_reviews_item", ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["project_id"],
        ["label_projects.project_id"],
        name="fk_label_reviews_project",
        ondelete="CASCADE",
    ),
    # Superseding finds an item's open reviews of one kind.
    Index("ix_label_reviews_item", "item_id", "kind", "state"),
    sqlite_autoincrement=True,
)
# The review queue reads a project's open reviews, most suspicious first.
Index(
    "ix_label_reviews_queue",
    label_reviews.c.project_id,
    label_reviews.c.state,
    label_reviews.c.score.desc(),
    label_reviews.c.review_id,
)
