"""The ``inloop`` command: list runs, read task logs, trace a request's lineage.

User errors (any :class:`~inloop.errors.InloopError`) print one red line and
exit with status 1; a Python traceback means a bug in inloop.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from inloop import __version__
from inloop.errors import ClientError, InloopError

app = typer.Typer(
    name="inloop",
    help="inloop: machine-learning systems with humans in the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_STATUS_STYLE = {"succeeded": "green", "failed": "red", "running": "yellow", "lost": "magenta"}


def _stdout() -> Console:
    # Built per call: CliRunner and redirections swap sys.stdout between calls.
    return Console(file=sys.stdout, highlight=False)


def _stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`InloopError` into one red line on stderr and exit status 1."""
    try:
        yield
    except InloopError as exc:
        _print_error(exc)
        raise typer.Exit(1) from None


def _print_error(exc: InloopError) -> None:
    # soft_wrap: the message stays one line (not folded at the terminal width) for grep and logs.
    _stderr().print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"inloop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the inloop version and exit.",
    ),
) -> None:
    """inloop: machine-learning systems with humans in the loop."""


def _format_time(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def format_duration(delta: timedelta) -> str:
    """A short human duration: ``0.4s``, ``12.0s``, ``3m 04s``, ``2h 05m``."""
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@app.command("runs")
def runs_command(
    flow: str | None = typer.Argument(None, help="Only runs of this flow (its class name)."),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Runs in this namespace, e.g. user:ana."
    ),
    all_namespaces: bool = typer.Option(
        False, "--all", "-a", help="Runs of every namespace (every user)."
    ),
    tag: list[str] = typer.Option(
        [], "--tag", "-t", help="Only runs with this tag (repeat for several; all must match)."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many runs."),
) -> None:
    """List runs, newest first (default: your own namespace)."""
    # Imported here so `inloop --version` stays fast and works without a store.
    from inloop.flow.client import Flow, get_namespace
    from inloop.flow.lookup import run_status
    from inloop.store.runs import RunStore

    with user_errors():
        if namespace is not None and all_namespaces:
            raise ClientError(
                f"--namespace {namespace!r} and --all contradict each other: "
                "pass one of them (--all shows every namespace)."
            )
        ns = None if all_namespaces else (namespace or get_namespace())
        if flow is not None:
            Flow(flow)  # a clear error, with the known flows, for a misspelled name
        tags = [*([ns] if ns else []), *tag]
        records = RunStore().list_runs(flow, tags=tags, limit=limit)
        console = _stdout()
        if not records:
            where = f" of {flow}" if flow else ""
            scope = f" in namespace {ns}" if ns else ""
            with_tags = f" tagged {', '.join(tag)}" if tag else ""
            hint = " Try --all to see every namespace." if ns else ""
            console.print(escape(f"No runs{where}{scope}{with_tags}.{hint}"))
            return
        now = datetime.now(UTC)
        table = Table(title=f"Runs ({ns})" if ns else "Runs (all namespaces)")
        for column in ("pathspec", "status", "user", "tags", "started", "duration"):
            # At 80 columns the tags and duration wrap rather than being cut to "…".
            wraps = column in ("tags", "duration")
            table.add_column(column, no_wrap=not wraps, min_width=10 if wraps else None)
        for r in records:
            end = r.finished_at or now
            duration = format_duration(end - r.created_at)
            if r.finished_at is None and run_status(r, now) == "running":
                duration += " (running)"
            status = run_status(r, now)
            table.add_row(
                f"{r.flow_name}/{r.run_id}",
                Text(status, style=_STATUS_STYLE.get(status, "")),
                r.user,
                ", ".join(sorted(r.tags)),
                _format_time(r.created_at),
                duration,
            )
        console.print(table)


@app.command("logs")
def logs_command(
    pathspec: str = typer.Argument(..., help="FLOW/RUN/STEP or FLOW/RUN/STEP/TASK."),
    stderr: bool = typer.Option(False, "--stderr", help="Show standard error, not stdout."),
) -> None:
    """Print what a task printed (every task of a step, each under its pathspec)."""
    from inloop.flow.client import Step, Task

    with user_errors():
        parts = pathspec.split("/")
        if len(parts) not in (3, 4) or not all(parts):
            raise ClientError(
                f"logs takes FLOW/RUN/STEP or FLOW/RUN/STEP/TASK, e.g. TrainFlow/12/train. "
                f"Got {pathspec!r}."
            )
        stream = "stderr" if stderr else "stdout"
        # An explicit pathspec names one run: no namespace filter, as with `inloop runs --all`.
        if len(parts) == 4:
            task = Task(pathspec, _namespace_check=False)
            _write_log(getattr(task, stream), task.pathspec, stream)
            return
        console = _stdout()
        for task in Step(pathspec, _namespace_check=False).tasks():
            console.print(Text(f"--- {task.pathspec} ---", style="bold"))
            _write_log(getattr(task, stream), task.pathspec, stream)


def _write_log(text: str, pathspec: str, stream: str) -> None:
    if not text:
        _stderr().print(Text(f"(no {stream} captured for {pathspec})", style="dim"))
        return
    # Raw text, not Rich markup: logs may hold brackets and escape codes.
    typer.echo(text, nl=not text.endswith("\n"))


def _register_groups() -> None:
    # Imported here: each group imports main's helpers when its commands run.
    from inloop.cli import label, serve, users
    from inloop.cli.lineage import lineage
    from inloop.cli.server import server

    app.add_typer(label.app, name="label")
    app.add_typer(serve.app, name="serve")
    app.add_typer(users.app, name="users")
    app.command("server")(server)
    app.command("lineage")(lineage)


_register_groups()


def main() -> None:
    """Run the ``inloop`` command line in this process (ends with ``SystemExit``)."""
    try:
        app()
    except InloopError as exc:  # raised outside a command body, e.g. by settings
        _print_error(exc)
        sys.exit(1)


def run() -> None:
    """Entry point of the ``inloop`` console script: :func:`main`, then a quick exit.

    Once a command is done and its output flushed, the process ends with
    ``os._exit``: everything is committed, and tearing down the loaded modules
    (SQLAlchemy, numpy, ...) would add a fifth of a second to every command.
    Set ``INLOOP_SLOW_EXIT=1`` to exit normally (e.g. under coverage).
    """
    import os

    try:
        main()
        code = 0
    except SystemExit as exc:
        if os.environ.get("INLOOP_SLOW_EXIT"):
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (inloop runs | head): nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
