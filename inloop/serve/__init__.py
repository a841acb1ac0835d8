"""Serving: the model registry, services with versioned policies, and the rendezvous.

Register models (:func:`register`), give a service a policy
(:func:`create_service`: champion, challengers, canary, fallback, decoy,
schedule, review, actions), answer requests through a :class:`Rendezvous`
(every live model scores every request; the archive keeps them all), attach
true labels later (:func:`add_feedback`: append-only events; the most
trusted role's latest label counts), compare a candidate on archived
traffic (:func:`replay`, :func:`evaluate`), change the champion with
:func:`promote` and :func:`rollback`, or any field with :func:`update_policy`,
and trace a request back to the labels that trained its models (:func:`lineage`).

>>> from inloop.serve import MajorityClass, as_model
>>> as_model(MajorityClass(["cat", "dog"], [1, 2])).predict([[0.0], [1.0]]).tolist()
['dog', 'dog']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inloop._lazy import lazy_exports

if TYPE_CHECKING:
    from inloop.serve.actions import (
        ActionDispatcher,
        Delivery,
        list_deliveries,
    )
    from inloop.serve.archive import (
        ArchiveWriter,
        RequestNotFoundError,
        RequestView,
        add_feedback,
        count_requests,
        get_request,
        list_requests,
    )
    from inloop.serve.feedback import Feedback, FeedbackEvent, FeedbackRoleError
    from inloop.serve.lineage import Lineage, ModelLineage, lineage
    from inloop.serve.models import (
        CallableModel,
        Heuristic,
        LoadedModel,
        MajorityClass,
        ModelNotFoundError,
        ServeError,
        SklearnModel,
        Threshold,
        as_model,
        majority_class_from,
        model_kind,
    )
    from inloop.serve.policy import (
        Action,
        ActionRule,
        DefaultAnswer,
        Policy,
        PolicyError,
        PolicyRevision,
        ReviewSettings,
        Schedule,
        ScheduleStep,
        Service,
        ServiceNotFoundError,
        as_policy,
        create_service,
        current_policy,
        list_services,
        policy_history,
        promote,
        rollback,
        set_policy,
    )
    from inloop.serve.policy_edits import read_policy, update_policy
    from inloop.serve.registry import (
        ModelVersion,
        RegisteredModel,
        get_version,
        list_models,
        list_versions,
        load,
        register,
    )
    from inloop.serve.rendezvous import (
        Answer,
        InvalidRequestError,
        NoAnswerError,
        Rendezvous,
    )
    from inloop.serve.replay import (
        ModelEvaluation,
        ReplayReport,
        evaluate,
        replay,
    )
    from inloop.serve.review import (
        ReviewLabels,
        RoutedItem,
        routed_items,
        sync_review_labels,
    )
    from inloop.serve.scoring import (
        LocalTransport,
        Score,
    )

__all__ = [
    "Action",
    "ActionDispatcher",
    "ActionRule",
    "Answer",
    "ArchiveWriter",
    "CallableModel",
    "DefaultAnswer",
    "Delivery",
    "Feedback",
    "FeedbackEvent",
    "FeedbackRoleError",
    "Heuristic",
    "InvalidRequestError",
    "Lineage",
    "LoadedModel",
    "LocalTransport",
    "MajorityClass",
    "ModelEvaluation",
    "ModelLineage",
    "ModelNotFoundError",
    "ModelVersion",
    "NoAnswerError",
    "Policy",
    "PolicyError",
    "PolicyRevision",
    "RegisteredModel",
    "Rendezvous",
    "ReplayReport",
    "RequestNotFoundError",
    "RequestView",
    "ReviewLabels",
    "ReviewSettings",
    "RoutedItem",
    "Schedule",
    "ScheduleStep",
    "Score",
    "ServeError",
    "Service",
    "ServiceNotFoundError",
    "SklearnModel",
    "Threshold",
    "add_feedback",
    "as_model",
    "as_policy",
    "count_requests",
    "create_service",
    "current_policy",
    "evaluate",
    "get_request",
    "get_version",
    "lineage",
    "list_deliveries",
    "list_models",
    "list_requests",
    "list_services",
    "list_versions",
    "load",
    "majority_class_from",
    "model_kind",
    "policy_history",
    "promote",
    "read_policy",
    "register",
    "replay",
    "rollback",
    "routed_items",
    "set_policy",
    "sync_review_labels",
    "update_policy",
]

# Imported on first use: the store imports this part's tables module to build a
# schema, and that must not import scikit-learn, cleanlab or FastAPI with it.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "inloop.serve.actions": ("ActionDispatcher", "Delivery", "list_deliveries"),
        "inloop.serve.archive": (
            "ArchiveWriter",
            "RequestNotFoundError",
            "RequestView",
            "add_feedback",
            "count_requests",
            "get_request",
            "list_requests",
        ),
        "inloop.serve.feedback": ("Feedback", "FeedbackEvent", "FeedbackRoleError"),
        "inloop.serve.lineage": ("Lineage", "ModelLineage", "lineage"),
        "inloop.serve.models": (
            "CallableModel",
            "Heuristic",
            "LoadedModel",
            "MajorityClass",
            "ModelNotFoundError",
            "ServeError",
            "SklearnModel",
            "Threshold",
            "as_model",
            "majority_class_from",
            "model_kind",
        ),
        "inloop.serve.policy": (
            "Action",
            "ActionRule",
            "DefaultAnswer",
            "Policy",
            "PolicyError",
            "PolicyRevision",
            "ReviewSettings",
            "Schedule",
            "ScheduleStep",
            "Service",
            "ServiceNotFoundError",
            "as_policy",
            "create_service",
            "current_policy",
            "list_services",
            "policy_history",
            "promote",
            "rollback",
            "set_policy",
        ),
        "inloop.serve.policy_edits": ("read_policy", "update_policy"),
        "inloop.serve.registry": (
            "ModelVersion",
            "RegisteredModel",
            "get_version",
            "list_models",
            "list_versions",
            "load",
            "register",
        ),
        "inloop.serve.rendezvous": ("Answer", "InvalidRequestError", "NoAnswerError", "Rendezvous"),
        "inloop.serve.replay": ("ModelEvaluation", "ReplayReport", "evaluate", "replay"),
        "inloop.serve.review": (
            "ReviewLabels",
            "RoutedItem",
            "routed_items",
            "sync_review_labels",
        ),
        "inloop.serve.scoring": ("LocalTransport", "Score"),
    },
)
