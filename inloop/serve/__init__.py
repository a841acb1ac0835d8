"""Serving: the model registry and the one interface every served model answers through.

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
    "Heuristic",
    "LoadedModel",
    "MajorityClass",
    "ModelNotFoundError",
    "ModelVersion",
    "RegisteredModel",
    "ServeError",
    "SklearnModel",
    "Threshold",
    "as_model",
    "get_version",
    "list_models",
    "list_versions",
    "load",
    "majority_class_from",
    "model_kind",
    "register",
]
