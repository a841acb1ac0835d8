"""The metadata tables of the model registry and services, as SQLAlchemy Core.

They live on the store's ``metadata``. Revisions ``0007_serve_registry`` and
``0008_serve_policies`` create them; this module must describe the same schema
as the newest migration (a test compares them).

Tables:

``serve_models``
    one row per registered model name (unique), who created it and when.
``serve_model_versions``
    append-only: one row per version of a model, numbered from 1 within the
    model. ``kind`` is one of :data:`MODEL_KINDS`; ``artifact_key`` points at
    the stored model in the artifact store (``flavor["format"]`` says how it was
    pickled). The lineage columns (``run_pathspec``, ``task_pathspec``,
    ``artifact_name``, ``snapshot_id``) are NULL when the model did not come
    from a flow run; ``metrics`` holds its evaluation metrics as JSON.
``serve_services``
    one row per service name (unique), who created it, when, and a description.
``serve_policies``
    append-only: one row per revision of a service's policy, numbered from 1
    within the service. ``body`` is the policy as JSON (see
    :class:`inloop.serve.policy.Policy`); ``action`` says what made the
    revision (one of :data:`POLICY_ACTIONS`); ``previous_revision`` is the
    revision it replaced (NULL for the first) and ``restored_revision`` the one
    a rollback copied. Who made it, when and why are always recorded.
``serve_requests``
    the archive (the decoy): one row per request a service answered, with the
    policy revision, when it arrived, the instances exactly as the models saw
    them (NULL when the policy's decoy is off), the answer, which model (or
    the fallback) gave it and the latency.
``serve_scores``
    every model's score for every archived request: status (one of
    :data:`inloop.serve.scoring.SCORE_STATUSES`), predictions, probabilities
    and classes, the model's latency and its error.
``serve_feedback_events``
    append-only true labels attached to a request later (revision ``0012``):
    one row per label of one instance (``position``), who gave it, their role
    (NULL for labels given before roles were recorded), when, and its
    ``source``: ``api`` (REST or Python) or ``review`` (a label given in the
    labeling ``project`` the request was routed to; ``annotation_id`` is that
    label's event there). The label used is the most trusted role's latest
    (:mod:`inloop.serve.feedback`).
``serve_review_items``
    requests sent to a labeling project for human review: the labeling item
    each instance became and why (small margin, disagreement).
``serve_deliveries``
    one row per webhook action a prediction triggered: the payload, the
    attempts so far, the last response and whether it was delivered; and one
    ``dropped`` row per request and action counting the matches past its limits.
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
    "DELIVERY_STATUSES",
    "FEEDBACK_SOURCES",
    "MODEL_KINDS",
    "POLICY_ACTIONS",
    "serve_deliveries",
    "serve_feedback_events",
    "serve_model_versions",
    "serve_models",
    "serve_policies",
    "serve_requests",
    "serve_review_items",
    "serve_scores",
    "serve_services",
]

#: What a registered model is: a scikit-learn style estimator, a plain callable or a heuristic.
MODEL_KINDS = ("sklearn", "callable", "heuristic")
#: Where feedback came from: the API (REST or Python), or a label in a review project.
FEEDBACK_SOURCES = ("api", "review")
#: What made a policy revision.
POLICY_ACTIONS = ("create", "set", "promote", "rollback")
#: Where a webhook delivery stands.
#: ``dropped``: a row counting the matches of one request past the action's limits (not sent);
#: ``refused``: the URL led to an address webhooks may not reach (not sent).
DELIVERY_STATUSES = ("pending", "delivered", "failed", "dropped", "refused")


serve_models = Table(
    "serve_models",
    metadata,
    Column("model_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("description", Text, nullable=True),
    UniqueConstraint("name", name="uq_serve_models_name"),
    sqlite_autoincrement=True,
)

serve_model_versions = Table(
    "serve_model_versions",
    metadata,
    Column("version_id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("artifact_key", String(64), nullable=False),
    Column("classes", json_type(), nullable=True),
    Column("flavor", json_type(), nullable=False),
    Column("run_pathspec", String(1024), nullable=True),
    Column("task_pathspec", String(1024), nullable=True),
    Column("artifact_name", String(255), nullable=True),
    Column("snapshot_id", Integer, nullable=True),
    Column("metrics", json_type(), nullable=False),
    Column("registered_by", String(255), nullable=False),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("note", Text, nullable=True),
    UniqueConstraint("model_id", "version", name="uq_serve_model_versions_version"),
    ForeignKeyConstraint(
        ["model_id"],
        ["serve_models.model_id"],
        name="fk_serve_model_versions_model",
        ondelete="CASCADE",
    ),
    sqlite_autoincrement=True,
)

serve_services = Table(
    "serve_services",
    metadata,
    Column("service_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("description", Text, nullable=True),
    UniqueConstraint("name", name="uq_serve_services_name"),
    sqlite_autoincrement=True,
)

serve_policies = Table(
    "serve_policies",
    metadata,
    Column("policy_id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("body", json_type(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("previous_revision", Integer, nullable=True),
    Column("restored_revision", Integer, nullable=True),
    UniqueConstraint("service_id", "revision", name="uq_serve_policies_revision"),
    ForeignKeyConstraint(
        ["service_id"],
        ["serve_services.service_id"],
        name="fk_serve_policies_service",
        ondelete="CASCADE",
    ),
    sqlite_autoincrement=True,
)

serve_requests = Table(
    "serve_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("service_id", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("n_instances", Integer, nullable=False),
    Column("inputs", json_type(), nullable=True),
    Column("model", String(300), nullable=True),
    Column("role", String(16), nullable=False),
    Column("fallback_used", Boolean, nullable=False),
    Column("predictions", json_type(), nullable=False),
    Column("latency_ms", Float, nullable=False),
    ForeignKeyConstraint(
        ["service_id"],
        ["serve_services.service_id"],
        name="fk_serve_requests_service",
        ondelete="CASCADE",
    ),
    Index("ix_serve_requests_service_time", "service_id", "received_at"),
)

serve_scores = Table(
    "serve_scores",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("predictions", json_type(), nullable=True),
    Column("probabilities", json_type(), nullable=True),
    Column("classes", json_type(), nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("error", Text, nullable=True),
    ForeignKeyConstraint(
        ["request_id"],
        ["serve_requests.request_id"],
        name="fk_serve_scores_request",
        ondelete="CASCADE",
    ),
)

serve_feedback_events = Table(
    "serve_feedback_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("label", json_type(), nullable=False),
    Column("given_by", String(255), nullable=False),
    Column("role", String(16), nullable=True),
    Column("given_at", UTCDateTime(), nullable=False),
    Column("source", String(16), nullable=False),
    Column("project", String(255), nullable=True),
    Column("annotation_id", Integer, nullable=True),
    ForeignKeyConstraint(
        ["request_id"],
        ["serve_requests.request_id"],
        name="fk_serve_feedback_events_request",
        ondelete="CASCADE",
    ),
    # A label annotation becomes feedback once per instance it applies to; the index also
    # serves "the feedback of these requests".
    UniqueConstraint(
        "request_id", "position", "annotation_id", name="uq_serve_feedback_events_annotation"
    ),
    sqlite_autoincrement=True,
)

serve_review_items = Table(
    "serve_review_items",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("service_id", Integer, nullable=False),
    Column("project", String(255), nullable=False),
    Column("item_id", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("routed_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["service_id"],
        ["serve_services.service_id"],
        name="fk_serve_review_items_service",
        ondelete="CASCADE",
    ),
    Index("ix_serve_review_items_service_time", "service_id", "routed_at"),
)

serve_deliveries = Table(
    "serve_deliveries",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("service_id", Integer, nullable=False),
    Column("action", String(255), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(
        ["service_id"],
        ["serve_services.service_id"],
        name="fk_serve_deliveries_service",
        ondelete="CASCADE",
    ),
    Index("ix_serve_deliveries_service_time", "service_id", "created_at"),
    sqlite_autoincrement=True,
)
