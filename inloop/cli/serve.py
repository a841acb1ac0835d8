"""The ``inloop serve`` commands: models, services, promotion, rollback, replay, workers.

Registered on the root command as ``inloop serve``::

    inloop serve register DigitsFlow/12/train/3/model --name digits   # serve_models.py
    inloop serve create digits --policy policy.yaml --reason launch    # serve_policy.py
    inloop serve list
    inloop serve promote digits digits@4 --reason "beats the champion on last week's labels"
    inloop serve rollback digits --reason "p99 latency regressed"
    inloop serve replay digits --model digits@4 --since 2026-11-01
    inloop serve worker digits          # with INLOOP_STREAM_URL=redis://...
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from inloop.cli.identity import TOKEN_OPTION, acting_user

if TYPE_CHECKING:
    from inloop.serve.policy import PolicyRevision

app = typer.Typer(
    help="Serving: models, services, promotion and rollback, replay, stream workers.",
    no_args_is_help=True,
)


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports this module to register ``app``."""
    from inloop.cli import main

    return main


def _policy_line(rev: PolicyRevision) -> str:
    policy = rev.policy
    parts = [f"champion {policy.champion}"]
    if policy.challengers:
        parts.append("challengers " + ", ".join(policy.challengers))
    if policy.canary:
        parts.append(f"canary {policy.canary}")
    fallback = policy.fallback if isinstance(policy.fallback, str) else policy.fallback.label
    parts.append(f"fallback {fallback}")
    return "; ".join(parts)


def _print_revision(rev: PolicyRevision, verb: str) -> None:
    console = _cli()._stdout()
    when = _cli()._format_time(rev.created_at)
    console.print(
        f"{escape(rev.service)}: {verb} revision {rev.revision} by {escape(rev.created_by)} at "
        f"{when} ({escape(rev.reason)}). Serving now: {escape(_policy_line(rev))}.",
        soft_wrap=True,
    )


@app.command("list")
def list_cmd() -> None:
    """List the services with their current revision and champion."""
    from inloop.serve.policy import list_services

    with _cli().user_errors():
        services = list_services()
    console = _cli()._stdout()
    if not services:
        console.print(
            "No services yet. Create one with: inloop serve create NAME --policy policy.yaml "
            "--reason REASON"
        )
        return
    table = Table("service", "revision", "champion", "created", "by")
    for service in services:
        table.add_row(
            service.name,
            str(service.revision),
            service.champion,
            _cli()._format_time(service.created_at),
            service.created_by,
        )
    console.print(table)


@app.command("show")
def show(
    service: str = typer.Argument(..., help="The service."),
    as_json: bool = typer.Option(False, "--json", help="Print the policy history as JSON."),
) -> None:
    """Show a service's current policy and every earlier revision (who, when, why)."""
    from inloop.serve.policy import policy_history

    with _cli().user_errors():
        history = policy_history(service)
    if as_json:
        out = [r.to_dict() for r in history]
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table("rev", "action", "when", "by", "reason", "policy", title=service)
    for rev in reversed(history):
        action = rev.action
        if rev.restored_revision is not None:
            action += f" to {rev.restored_revision}"
        table.add_row(
            str(rev.revision),
            action,
            _cli()._format_time(rev.created_at),
            rev.created_by,
            rev.reason,
            _policy_line(rev),
        )
    _cli()._stdout().print(table)


_TOKEN = TOKEN_OPTION


@app.command("promote")
def promote_cmd(
    service: str = typer.Argument(..., help="The service."),
    model: str = typer.Argument(..., help="The registered model version, 'name@N'."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded with the change."),
    drop_old: bool = typer.Option(
        False, "--drop-old", help="Do not keep the old champion as a challenger."
    ),
    token: str | None = _TOKEN,
) -> None:
    """Make MODEL the champion of SERVICE: a new policy revision, used by the next request."""
    from inloop.serve.policy import promote

    with _cli().user_errors():
        user = acting_user(token, "promotion")
        rev = promote(service, model, by=user.name, reason=reason, keep_old_champion=not drop_old)
    _print_revision(rev, "promoted, now")


@app.command("rollback")
def rollback_cmd(
    service: str = typer.Argument(..., help="The service."),
    reason: str = typer.Option(..., "--reason", help="Why: recorded with the change."),
    to: int | None = typer.Option(
        None, "--to", help="The revision to restore (default: the one before the current)."
    ),
    token: str | None = _TOKEN,
) -> None:
    """Restore SERVICE's previous policy (or revision --to) as a new revision."""
    from inloop.serve.policy import rollback

    with _cli().user_errors():
        user = acting_user(token, "rollback")
        rev = rollback(service, by=user.name, reason=reason, to_revision=to)
    _print_revision(rev, f"rolled back to revision {rev.restored_revision}, now")


def _register() -> None:
    from inloop.cli.serve_models import models_cmd, register_cmd, versions_cmd
    from inloop.cli.serve_policy import create_cmd, set_cmd
    from inloop.cli.serve_replay import evaluate_cmd, replay
    from inloop.cli.serve_worker import worker

    app.command("register")(register_cmd)
    app.command("models")(models_cmd)
    app.command("versions")(versions_cmd)
    app.command("create")(create_cmd)
    app.command("set")(set_cmd)
    app.command("replay")(replay)
    app.command("evaluate")(evaluate_cmd)
    app.command("worker")(worker)


_register()
