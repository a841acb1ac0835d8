"""Policies from files, and changes to a few fields of a service's policy.

:func:`read_policy` reads a policy written as YAML or JSON (what ``inloop serve
create SERVICE --policy policy.yaml`` takes); its errors name the file, the
field and what is accepted. :func:`update_policy` changes some fields of a
service's current policy (the canary, the challengers, the deadline...) and
records the result as a new revision, like every other change: it never
undoes a promotion made while it was being built.

>>> from inloop.store import get_engine, open_artifact_store
>>> from inloop.serve.models import MajorityClass
>>> from inloop.serve.policy import create_service
>>> from inloop.serve.registry import register
>>> engine, store = get_engine("sqlite://"), open_artifact_store("memory://edits-doc")
>>> refs = [register(MajorityClass(["a", "b"], [n, 1]), name="doc-e", engine=engine,
...                  artifacts=store).ref for n in (1, 2)]
>>> _ = create_service("doc-edit", {"champion": refs[0], "fallback": {"label": "a"}},
...                    created_by="ana", reason="launch", engine=engine)
>>> rev = update_policy("doc-edit", {"canary": refs[1], "schedule": {"deadline_ms": 80}},
...                     by="ana", reason="watch the old model", engine=engine)
>>> rev.revision, rev.policy.canary, [s.by_ms for s in rev.policy.schedule.steps]
(2, 'doc-e@2', [32, 80])
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inloop.serve.policy import (
    Policy,
    PolicyError,
    PolicyRevision,
    Schedule,
    as_policy,
    current_policy,
    set_policy,
)

__all__ = ["read_policy", "update_policy"]

_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_EXAMPLE = "champion: digits@3, fallback: {label: 0}"
# A change retried this often when other changes keep landing first.
_ATTEMPTS = 5


def _parse(text: str, kind: str, shown: str) -> Any:
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(
                f"The policy file {shown} is not valid JSON: line {exc.lineno}, column "
                f"{exc.colno}: {exc.msg}. Fix it, or write the policy as YAML (.yaml)."
            ) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(
            f"The policy file {shown} is not valid YAML: {where}{problem}. Fix it; a policy "
            f"reads like '{_EXAMPLE}', one field per line."
        ) from None


def read_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy written in the YAML (``.yaml``, ``.yml``) or JSON (``.json``) file ``path``.

    The file holds the fields of :class:`~inloop.serve.policy.Policy`, as
    :func:`~inloop.serve.policy.create_service` takes them from Python. A
    :class:`PolicyError` names the file, the field and what is accepted.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder, "policy.yaml")
    ...     _ = path.write_text("champion: digits@3\\nfallback: {label: 0}\\n")
    ...     read_policy(path).champion
    'digits@3'
    """
    file = Path(path)
    shown = repr(str(file))
    kind = _FORMATS.get(file.suffix.lower())
    if kind is None:
        raise PolicyError(
            f"Cannot tell the format of the policy file {shown} from its suffix. Accepted: "
            ".yaml or .yml (YAML) and .json (JSON); rename the file."
        )
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"No policy file {shown}. Pass the path of a .yaml or .json file holding the policy "
            f"(such as '{_EXAMPLE}')."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"Cannot read the policy file {shown}: {exc}.") from None
    data = _parse(text, kind, shown)
    if not isinstance(data, dict):
        raise PolicyError(
            f"The policy file {shown} must hold a mapping of policy fields, such as "
            f"'{_EXAMPLE}'. Got {type(data).__name__} {str(data)[:200]!r}."
        )
    try:
        return as_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"The policy file {shown}: {exc}") from None


def _schedule(current: Schedule, change: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule after ``change``; steps follow a new deadline unless they were the user's."""
    default = Schedule(deadline_ms=current.deadline_ms).steps
    if "steps" not in change and current.steps == default:
        return dict(change)  # Schedule scales its default steps to the new deadline
    return {**current.model_dump(), **change}


def _changed(current: Policy, changes: Mapping[str, Any]) -> Policy:
    body = current.model_dump()
    for key, value in changes.items():
        if key == "schedule" and isinstance(value, Mapping):
            body["schedule"] = _schedule(current.schedule, value)
        else:
            body[key] = value
    return as_policy(body)


def update_policy(
    service: str,
    changes: Mapping[str, Any],
    *,
    by: str,
    reason: str,
    engine: Engine | None = None,
) -> PolicyRevision:
    """Change some fields of the service's current policy, as a new revision; returns it.

    ``changes`` maps :class:`~inloop.serve.policy.Policy` fields to their new
    values (``{"canary": None}`` removes the canary). A ``schedule`` mapping
    changes only the fields it names; the schedule's steps follow a new
    ``deadline_ms`` unless they had been set by hand. A change that leaves the
    policy as it is records nothing and raises :class:`PolicyError`. If another
    change lands first, this one is applied on top of it.
    """
    if not isinstance(changes, Mapping) or not changes:
        raise PolicyError(
            "update_policy needs the fields to change, such as {'canary': 'digits@1'} or "
            f"{{'schedule': {{'deadline_ms': 80}}}}. Got {changes!r}."
        )
    unknown = sorted(str(key) for key in changes if key not in Policy.model_fields)
    if unknown:
        raise PolicyError(
            f"update_policy cannot change {', '.join(map(repr, unknown))}: not a policy field. "
            f"Accepted: {', '.join(Policy.model_fields)}."
        )
    for _ in range(_ATTEMPTS):
        current = current_policy(service, engine=engine)
        new = _changed(current.policy, changes)
        if new == current.policy:
            raise PolicyError(
                f"The change leaves the policy of {service!r} as it is (revision "
                f"{current.revision}); nothing was recorded."
            )
        try:
            return set_policy(
                service, new, by=by, reason=reason, if_revision=current.revision, engine=engine
            )
        except PolicyError:
            if current_policy(service, engine=engine).revision == current.revision:
                raise  # not a change that landed first: the new policy itself is refused
    raise PolicyError(
        f"The policy of {service!r} kept changing while this change was applied "
        f"({_ATTEMPTS} tries). Nothing was changed by it; try again."
    )
