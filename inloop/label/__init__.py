"""Labeling: projects, a shared queue, active learning, agreement and label audit.

Every human label is an append-only event; the current label of an item is
derived. The queue hands items out as leases so many annotators share it safely;
sampling strategies order it by what the model is least sure about; agreement
statistics and the audit find the labels that deserve a second look::

    from inloop import label

    label.create_project("digits", classes=["0", "1", "2"])
    X, y, snapshot_id = label.snapshot("digits")
    report = label.audit_labels(X, y)  # in this process, with the default model

What runs when none is given: :func:`default_estimator` (the model in the
loop), :func:`default_strategy` and :func:`default_audit_estimator` (chosen by
the data's size). Names are imported on first use, so importing this package
(or its ``tables``) does not import scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inloop._lazy import lazy_exports

if TYPE_CHECKING:
    from inloop.label.agreement import (
        AgreementError,
        AnnotatorStats,
        Consensus,
        DawidSkeneResult,
        annotator_report,
        cohen_kappa,
        dawid_skene,
        disagreements,
        fleiss_kappa,
        label_matrix,
        majority_vote,
    )
    from inloop.label.annotations import (
        Annotation,
        CurrentLabel,
        annotate,
        current_labels,
        history,
        list_annotations,
    )
    from inloop.label.audit import (
        AuditError,
        AuditReport,
        audit_labels,
        default_audit_estimator,
        find_suspect_labels,
        out_of_sample_proba,
    )
    from inloop.label.audit_flow import (
        AuditFlow,
        run_audit,
    )
    from inloop.label.consensus import agreement_summary
    from inloop.label.contributors import (
        Contributor,
        SnapshotContributors,
        snapshot_contributors,
    )
    from inloop.label.io import (
        ImportResult,
        export_labels,
        import_items,
    )
    from inloop.label.items import (
        CountedItem,
        Item,
        add_items,
        add_or_count_items,
        get_item,
        get_items,
        item_payload,
    )
    from inloop.label.learner import (
        ActiveLearner,
        LearnerError,
        StoppingReport,
        default_estimator,
    )
    from inloop.label.projects import (
        LabelClass,
        LabelError,
        LabelNotFoundError,
        Project,
        create_project,
        get_project,
        list_projects,
    )
    from inloop.label.queue import (
        Lease,
        QueueStats,
        active_leases,
        next_items,
        queue_stats,
        release,
        set_priorities,
    )
    from inloop.label.review import (
        Review,
        decide,
        get_review,
        queue_audit,
        queue_disagreements,
        review_queue,
    )
    from inloop.label.snapshots import (
        Snapshot,
        list_snapshots,
        load_snapshot,
        snapshot,
    )
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

__all__ = [
    "STRATEGIES",
    "ActiveLearner",
    "AgreementError",
    "Annotation",
    "AnnotatorStats",
    "AuditError",
    "AuditFlow",
    "AuditReport",
    "Consensus",
    "Contributor",
    "CoreSetSampler",
    "CountedItem",
    "CurrentLabel",
    "DawidSkeneResult",
    "EntropySampler",
    "HybridSampler",
    "ImportResult",
    "Item",
    "LabelClass",
    "LabelError",
    "LabelNotFoundError",
    "LearnerError",
    "Lease",
    "LeastConfidenceSampler",
    "MarginSampler",
    "Project",
    "QueueStats",
    "RandomSampler",
    "Review",
    "SamplingStrategy",
    "Snapshot",
    "SnapshotContributors",
    "StoppingReport",
    "StrategyError",
    "active_leases",
    "add_items",
    "add_or_count_items",
    "agreement_summary",
    "annotate",
    "annotator_report",
    "audit_labels",
    "cohen_kappa",
    "create_project",
    "current_labels",
    "dawid_skene",
    "decide",
    "default_audit_estimator",
    "default_estimator",
    "default_strategy",
    "disagreements",
    "export_labels",
    "find_suspect_labels",
    "fleiss_kappa",
    "get_item",
    "get_items",
    "get_project",
    "get_review",
    "history",
    "import_items",
    "item_payload",
    "label_matrix",
    "list_annotations",
    "list_projects",
    "list_snapshots",
    "load_snapshot",
    "majority_vote",
    "make_strategy",
    "next_items",
    "out_of_sample_proba",
    "queue_audit",
    "queue_disagreements",
    "queue_stats",
    "release",
    "review_queue",
    "run_audit",
    "set_priorities",
    "snapshot",
    "snapshot_contributors",
]

# Imported on first use: the store imports this part's tables module to build a
# schema, and that must not import scikit-learn, cleanlab or FastAPI with it.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "inloop.label.agreement": (
            "AgreementError",
            "AnnotatorStats",
            "Consensus",
            "DawidSkeneResult",
            "annotator_report",
            "cohen_kappa",
            "dawid_skene",
            "disagreements",
            "fleiss_kappa",
            "label_matrix",
            "majority_vote",
        ),
        "inloop.label.annotations": (
            "Annotation",
            "CurrentLabel",
            "annotate",
            "current_labels",
            "history",
            "list_annotations",
        ),
        "inloop.label.audit": (
            "AuditError",
            "AuditReport",
            "audit_labels",
            "default_audit_estimator",
            "find_suspect_labels",
            "out_of_sample_proba",
        ),
        "inloop.label.audit_flow": ("AuditFlow", "run_audit"),
        "inloop.label.consensus": ("agreement_summary",),
        "inloop.label.contributors": (
            "Contributor",
            "SnapshotContributors",
            "snapshot_contributors",
        ),
        "inloop.label.io": ("ImportResult", "export_labels", "import_items"),
        "inloop.label.items": (
            "CountedItem",
            "Item",
            "add_items",
            "add_or_count_items",
            "get_item",
            "get_items",
            "item_payload",
        ),
        "inloop.label.learner": (
            "ActiveLearner",
            "LearnerError",
            "StoppingReport",
            "default_estimator",
        ),
        "inloop.label.projects": (
            "LabelClass",
            "LabelError",
            "LabelNotFoundError",
            "Project",
            "create_project",
            "get_project",
            "list_projects",
        ),
        "inloop.label.queue": (
            "Lease",
            "QueueStats",
            "active_leases",
            "next_items",
            "queue_stats",
            "release",
            "set_priorities",
        ),
        "inloop.label.review": (
            "Review",
            "decide",
            "get_review",
            "queue_audit",
            "queue_disagreements",
            "review_queue",
        ),
        "inloop.label.snapshots": ("Snapshot", "list_snapshots", "load_snapshot", "snapshot"),
        "inloop.label.strategies": (
            "STRATEGIES",
            "CoreSetSampler",
            "EntropySampler",
            "HybridSampler",
            "LeastConfidenceSampler",
            "MarginSampler",
            "RandomSampler",
            "SamplingStrategy",
            "StrategyError",
            "default_strategy",
            "make_strategy",
        ),
    },
)
