"""Services and their policies: versioned, append-only records; promotion and rollback.

A *service* is a name that answers requests according to its :class:`Policy`:
the champion (the model that answers), the challengers (scored and archived,
never served), the canary (a fixed reference model), the fallback (a
registered heuristic or a default answer), the decoy (archive every input and
score) and the :class:`Schedule` that says which answer is returned by when.

A policy is never edited: every change — :func:`set_policy`, :func:`promote`,
:func:`rollback` — appends a new revision (1, 2, ...) recording who made it,
when, why and which revision it replaced. A change is one transaction that
locks the service, so two promotions at once end as two ordered revisions.

>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.serve.models import MajorityClass
>>> from inloop.serve.registry import register
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://policy-doc")
>>> for n in (1, 2):
...     _ = register(MajorityClass(["a", "b"], [n, 1]), name="doc-m", engine=engine,
...                  artifacts=store)
>>> policy = Policy(champion="doc-m@1", fallback={"label": "a"})
>>> create_service("doc-svc", policy, created_by="ana", reason="launch", engine=engine).revision
1
>>> promote("doc-svc", "doc-m@2", by="ana", reason="better F1", engine=engine).policy.challengers
('doc-m@1',)
>>> back = rollback("doc-svc", by="bo", reason="p99 regressed", engine=engine)
>>> back.revision, back.restored_revision, back.policy.champion
(3, 1, 'doc-m@1')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from inloop.errors import quote
from inloop.serve import redaction
from inloop.serve.destinations import DestinationRefusedError, check_destinations
from inloop.serve.limits import Limits
from inloop.serve.models import ModelNotFoundError, ServeError
from inloop.serve.registry import get_version
from inloop.serve.tables import serve_policies, serve_services
from inloop.store.db import begin_write, get_engine
from inloop.store.text import unstorable_message

__all__ = [
    "Action",
    "ActionRule",
    "DefaultAnswer",
    "Limits",
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
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# At most 9 digits: a version number must fit the database's (32-bit) Integer column.
_REF = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,254})@([1-9][0-9]{0,8})")
_NAME_RULE = (
    "a name of 1 to 255 letters, digits, '_', '.' or '-', starting with a letter or digit, "
    "such as 'digits' or 'spam-filter'"
)
_REF_RULE = "a registered model version 'name@N' (N of at most 9 digits), such as 'digits@3'"


class PolicyError(ServeError):
    """A policy, or a change to one, is invalid; nothing was changed."""


class ServiceNotFoundError(ServeError, LookupError):
    """No service has that name."""


def _check_ref(value: object) -> str:
    if not isinstance(value, str) or _REF.fullmatch(value) is None:
        raise ValueError(f"must be {_REF_RULE}")
    return value


class DefaultAnswer(BaseModel):
    """The answer given when no model answers in time: ``{"label": ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | int | bool


class ScheduleStep(BaseModel):
    """One step of a schedule: take ``model``'s answer if it is there by ``by_ms``.

    ``model`` is ``"champion"`` (the champion's answer), ``"best"`` (the
    best-priority answer available: the champion's, else the canary's) or
    ``"fallback"`` (the fallback; only as the last step).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["champion", "best", "fallback"]
    by_ms: int = Field(gt=0)


class Schedule(BaseModel):
    """When to answer with what, within ``deadline_ms`` of the request arriving.

    The steps are tried in order as time passes. The default, for a 50 ms
    deadline, is ``[{"model": "champion", "by_ms": 20}, {"model": "best",
    "by_ms": 50}]``: answer with the champion if it has answered by 20 ms;
    else with the best-priority answer available by 50 ms; at the deadline,
    with the fallback. Without ``steps`` they are scaled to ``deadline_ms``
    (the champion step at 40 % of it). ``by_ms`` must increase and stay
    within the deadline; a ``"fallback"`` step may only come last.

    >>> [(s.model, s.by_ms) for s in Schedule(deadline_ms=100).steps]
    [('champion', 40), ('best', 100)]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deadline_ms: int = Field(default=50, gt=0, le=60_000)
    steps: tuple[ScheduleStep, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _default_steps(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "steps" not in data:
            deadline = data.get("deadline_ms", 50)
            if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline > 0:
                data = {
                    **data,
                    "steps": [
                        {"model": "champion", "by_ms": max(1, deadline * 2 // 5)},
                        {"model": "best", "by_ms": deadline},
                    ],
                }
        return data

    @model_validator(mode="after")
    def _check_steps(self) -> Schedule:
        if not self.steps:
            raise ValueError(
                "steps must hold at least one step, such as "
                "[{'model': 'champion', 'by_ms': 20}, {'model': 'best', 'by_ms': 50}]"
            )
        times = [s.by_ms for s in self.steps]
        if any(b <= a for a, b in pairwise(times)):
            raise ValueError(f"the by_ms of the steps must strictly increase; got {times}")
        if times[-1] > self.deadline_ms:
            raise ValueError(
                f"every step's by_ms must be <= deadline_ms ({self.deadline_ms}); got {times}"
            )
        if any(s.model == "fallback" for s in self.steps[:-1]):
            raise ValueError("a 'fallback' step may only be the last step")
        return self


class ReviewSettings(BaseModel):
    """Which requests people should look at, and where they go.

    An instance is sent to the labeling project ``project`` when the
    champion's margin (its top probability minus the next) is below
    ``margin_threshold``, or, with ``disagreement`` (the default), when a
    challenger or the canary predicts another class. At most
    ``per_hour_budget`` instances an hour are sent (None: no limit); each item
    carries the reason it was sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(min_length=1, max_length=255)
    margin_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    disagreement: bool = True
    per_hour_budget: int | None = Field(default=None, ge=0)


class ActionRule(BaseModel):
    """When an action fires: the answer is ``label`` (any label when None) with a
    probability of at least ``min_probability``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | int | bool | None = None
    min_probability: float = Field(default=0.0, ge=0.0, le=1.0)


class Action(BaseModel):
    """A webhook called (HTTP POST, JSON body) for every answered instance that
    matches ``when``; retried up to ``max_attempts`` times with backoff, and
    every delivery recorded; at most ``max_per_request`` for one request and
    ``max_per_second`` a second (per process), the rest dropped and counted.
    The ``url`` must lead to a public address unless ``INLOOP_WEBHOOK_ALLOW``
    names it (:mod:`inloop.serve.destinations`).

    >>> Action(name="alert", url="http://127.0.0.1:9/hook",
    ...        when={"label": "predator", "min_probability": 0.8}).max_attempts
    5
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)
    when: ActionRule = Field(default_factory=ActionRule)
    max_attempts: int = Field(default=5, ge=1, le=20)
    timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)
    headers: dict[str, str] = Field(default_factory=dict)
    max_per_request: int = Field(default=10, ge=1, le=10_000)
    max_per_second: float = Field(default=10.0, gt=0.0, le=10_000.0)

    def __repr_args__(self) -> Any:
        # Header values and the URL past its host are secrets: never in a repr or a log.
        for name, value in super().__repr_args__():
            if name == "url":
                value = redaction.mask_url(self.url)
            elif name == "headers":
                value = redaction.mask_headers(self.headers)
            yield name, value


class Policy(BaseModel):
    """What a service serves and how; stored as the body of a policy revision.

    Model references are ``"name@N"``; that they are registered is checked
    when the policy is stored. ``feedback_role`` is the least trusted role
    that may give the service feedback through the API (see
    :mod:`inloop.serve.feedback`). Build one from a dict with :func:`as_policy` to
    get a :class:`PolicyError` rather than pydantic's ``ValidationError``.

    >>> p = Policy(champion="digits@3", challengers=["digits@4"], fallback={"label": 0})
    >>> p.decoy, p.schedule.deadline_ms, p.fallback
    (True, 50, DefaultAnswer(label=0))
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    champion: str
    challengers: tuple[str, ...] = ()
    canary: str | None = None
    fallback: str | DefaultAnswer
    decoy: bool = True
    schedule: Schedule = Field(default_factory=Schedule)
    review: ReviewSettings | None = None
    actions: tuple[Action, ...] = ()
    limits: Limits | None = None
    feedback_role: Literal["annotator", "reviewer", "scientist", "admin"] = "reviewer"

    @field_validator("champion", "canary")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else _check_ref(value)

    @field_validator("challengers")
    @classmethod
    def _refs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ref in value:
            _check_ref(ref)
        if len(set(value)) != len(value):
            raise ValueError("must not list a model version twice")
        return value

    @field_validator("fallback", mode="before")
    @classmethod
    def _fallback(cls, value: Any) -> Any:
        if isinstance(value, str):
            if _REF.fullmatch(value) is None:
                raise ValueError(
                    f"must be a registered heuristic 'name@N' or a default answer such as "
                    f"{{'label': 'cat'}}; {quote(value)} is not a 'name@N' reference"
                )
        elif not isinstance(value, Mapping | DefaultAnswer):
            raise ValueError(
                "must be a registered heuristic 'name@N' or a default answer such as "
                "{'label': 'cat'}"
            )
        return value

    @model_validator(mode="after")
    def _roles(self) -> Policy:
        if self.champion in self.challengers:
            raise ValueError(
                f"the champion {self.champion!r} cannot also be a challenger; "
                "remove it from challengers"
            )
        if self.canary is not None and self.canary in (self.champion, *self.challengers):
            raise ValueError(
                f"the canary {self.canary!r} must be a model version that is neither the "
                "champion nor a challenger"
            )
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names):
            raise ValueError(f"every action needs its own name; got {names}")
        return self

    def refs(self) -> tuple[str, ...]:
        """Every model version the policy names, champion first.

        >>> Policy(champion="a@1", canary="a@2", fallback="h@1").refs()
        ('a@1', 'a@2', 'h@1')
        """
        out = [self.champion, *self.challengers]
        if self.canary is not None:
            out.append(self.canary)
        if isinstance(self.fallback, str):
            out.append(self.fallback)
        return tuple(out)


def _location(loc: tuple[int | str, ...]) -> str:
    # Drop pydantic's union-branch labels such as 'str' and 'DefaultAnswer'.
    parts = [str(p) for p in loc if p not in ("str", "DefaultAnswer", "int", "bool")]
    return ".".join(parts) or "policy"


def as_policy(value: Policy | Mapping[str, Any]) -> Policy:
    """Validate a policy given as a dict (or pass a :class:`Policy` through).

    Raises :class:`PolicyError` naming each bad field, its value and what is
    accepted.

    >>> as_policy({"champion": "digits@1", "fallback": {"label": 0}}).champion
    'digits@1'
    >>> as_policy({"champion": "digits", "fallback": {"label": 0}})
    Traceback (most recent call last):
    ...
    inloop.serve.policy.PolicyError: Invalid policy: champion: must be a registered model ...
    """
    if isinstance(value, Policy):
        return value
    if not isinstance(value, Mapping):
        raise PolicyError(
            f"A policy must be a Policy or a dict such as "
            f"{{'champion': 'digits@3', 'fallback': {{'label': 0}}}}. Got {quote(value)}."
        )
    try:
        return Policy.model_validate(dict(value))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(
                f"{_location(error['loc'])}: {message}. Got {quote(error.get('input'))}"
                if error["type"] != "missing"
                else f"{_location(error['loc'])}: is required"
            )
        raise PolicyError("Invalid policy: " + "; ".join(problems) + ".") from None


@dataclass(frozen=True)
class PolicyRevision:
    """One revision of a service's policy: what it says, who made it, when and why.

    ``action`` is ``'create'``, ``'set'``, ``'promote'`` or ``'rollback'``;
    ``previous_revision`` is the revision it replaced (None for the first) and
    ``restored_revision`` the revision a rollback copied.
    """

    service: str
    revision: int
    policy: Policy
    action: str
    created_at: datetime
    created_by: str
    reason: str
    previous_revision: int | None
    restored_revision: int | None

    def to_dict(self) -> dict[str, Any]:
        """The revision as JSON values (the API's and ``inloop serve show --json``'s shape).

        Its secrets (webhook header values, URLs past the host) are masked:
        see :mod:`inloop.serve.redaction`.
        """
        return {
            "revision": self.revision,
            "action": self.action,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "reason": self.reason,
            "previous_revision": self.previous_revision,
            "restored_revision": self.restored_revision,
            "policy": redaction.mask_policy(self.policy.model_dump(mode="json")),
        }


@dataclass(frozen=True)
class Service:
    """A service, its current policy revision and champion."""

    name: str
    created_at: datetime
    created_by: str
    description: str | None
    revision: int
    champion: str


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise PolicyError(f"The name of a service must be {_NAME_RULE}. Got {quote(name)}.")
    return name


def _check_text(value: object, what: str, action: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(
            f"The '{what}' of {action} is required: a non-empty string saying "
            f"{'who made the change' if what != 'reason' else 'why'}. Got {quote(value)}."
        )
    _check_storable(value, what)
    return value


def _check_storable(value: object, what: str) -> None:
    message = unstorable_message(value, what)
    if message is not None:
        raise PolicyError(message)


def _check_registered(policy: Policy, engine: Engine) -> None:
    """Every model version the policy names exists; the fallback ref is a heuristic."""
    for field_name, ref in _named_refs(policy):
        name, _, number = ref.partition("@")
        try:
            version = get_version(name, int(number), engine=engine)
        except ModelNotFoundError as exc:
            raise PolicyError(
                f"The {field_name} {quote(ref)} of the policy is not a registered model "
                f"version: {exc}"
            ) from None
        if field_name == "fallback" and version.kind != "heuristic":
            raise PolicyError(
                f"The fallback {quote(ref)} is a {version.kind} model; the fallback must be a "
                "registered heuristic (MajorityClass, Threshold or a Heuristic subclass) or "
                "a default answer such as {'label': 'cat'}."
            )


def _check_destinations(policy: Policy) -> None:
    try:
        check_destinations([(a.name, a.url) for a in policy.actions])
    except DestinationRefusedError as exc:
        raise PolicyError(f"Invalid policy: {exc}") from None


def _keep_secrets(policy: Policy, stored: Policy | None) -> Policy:
    """``policy`` with its masked secrets replaced by those of ``stored`` (see redaction)."""
    if not policy.actions:
        return policy
    old = [] if stored is None else [a.model_dump(mode="json") for a in stored.actions]
    try:
        actions = redaction.unmask_actions([a.model_dump(mode="json") for a in policy.actions], old)
    except ValueError as exc:
        raise PolicyError(f"Invalid policy: actions: {exc}.") from None
    return as_policy({**policy.model_dump(mode="json"), "actions": actions})


def _named_refs(policy: Policy) -> list[tuple[str, str]]:
    out = [("champion", policy.champion)]
    out += [("challenger", ref) for ref in policy.challengers]
    if policy.canary is not None:
        out.append(("canary", policy.canary))
    if isinstance(policy.fallback, str):
        out.append(("fallback", policy.fallback))
    return out


def find_service_id(conn: Connection, service: str, *, for_update: bool = False) -> int:
    """The service's id; :class:`ServiceNotFoundError` (listing the services) if there is none.

    ``for_update`` locks its row until the transaction ends.
    """
    query = select(serve_services.c.service_id).where(serve_services.c.name == service)
    if for_update:
        query = query.with_for_update()
    found = conn.execute(query).scalar()
    if found is None:
        raise_service_not_found(conn, service)
    return int(found)


def raise_service_not_found(conn: Connection, service: str) -> NoReturn:
    """Raise :class:`ServiceNotFoundError` for ``service``, listing the services there are."""
    names = list(
        conn.execute(select(serve_services.c.name).order_by(serve_services.c.name)).scalars()
    )
    listing = ", ".join(map(repr, names[:20])) if names else "none yet"
    raise ServiceNotFoundError(
        f"No service {quote(service)}. Services: {listing}. Create one with "
        "inloop.serve.create_service(name, policy, created_by=..., reason=...) or `inloop serve "
        "create NAME --policy policy.yaml --reason ...`."
    )


_POLICY_COLUMNS = [
    serve_policies.c.revision,
    serve_policies.c.action,
    serve_policies.c.body,
    serve_policies.c.created_at,
    serve_policies.c.created_by,
    serve_policies.c.reason,
    serve_policies.c.previous_revision,
    serve_policies.c.restored_revision,
]


def _revision_from_row(service: str, row: Mapping[Any, Any]) -> PolicyRevision:
    return PolicyRevision(
        service=service,
        revision=int(row["revision"]),
        policy=Policy.model_validate(row["body"]),
        action=row["action"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        reason=row["reason"],
        previous_revision=row["previous_revision"],
        restored_revision=row["restored_revision"],
    )


def _latest(conn: Connection, service_id: int, service: str) -> PolicyRevision:
    row = conn.execute(
        select(*_POLICY_COLUMNS)
        .where(serve_policies.c.service_id == service_id)
        .order_by(serve_policies.c.revision.desc())
        .limit(1)
    ).one()
    return _revision_from_row(service, row._mapping)


def _append(
    conn: Connection,
    service_id: int,
    service: str,
    policy: Policy,
    *,
    action: str,
    by: str,
    reason: str,
    restored: int | None = None,
) -> PolicyRevision:
    newest = conn.execute(
        select(func.max(serve_policies.c.revision)).where(serve_policies.c.service_id == service_id)
    ).scalar()
    row: dict[str, Any] = {
        "revision": 1 if newest is None else int(newest) + 1,
        "action": action,
        "body": policy.model_dump(mode="json"),
        "created_at": datetime.now(UTC),
        "created_by": by,
        "reason": reason,
        "previous_revision": None if newest is None else int(newest),
        "restored_revision": restored,
    }
    conn.execute(serve_policies.insert(), {"service_id": service_id, **row})
    return _revision_from_row(service, row)


def create_service(
    name: str,
    policy: Policy | Mapping[str, Any],
    *,
    created_by: str,
    reason: str,
    description: str | None = None,
    engine: Engine | None = None,
) -> PolicyRevision:
    """Create the service ``name`` with its first policy (revision 1) and return that revision.

    Every model version the policy names must be registered.

    >>> from inloop.store import get_engine, open_artifact_store
    >>> from inloop.serve.models import MajorityClass
    >>> from inloop.serve.registry import register
    >>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://create-doc")
    >>> _ = register(MajorityClass(["a", "b"], [1, 2]), name="doc-c", engine=engine,
    ...              artifacts=store)
    >>> first = create_service("doc-create", {"champion": "doc-c@1", "fallback": "doc-c@1"},
    ...                        created_by="ana", reason="launch", engine=engine)
    >>> first.revision, first.previous_revision, first.created_by
    (1, None, 'ana')
    """
    name = _check_name(name)
    checked = as_policy(policy)
    _check_storable(checked.model_dump(mode="json"), "policy")
    created_by = _check_text(created_by, "created_by", "create_service")
    reason = _check_text(reason, "reason", "create_service")
    if description is not None and not isinstance(description, str):
        raise PolicyError(
            f"The 'description' of create_service must be a string or None. "
            f"Got {quote(description)}."
        )
    if description is not None:
        _check_storable(description, "description")
    eng = _engine(engine)
    checked = _keep_secrets(checked, None)
    _check_destinations(checked)
    _check_registered(checked, eng)
    exists = PolicyError(
        f"A service named {quote(name)} already exists. Change its policy with set_policy, "
        "promote or rollback, or pick another name."
    )
    try:
        with begin_write(eng) as conn:
            found = conn.execute(
                select(serve_services.c.service_id).where(serve_services.c.name == name)
            ).first()
            if found is not None:
                raise exists
            service_id = conn.execute(
                serve_services.insert().returning(serve_services.c.service_id),
                {
                    "name": name,
                    "created_at": datetime.now(UTC),
                    "created_by": created_by,
                    "description": description,
                },
            ).scalar_one()
            return _append(
                conn, service_id, name, checked, action="create", by=created_by, reason=reason
            )
    except IntegrityError:
        raise exists from None  # created by another process a moment ago


def current_policy(service: str, *, engine: Engine | None = None) -> PolicyRevision:
    """The newest revision of the service's policy: the one requests are served with."""
    service = _check_name(service)
    with _engine(engine).connect() as conn:
        return _latest(conn, find_service_id(conn, service), service)


def policy_history(service: str, *, engine: Engine | None = None) -> list[PolicyRevision]:
    """Every revision of the service's policy, oldest first."""
    service = _check_name(service)
    with _engine(engine).connect() as conn:
        rows = conn.execute(
            select(*_POLICY_COLUMNS)
            .where(serve_policies.c.service_id == find_service_id(conn, service))
            .order_by(serve_policies.c.revision)
        ).all()
    return [_revision_from_row(service, r._mapping) for r in rows]


def set_policy(
    service: str,
    policy: Policy | Mapping[str, Any],
    *,
    by: str,
    reason: str,
    if_revision: int | None = None,
    engine: Engine | None = None,
) -> PolicyRevision:
    """Replace the service's policy with ``policy``, as a new revision; returns it.

    With ``if_revision``, only while that is still the current revision (else
    :class:`PolicyError`): a change built from a policy read earlier cannot undo
    a promotion made in between.
    """
    service = _check_name(service)
    checked = as_policy(policy)
    _check_storable(checked.model_dump(mode="json"), "policy")
    by = _check_text(by, "by", "set_policy")
    reason = _check_text(reason, "reason", "set_policy")
    eng = _engine(engine)
    _check_destinations(checked)
    _check_registered(checked, eng)
    with begin_write(eng) as conn:
        service_id = find_service_id(conn, service, for_update=True)
        latest = _latest(conn, service_id, service)
        if if_revision is not None and latest.revision != if_revision:
            raise PolicyError(
                f"Service {service!r} is no longer at revision {if_revision}: someone changed "
                "its policy meanwhile. Nothing was changed; read the policy again and retry."
            )
        # A policy edited from a masked view keeps the secrets it did not change.
        checked = _keep_secrets(checked, latest.policy)
        return _append(conn, service_id, service, checked, action="set", by=by, reason=reason)


def promote(
    service: str,
    ref: str,
    *,
    by: str,
    reason: str,
    keep_old_champion: bool = True,
    engine: Engine | None = None,
) -> PolicyRevision:
    """Make the registered model version ``ref`` the service's champion, as a new revision.

    The old champion becomes the first challenger unless ``keep_old_champion``
    is False; ``ref`` leaves the challengers if it was one. The current policy
    is read under the service's lock, so concurrent promotions apply in turn.
    """
    service = _check_name(service)
    if not isinstance(ref, str) or _REF.fullmatch(ref) is None:
        raise PolicyError(f"promote takes {_REF_RULE}. Got {quote(ref)}.")
    by = _check_text(by, "by", "promote")
    reason = _check_text(reason, "reason", "promote")
    eng = _engine(engine)
    name, _, number = ref.partition("@")
    try:
        get_version(name, int(number), engine=eng)
    except ModelNotFoundError as exc:
        raise PolicyError(f"Cannot promote {quote(ref)}: {exc}") from None
    with begin_write(eng) as conn:
        service_id = find_service_id(conn, service, for_update=True)
        current = _latest(conn, service_id, service).policy
        if current.champion == ref:
            raise PolicyError(
                f"{quote(ref)} is already the champion of service {quote(service)}. "
                "Promote another "
                "registered version, or roll back with rollback()."
            )
        challengers = [c for c in current.challengers if c != ref]
        if keep_old_champion:
            challengers.insert(0, current.champion)
        body = {
            **current.model_dump(mode="json"),
            "champion": ref,
            "challengers": challengers,
        }
        new = as_policy(body)
        return _append(conn, service_id, service, new, action="promote", by=by, reason=reason)


def rollback(
    service: str,
    *,
    by: str,
    reason: str,
    to_revision: int | None = None,
    engine: Engine | None = None,
) -> PolicyRevision:
    """Restore the policy of the revision before the current one, as a new revision.

    ``to_revision`` restores another earlier revision instead. The new
    revision records the one it restored in ``restored_revision``. Rolling back
    twice returns to where it started (the revision before a rollback is the
    one it undid).
    """
    service = _check_name(service)
    by = _check_text(by, "by", "rollback")
    reason = _check_text(reason, "reason", "rollback")
    if to_revision is not None and (
        isinstance(to_revision, bool) or not isinstance(to_revision, int) or to_revision < 1
    ):
        raise PolicyError(
            f"The 'to_revision' of rollback must be an earlier revision (an int >= 1) or None "
            f"for the one before the current one. Got {quote(to_revision)}."
        )
    with begin_write(_engine(engine)) as conn:
        service_id = find_service_id(conn, service, for_update=True)
        current = _latest(conn, service_id, service)
        target = current.revision - 1 if to_revision is None else to_revision
        if target < 1 or target >= current.revision:
            raise PolicyError(
                f"Service {quote(service)} is at revision {current.revision}; there is no earlier "
                f"revision {target} to roll back to. Accepted: a revision from 1 to "
                f"{current.revision - 1}"
                + (
                    " (none: the service has only its first policy)."
                    if current.revision == 1
                    else "."
                )
            )
        row = conn.execute(
            select(*_POLICY_COLUMNS).where(
                serve_policies.c.service_id == service_id, serve_policies.c.revision == target
            )
        ).one()
        restored = _revision_from_row(service, row._mapping)
        return _append(
            conn,
            service_id,
            service,
            restored.policy,
            action="rollback",
            by=by,
            reason=reason,
            restored=target,
        )


def list_services(*, engine: Engine | None = None) -> list[Service]:
    """Every service, by name, with its current revision and champion."""
    latest = (
        select(
            serve_policies.c.service_id,
            func.max(serve_policies.c.revision).label("revision"),
        )
        .group_by(serve_policies.c.service_id)
        .subquery()
    )
    with _engine(engine).connect() as conn:
        rows = conn.execute(
            select(serve_services, latest.c.revision, serve_policies.c.body)
            .join(latest, latest.c.service_id == serve_services.c.service_id)
            .join(
                serve_policies,
                (serve_policies.c.service_id == latest.c.service_id)
                & (serve_policies.c.revision == latest.c.revision),
            )
            .order_by(serve_services.c.name)
        ).all()
    return [
        Service(
            name=r.name,
            created_at=r.created_at,
            created_by=r.created_by,
            description=r.description,
            revision=int(r.revision),
            champion=r.body["champion"],
        )
        for r in rows
    ]
