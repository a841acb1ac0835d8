"""``inloop serve register|models|versions``: the model registry from the shell.

Register a flow's artifact as the next version of a model, or a majority-class
baseline computed from a run's labels, then list what is registered::

    inloop serve register DigitsFlow/12/train/3/model --name digits --metric accuracy=0.97
    inloop serve register --majority-class-from DigitsFlow/12/start/1/y_train \\
        --name digits-baseline
    inloop serve models
    inloop serve versions digits
"""

from __future__ import annotations

import json
from dataclasses import asdict
from types import ModuleType
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from inloop.cli.identity import TOKEN_OPTION, acting_user

if TYPE_CHECKING:
    from inloop.flow.client import DataArtifact
    from inloop.serve.registry import ModelVersion

__all__ = ["models_cmd", "register_cmd", "versions_cmd"]

_PATHSPEC_FORMS = (
    "Flow/run/step/task/name (e.g. DigitsFlow/12/train/3/model), or Flow/run/step/name for "
    "a step with one task (e.g. DigitsFlow/12/join/best_model)"
)


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports the serve commands to register them."""
    from inloop.cli import main

    return main


def _artifact(pathspec: str, option: str) -> DataArtifact:
    """The artifact at ``pathspec``; an explicit pathspec names one run, whoever made it."""
    from inloop.errors import ClientError
    from inloop.flow.client import DataArtifact, Step

    parts = pathspec.split("/")
    if len(parts) == 5 and all(parts):
        return DataArtifact(pathspec, _namespace_check=False)
    if len(parts) != 4 or not all(parts):
        raise ClientError(f"{option} takes an artifact {_PATHSPEC_FORMS}. Got {pathspec!r}.")
    step = Step("/".join(parts[:3]), _namespace_check=False)
    tasks = step.tasks()
    if len(tasks) != 1:
        shown = ", ".join(f"{t.pathspec}/{parts[3]}" for t in tasks[:5])
        raise ClientError(
            f"Step {step.pathspec} has {len(tasks)} tasks, so {pathspec!r} does not name one "
            f"artifact: give the task too, such as {shown or 'Flow/run/step/task/name'}."
        )
    return tasks[0][parts[3]]


def _table(*columns: str, title: str | None = None, keep: tuple[str, ...] = ()) -> Table:
    # Refs and times stay whole; the rest folds rather than being cut to "…".
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in keep, overflow="fold")
    return table


def _metric_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a word, such as a date or a tag: recorded as text


def _metrics(pairs: list[str]) -> dict[str, Any]:
    from inloop.serve.models import ServeError

    metrics: dict[str, Any] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise ServeError(
                f"--metric takes NAME=VALUE, such as --metric accuracy=0.97. Got {pair!r}."
            )
        if name in metrics:
            raise ServeError(f"--metric {name!r} is given twice: pass each metric once.")
        metrics[name] = _metric_value(value.strip())
    return metrics


def register_cmd(
    pathspec: str | None = typer.Argument(
        None, help=f"The artifact holding the model: {_PATHSPEC_FORMS}."
    ),
    name: str = typer.Option(
        ..., "--name", help="The model's name; each registration is its next version."
    ),
    metric: list[str] = typer.Option(
        [], "--metric", help="NAME=VALUE recorded with the version (repeat for several)."
    ),
    note: str | None = typer.Option(None, "--note", help="A note recorded with the version."),
    snapshot: int | None = typer.Option(
        None, "--snapshot", min=1, help="The dataset snapshot it learned from (default: the run's)."
    ),
    majority_from: str | None = typer.Option(
        None,
        "--majority-class-from",
        help="Register a baseline instead: always the most frequent class of these labels, "
        "an artifact such as DigitsFlow/12/start/1/y_train.",
    ),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Register a model from a flow's artifact (or a majority-class baseline) as a new version."""
    from inloop.serve.models import ServeError, majority_class_from
    from inloop.serve.registry import register

    with _cli().user_errors():
        if (pathspec is None) == (majority_from is None):
            raise ServeError(
                "inloop serve register takes the artifact of a model (PATHSPEC) or "
                "--majority-class-from LABELS_PATHSPEC, one of the two. "
                f"Got {'both' if pathspec else 'neither'}."
            )
        metrics = _metrics(metric)
        user = acting_user(token, "registering a model")
        source: object
        if majority_from is not None:
            source = majority_class_from(_artifact(majority_from, "--majority-class-from").data)
            note = note if note is not None else f"majority class of {majority_from}"
        else:
            source = _artifact(str(pathspec), "PATHSPEC")
        version = register(
            source,
            name=name,
            metrics=metrics,
            snapshot=snapshot,
            note=note,
            registered_by=user.name,
        )
    origin = (
        f" from {version.task_pathspec}/{version.artifact_name}" if version.task_pathspec else ""
    )
    snap = f", snapshot {version.snapshot_id}" if version.snapshot_id is not None else ""
    _cli()._stdout().print(
        escape(f"Registered {version.ref} ({version.kind}){origin}{snap} by {user.name}."),
        soft_wrap=True,
    )


def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List the registered models with their newest version."""
    from inloop.serve.registry import list_models

    with _cli().user_errors():
        models = list_models()
    if as_json:
        out = [{**asdict(m), "created_at": m.created_at.isoformat()} for m in models]
        typer.echo(json.dumps(out, indent=2))
        return
    console = _cli()._stdout()
    if not models:
        console.print(
            "No models yet. Register one with: inloop serve register FLOW/RUN/STEP/TASK/NAME "
            "--name NAME"
        )
        return
    table = _table("model", "latest", "versions", "kinds", "created", "by", keep=("created",))
    for m in models:
        table.add_row(
            escape(m.name),
            str(m.latest_version),
            str(m.n_versions),
            ", ".join(m.kinds),
            _cli()._format_time(m.created_at),
            escape(m.created_by),
        )
    console.print(table)


def _version_json(v: ModelVersion) -> dict[str, Any]:
    out = asdict(v)
    out["ref"] = v.ref
    out["registered_at"] = v.registered_at.isoformat()
    return out


def _metrics_text(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )


def versions_cmd(
    name: str = typer.Argument(..., help="The model."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON."),
) -> None:
    """List every version of a model with its lineage: run, task, snapshot, metrics, who."""
    from inloop.serve.registry import list_versions

    with _cli().user_errors():
        versions = list_versions(name)
    if as_json:
        typer.echo(json.dumps([_version_json(v) for v in versions], indent=2))
        return
    table = _table(
        "version", "registered", "by", "from", "metrics", "note", title=name, keep=("version",)
    )
    for v in versions:
        origin = f"{v.task_pathspec}/{v.artifact_name}" if v.task_pathspec else v.kind
        if v.snapshot_id is not None:
            origin += f" (snapshot {v.snapshot_id})"
        table.add_row(
            v.ref,
            _cli()._format_time(v.registered_at),
            escape(v.registered_by),
            escape(origin),
            escape(_metrics_text(v.metrics)),
            escape(v.note or ""),
        )
    _cli()._stdout().print(table)
