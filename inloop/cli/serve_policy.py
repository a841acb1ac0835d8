"""``inloop serve create|set``: create a service from a policy file, change its policy.

Every change is a new policy revision recording who, when and why::

    inloop serve create digits --policy policy.yaml --reason launch
    inloop serve set digits --canary digits@1 --deadline 80 --reason "watch last quarter's model"
    inloop serve set digits --challengers none --reason "challenger retired"
    inloop serve set digits --policy policy.yaml --reason "new review budget"
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from inloop.cli.identity import TOKEN_OPTION, acting_user

__all__ = ["create_cmd", "set_cmd"]

_NONE = ("none", "")
_OPTION_OF = {
    "challengers": "--challengers",
    "canary": "--canary",
    "fallback": "--fallback/--fallback-label",
    "schedule": "--deadline",
    "decoy": "--decoy/--no-decoy",
}


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports the serve commands to register them."""
    from inloop.cli import main

    return main


def _print(rev: Any, verb: str) -> None:
    from inloop.cli.serve import _print_revision

    _print_revision(rev, verb)


def create_cmd(
    service: str = typer.Argument(..., help="The new service's name."),
    policy: Path = typer.Option(
        ..., "--policy", help="The policy: a .yaml or .json file (champion, fallback, ...)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why: recorded with the first revision."),
    description: str | None = typer.Option(None, "--description", help="What the service is."),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Create SERVICE with the policy in a YAML or JSON file (its revision 1)."""
    from inloop.serve.policy import create_service
    from inloop.serve.policy_edits import read_policy

    with _cli().user_errors():
        body = read_policy(policy)
        user = acting_user(token, "creating a service")
        rev = create_service(
            service, body, created_by=user.name, reason=reason, description=description
        )
    _print(rev, "created")


def _fallback_label(text: str) -> Any:
    # 0 and true as the JSON values; text as itself ('"0"' for the text 0).
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | bool) else text


def _changes(
    challengers: str | None,
    canary: str | None,
    fallback: str | None,
    fallback_label: str | None,
    deadline: int | None,
    decoy: bool | None,
) -> dict[str, Any]:
    from inloop.serve.policy import PolicyError

    if fallback is not None and fallback_label is not None:
        raise PolicyError(
            "--fallback (a registered heuristic) and --fallback-label (a default answer) "
            "contradict each other: pass one of them."
        )
    changes: dict[str, Any] = {}
    if challengers is not None:
        names = [] if challengers.strip().lower() in _NONE else challengers.split(",")
        changes["challengers"] = [n.strip() for n in names if n.strip()]
    if canary is not None:
        changes["canary"] = None if canary.strip().lower() in _NONE else canary.strip()
    if fallback is not None:
        changes["fallback"] = fallback.strip()
    if fallback_label is not None:
        changes["fallback"] = {"label": _fallback_label(fallback_label)}
    if deadline is not None:
        changes["schedule"] = {"deadline_ms": deadline}
    if decoy is not None:
        changes["decoy"] = decoy
    return changes


def set_cmd(
    service: str = typer.Argument(..., help="The service."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded with the new revision."),
    challengers: str | None = typer.Option(
        None, "--challengers", help="Model versions scored beside the champion: a@2,b@3, or none."
    ),
    canary: str | None = typer.Option(
        None, "--canary", help="The fixed reference model version, or none."
    ),
    fallback: str | None = typer.Option(
        None, "--fallback", help="The registered heuristic that answers when no model does."
    ),
    fallback_label: str | None = typer.Option(
        None,
        "--fallback-label",
        help="Or a default answer instead: a class such as 0 or cat ('\"0\"' for the text 0).",
    ),
    deadline: int | None = typer.Option(
        None, "--deadline", min=1, max=60_000, help="Answer within this many milliseconds."
    ),
    decoy: bool | None = typer.Option(
        None, "--decoy/--no-decoy", help="Archive every request's input and scores, or not."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Replace the whole policy with this .yaml or .json file instead."
    ),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Change SERVICE's policy, as a new revision; the other fields stay as they are.

    A new --deadline moves the schedule's steps with it (champion by 40% of it),
    unless they were set by hand in a policy file.
    """
    from inloop.serve.policy import PolicyError, set_policy
    from inloop.serve.policy_edits import update_policy

    with _cli().user_errors():
        changes = _changes(challengers, canary, fallback, fallback_label, deadline, decoy)
        if policy is not None and changes:
            raise PolicyError(
                "--policy replaces the whole policy: it cannot be combined with the options "
                f"that change one field (here {', '.join(_OPTION_OF[c] for c in changes)}). Put "
                "those changes in the file, or leave --policy out."
            )
        if policy is None and not changes:
            raise PolicyError(
                "Nothing to change: pass --challengers, --canary, --fallback, --fallback-label, "
                "--deadline, --decoy/--no-decoy or --policy FILE (promote with inloop serve "
                "promote)."
            )
        user = acting_user(token, "changing a policy")
        if policy is not None:
            from inloop.serve.policy_edits import read_policy

            rev = set_policy(service, read_policy(policy), by=user.name, reason=reason)
        else:
            rev = update_policy(service, changes, by=user.name, reason=reason)
    _print(rev, "changed, now")
