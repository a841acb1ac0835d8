"""How large a predict request may be, and whether its instances fit the champion.

Four limits bound what one request costs the server, each a setting with a
default that a service's policy may replace under ``limits``:

=====================  ================================  ============================
policy ``limits.``      setting                           default
=====================  ================================  ============================
``max_bytes``           ``INLOOP_MAX_PREDICT_BYTES``      1 MiB of JSON body
``max_instances``       ``INLOOP_MAX_PREDICT_INSTANCES``  10,000 instances
``max_instance_bytes``  ``INLOOP_MAX_INSTANCE_BYTES``     64 KiB per instance
``max_batch_bytes``     ``INLOOP_MAX_BATCH_BYTES``        32 MiB for the whole batch
=====================  ================================  ============================

The last two count the array the models get: 8 bytes a number, and 4 bytes a
character of text, where numpy pads every text of a batch to the longest one
(so 9,000 empty texts beside one of 20,000 characters take 720 MB). The web
app refuses a body past ``max_bytes`` while it is read;
:func:`check_instances` checks the rest before numpy sees the instances, and
against what the champion takes (a scikit-learn model: rows of its number of
features).

>>> limits = Limits(max_instances=2).resolved()
>>> limits.max_instances, limits.max_bytes == get_settings().max_predict_bytes
(2, True)
>>> check_instances([[1, 2], [3, 4]], limits)
[[1, 2], [3, 4]]
>>> check_instances([[1, 2]] * 3, limits)
Traceback (most recent call last):
...
inloop.serve.limits.RequestTooLargeError: The request carries 3 instances, over the limit of 2 ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inloop.errors import quote
from inloop.serve.models import ServeError
from inloop.settings import get_settings

__all__ = [
    "InputSpec",
    "InvalidRequestError",
    "Limits",
    "RequestTooLargeError",
    "ResolvedLimits",
    "check_instances",
]

# policy field -> the setting that gives its default
_SETTINGS = {
    "max_bytes": "max_predict_bytes",
    "max_instances": "max_predict_instances",
    "max_instance_bytes": "max_instance_bytes",
    "max_batch_bytes": "max_batch_bytes",
}
_TEXT_BYTES = 4  # numpy's unicode arrays: 4 bytes a character
_NUMBER_BYTES = 8


class InvalidRequestError(ServeError):
    """The request's instances are not what the service's models take (HTTP 400)."""


class RequestTooLargeError(InvalidRequestError):
    """The request passes one of its service's limits (HTTP 413); the message names it."""


class Limits(BaseModel):
    """A service's own limits (``limits`` in its policy); None takes the setting's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int | None = Field(default=None, ge=1024, le=2**40)
    max_instances: int | None = Field(default=None, ge=1, le=10_000_000)
    max_instance_bytes: int | None = Field(default=None, ge=8, le=2**40)
    max_batch_bytes: int | None = Field(default=None, ge=8, le=2**40)

    def resolved(self) -> ResolvedLimits:
        """Every limit, the settings' defaults filling those the policy leaves out."""
        settings = get_settings()
        values = {}
        own = []
        for name, setting in _SETTINGS.items():
            mine = getattr(self, name)
            values[name] = getattr(settings, setting) if mine is None else mine
            if mine is not None:
                own.append(name)
        return ResolvedLimits(**values, own=frozenset(own))


@dataclass(frozen=True)
class ResolvedLimits:
    """The limits a service's requests are held to; ``own`` names those its policy sets."""

    max_bytes: int
    max_instances: int
    max_instance_bytes: int
    max_batch_bytes: int
    own: frozenset[str] = frozenset()

    def source(self, name: str) -> str:
        """Where the limit ``name`` comes from, for messages.

        >>> Limits(max_bytes=2048).resolved().source("max_bytes")
        "the service's policy (limits.max_bytes)"
        """
        if name in self.own:
            return f"the service's policy (limits.{name})"
        return (
            f"the setting INLOOP_{_SETTINGS[name].upper()}; a service's policy may set its own "
            f"limits.{name}"
        )


@dataclass(frozen=True)
class InputSpec:
    """What a service's champion takes: rows of numbers (``n_features`` of them, if known)."""

    model: str
    numeric: bool
    n_features: int | None = None

    def wanted(self) -> str:
        """What the champion takes, in words."""
        if self.n_features is None:
            return f"The champion {self.model} takes each instance as a list of numbers"
        return (
            f"The champion {self.model} takes each instance as a list of {self.n_features} "
            f"numbers (it was fitted on {self.n_features} features)"
        )


def _too_large(what: str, limit: int, name: str, limits: ResolvedLimits, fix: str) -> None:
    raise RequestTooLargeError(
        f"{what}, over the limit of {limit:,} ({name}, from {limits.source(name)}). {fix}"
    )


def _leaves(instance: object) -> int:
    """How many numbers a (nested) list holds, counted without recursion."""
    if type(instance) is not list:
        return 1
    if not instance or type(instance[0]) is not list:
        return len(instance)  # a row (numpy refuses one that holds lists further on)
    count, stack = 0, [instance]
    while stack:
        value = stack.pop()
        if type(value) is list:
            stack.extend(value)
        else:
            count += 1
    return count


def _check_fit(instances: Sequence[Any], spec: InputSpec | None) -> None:
    """Refuse instances of the wrong kind or width for the champion, before numpy."""
    if spec is None or not spec.numeric:
        return
    for index, instance in enumerate(instances):
        if type(instance) is not list:
            got = f"the text {quote(instance, 80)}" if isinstance(instance, str) else "not a list"
        elif spec.n_features is not None and len(instance) != spec.n_features:
            got = f"a list of {len(instance)}"
        elif instance and type(instance[0]) is list:
            got = "a list of lists"
        else:
            continue
        raise InvalidRequestError(
            f"{spec.wanted()}, such as [0.1, 0.2, ...]. Instance {index} is {got}. Send "
            "one row of numbers per instance."
        )


def check_instances(
    instances: object, limits: ResolvedLimits | None = None, spec: InputSpec | None = None
) -> list[Any]:
    """The instances of a request, checked: a non-empty list of equal-shaped numeric rows or
    texts, within ``limits`` (default: the settings'), and of the kind ``spec`` says the
    champion takes.

    Raises :class:`RequestTooLargeError` naming the limit a request passes, and
    :class:`InvalidRequestError` for any other misfit; both before the
    instances become an array.

    >>> check_instances([[1, 2], [3]])
    Traceback (most recent call last):
    ...
    inloop.serve.limits.InvalidRequestError: The instances must all have the same shape ...
    """
    if isinstance(instances, str | bytes) or not isinstance(instances, Sequence):
        raise InvalidRequestError(
            "instances must be a list of instances, such as [[0.1, 0.2], [0.3, 0.4]] or "
            f"['some text']. Got {quote(instances, 80)}."
        )
    limits = limits if limits is not None else Limits().resolved()
    n = len(instances)
    if n == 0:
        raise InvalidRequestError(
            f"A request carries 1 to {limits.max_instances} instances. Got 0."
        )
    if n > limits.max_instances:
        _too_large(
            f"The request carries {n:,} instances",
            limits.max_instances,
            "max_instances",
            limits,
            "Send them in several requests.",
        )
    _check_fit(instances, spec)
    _check_size(instances, limits)
    try:
        array = np.asarray(instances)
    except (ValueError, OverflowError):
        array = np.empty(0, dtype=object)
    if array.dtype == object or array.dtype.kind not in "biufU":
        raise InvalidRequestError(
            "The instances must all have the same shape and hold numbers (or all be texts), "
            f"such as [[0.1, 0.2], [0.3, 0.4]]. Got {quote(instances, 80)}."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidRequestError("The instances hold NaN or infinity; send finite numbers.")
    return list(instances)


def _check_size(instances: Sequence[Any], limits: ResolvedLimits) -> None:
    """Refuse a batch whose array would pass ``max_instance_bytes`` or ``max_batch_bytes``."""
    first = instances[0]
    if type(first) is str:
        if not all(type(i) is str for i in instances):
            return  # mixed: numpy makes an object array, refused after this
        longest = max(map(len, instances))
        row, unit = _TEXT_BYTES * longest, f"the longest text has {longest:,} characters"
        padded = " (numpy pads every text of a batch to the longest one)"
    else:
        row = _NUMBER_BYTES * _leaves(first)
        unit, padded = f"the first instance holds {row // _NUMBER_BYTES:,} numbers", ""
    if row > limits.max_instance_bytes:
        _too_large(
            f"An instance takes {row:,} bytes for the models: {unit}",
            limits.max_instance_bytes,
            "max_instance_bytes",
            limits,
            "Send smaller instances.",
        )
    total = row * len(instances)
    if total > limits.max_batch_bytes:
        _too_large(
            f"The {len(instances):,} instances take {total:,} bytes for the models{padded}: {unit}",
            limits.max_batch_bytes,
            "max_batch_bytes",
            limits,
            "Send fewer instances per request, or long texts in requests of their own.",
        )
