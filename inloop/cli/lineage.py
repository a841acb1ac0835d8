"""``inloop lineage REQUEST_ID``: how a request was answered, back to the labels behind it.

Registered on the root command as ``inloop lineage``::

    inloop lineage 1f2e3d4c5b6a79880123456789abcdef
    inloop lineage 1f2e3d4c5b6a79880123456789abcdef --json
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.tree import Tree

if TYPE_CHECKING:
    from inloop.serve.feedback import Feedback
    from inloop.serve.lineage import Lineage, ModelLineage


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _shown(value: Any) -> str:
    return escape(json.dumps(value, default=str)[:200])


def _feedback(tree: Tree, feedback: Feedback | None) -> None:
    if feedback is None:
        tree.add("feedback: none yet")
        return
    branch = tree.add(
        f"feedback: {_shown(feedback.labels)} (the most trusted role's latest label of each "
        f"instance), by {escape(feedback.given_by)}"
    )
    for event in feedback.history:
        used = " [green]used[/green]" if event in feedback.chosen else ""
        source = event.source if event.project is None else f"{event.source} in {event.project}"
        branch.add(
            f"instance {event.position}: {_shown(event.label)} by {escape(event.given_by)} "
            f"({escape(event.role or 'role not recorded')}, {escape(source)}), "
            f"{_when(event.given_at)}{used}"
        )


def _model(tree: Tree, model: ModelLineage) -> None:
    answered = " [green]answered[/green]" if model.answered else ""
    branch = tree.add(
        f"[bold]{escape(model.ref)}[/bold] {model.role}, {model.status}: "
        f"{_shown(model.predictions)}{answered}"
    )
    version = model.version
    if version is None:
        branch.add("not a registered model version (any more)")
        return
    metrics = f", metrics {_shown(version.metrics)}" if version.metrics else ""
    branch.add(
        f"registered by {escape(version.registered_by)} {_when(version.registered_at)} "
        f"({version.kind}){metrics}"
    )
    if model.run is None:
        branch.add("run: none recorded (registered from outside a flow)")
    else:
        run = model.run
        branch.add(
            f"run {escape(run.pathspec)}: {run.status}, by {escape(run.user)}, "
            f"{_when(run.created_at)} to {_when(run.finished_at)}"
        )
    if model.task is not None:
        task = model.task
        artifact = f", artifact {escape(version.artifact_name or '-')}"
        branch.add(f"task {escape(task.pathspec)}: {task.status}{artifact}")
    snapshot = model.snapshot
    if snapshot is None:
        branch.add("label snapshot: none recorded")
        return
    shot = branch.add(
        f"label snapshot {escape(snapshot.name)} (id {snapshot.snapshot_id}) of project "
        f"{escape(snapshot.project)}: {snapshot.n_items:,} labeled items as of "
        f"{_when(snapshot.as_of)}, hash {snapshot.content_hash[:12]}"
    )
    for person in snapshot.contributors:
        shot.add(
            f"{escape(person.name)}: {person.labels:,} labels, {person.reviews:,} review "
            f"decisions, {person.final:,} of the snapshot's labels ({', '.join(person.origins)})"
        )


def render(found: Lineage) -> Tree:
    """The lineage as a Rich tree: request, answer, feedback, then every model's lineage."""
    r = found.request
    tree = Tree(
        f"[bold]request {escape(r.request_id)}[/bold] of service {escape(r.service)} "
        f"(policy revision {r.revision}), {_when(r.received_at)}, {r.n_instances} instance(s)"
    )
    by = "the default answer" if r.model is None else escape(r.model)
    tree.add(
        f"answer: {_shown(r.predictions)} by {by} ({r.role}"
        f"{', fallback' if r.fallback_used else ''}) in {r.latency_ms:.2f} ms"
    )
    _feedback(tree, r.feedback)
    models = tree.add(f"models: {len(found.models)} scored it")
    for model in found.models:
        _model(models, model)
    return tree


def lineage(
    request_id: str = typer.Argument(..., help="The request_id a predict answer returned."),
    as_json: bool = typer.Option(False, "--json", help="Print the lineage as JSON."),
) -> None:
    """How a request was answered: every model's score, version, run, task, label snapshot,
    and the annotators and reviewers of its labels, with counts."""
    from inloop.cli.main import _stdout, user_errors
    from inloop.serve.lineage import lineage as find

    with user_errors():
        found = find(request_id)
        if as_json:
            typer.echo(json.dumps(found.to_dict(), indent=2, default=str))
            return
        _stdout().print(render(found))
