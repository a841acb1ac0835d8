"""Serving: the model registry, the one interface every served model answers through,
and services whose versioned policies say which model answers.

>>> from inloop.serve import MajorityClass, as_model
>>> as_model(MajorityClass(["cat", "dog"], [1, 2])).predict([[0.0], [1.0]]).tolist()
['dog', 'dog']
"""

from __future__ import annotations

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
from inloop.serve.registry import (
    ModelVersion,
    RegisteredModel,
    get_version,
    list_models,
    list_versions,
    load,
    register,
)

__all__ = [
    "CallableModel",
    "DefaultAnswer",
    "Heuristic",
    "LoadedModel",
    "MajorityClass",
    "ModelNotFoundError",
    "ModelVersion",
    "Policy",
    "PolicyError",
    "PolicyRevision",
    "RegisteredModel",
    "ReviewSettings",
    "Schedule",
    "ScheduleStep",
    "ServeError",
    "Service",
    "ServiceNotFoundError",
    "SklearnModel",
    "Threshold",
    "as_model",
    "as_policy",
    "create_service",
    "current_policy",
    "get_version",
    "list_models",
    "list_services",
    "list_versions",
    "load",
    "majority_class_from",
    "model_kind",
    "policy_history",
    "promote",
    "register",
    "rollback",
    "set_policy",
]
