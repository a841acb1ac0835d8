"""``inloop serve replay`` and ``inloop serve evaluate``: a model against the request archive.

Registered on ``inloop serve`` (in :mod:`inloop.cli.serve`)::

    inloop serve replay digits --model digits@4 --since 7d
    inloop serve replay digits --model digits@4 --since 2026-11-01 --until 2026-11-08 --json
    inloop serve evaluate digits --since 24h
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import ModuleType

import typer
from rich.markup import escape
from rich.table import Table

from inloop.cli.progress import progress_bar

__all__ = ["evaluate_cmd", "parse_when", "replay"]

_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_WHEN_HELP = "ISO date or time (2026-11-01, 2026-11-01T08:00) or a time ago (30m, 24h, 7d, 2w)."


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports the serve commands to register them."""
    from inloop.cli import main

    return main


def parse_when(value: str | None, what: str, now: datetime | None = None) -> datetime | None:
    """A time given on the command line: ISO 8601 (naive means local time) or ``N[smhdw]`` ago.

    >>> now = datetime(2026, 11, 8, 12, 0, tzinfo=UTC)
    >>> parse_when("24h", "--since", now).isoformat()
    '2026-11-07T12:00:00+00:00'
    >>> parse_when("2026-11-01T00:00+00:00", "--since").isoformat()
    '2026-11-01T00:00:00+00:00'
    """
    if value is None:
        return None
    text = value.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative is not None:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        from inloop.serve.models import ServeError

        raise ServeError(
            f"{what} must be an ISO date or time such as 2026-11-01 or 2026-11-01T08:00, or a "
            f"time ago such as 30m, 24h, 7d or 2w. Got {value!r}."
        ) from None
    # A naive time is the user's local time, as `inloop runs` shows times.
    return parsed.astimezone(UTC) if parsed.tzinfo is None else parsed


def replay(
    service: str = typer.Argument(..., help="The service whose archived requests to replay."),
    model: str = typer.Option(..., "--model", "-m", help="The candidate model version, name@N."),
    since: str | None = typer.Option(None, "--since", help=f"Replay from this time: {_WHEN_HELP}"),
    until: str | None = typer.Option(None, "--until", help=f"Replay up to this time: {_WHEN_HELP}"),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Replay at most this many requests (oldest first)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Score SERVICE's archived requests with a candidate model and compare it with the champion."""
    with _cli().user_errors():
        from inloop.serve.replay import replay as run_replay

        start = parse_when(since, "--since")
        end = parse_when(until, "--until")
        with progress_bar(_cli()._stderr(), "Replaying") as bar:
            task = bar.add_task("replay", total=None)
            report = run_replay(
                service,
                model,
                since=start,
                until=end,
                limit=limit,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        if json_out:
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
            return
        console = _cli()._stdout()
        if report.n_requests == 0:
            console.print(
                escape(
                    f"No archived requests of {service!r} in the window "
                    f"({since or 'start'} .. {until or 'now'}): nothing to replay. Widen "
                    "--since/--until, or check that the service's policy has decoy on."
                )
            )
            return
        console.print(report.table())


def evaluate_cmd(
    service: str = typer.Argument(..., help="The service whose labeled requests to evaluate."),
    since: str | None = typer.Option(None, "--since", help=f"From this time: {_WHEN_HELP}"),
    until: str | None = typer.Option(None, "--until", help=f"Up to this time: {_WHEN_HELP}"),
    json_out: bool = typer.Option(False, "--json", help="Print the evaluations as JSON."),
) -> None:
    """Accuracy of every model that scored SERVICE's requests with feedback, best first."""
    with _cli().user_errors():
        from inloop.serve.replay import evaluate

        evaluations = evaluate(
            service, since=parse_when(since, "--since"), until=parse_when(until, "--until")
        )
        if json_out:
            typer.echo(json.dumps([e.to_dict() for e in evaluations], indent=2, default=str))
            return
        console = _cli()._stdout()
        if not evaluations:
            console.print(
                escape(
                    f"No requests of {service!r} with feedback and a champion answer in the "
                    "window: nothing to evaluate. Attach labels with feedback first."
                )
            )
            return
        table = Table(title=f"Models on {service}'s labeled requests")
        for column in ("model", "roles", "requests", "labeled", "accuracy"):
            table.add_column(column, justify="left" if column in ("model", "roles") else "right")
        for e in evaluations:
            accuracy = "-" if e.accuracy is None else f"{100.0 * e.accuracy:.1f}%"
            table.add_row(
                e.model, ", ".join(e.roles), str(e.n_requests), str(e.n_labeled), accuracy
            )
        console.print(table)
