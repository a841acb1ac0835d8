"""The command line of a flow file: ``python flow.py run|resume|show|check``.

Options follow Metaflow's, so existing habits and scripts keep working:
``run --alpha 0.1 --tag t --max-workers 2 --max-num-splits 500``,
``--with retry`` (before or after the command), ``resume [STEP] --origin-run-id ID``.
Metaflow-only options that make no difference here (``--no-pylint``,
``--datastore local``, ``--metadata local``, ``--environment local``) are accepted.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from inloop.errors import FlowDefinitionError, InloopError
from inloop.flow.graph import build_graph, check_graph, format_graph
from inloop.flow.parameters import IncludeFile, Parameter, flow_parameters

if TYPE_CHECKING:
    from inloop.flow.spec import FlowSpec

_err = Console(stderr=True)


def _run_options(func: Any) -> Any:
    options = [
        click.option("--tag", "tags", multiple=True, help="Add a tag to the run (repeatable)."),
        click.option(
            "--max-workers",
            type=click.IntRange(min=1),
            default=None,
            help="Tasks run at once (default: INLOOP_MAX_WORKERS or the CPU count).",
        ),
        click.option(
            "--max-num-splits",
            type=click.IntRange(min=1),
            default=None,
            help="Largest foreach fan-out allowed (default 10000).",
        ),
        click.option(
            "--with",
            "with_decorators",
            multiple=True,
            help="Add a decorator to every step, e.g. retry or retry:times=2.",
        ),
        click.option(
            "--executor",
            default=None,
            help="local, dask, or dask://host:port (default: INLOOP_EXECUTOR).",
        ),
        click.option("--run-id-file", default=None, help="Write the run id to this file."),
        click.option("--quiet", is_flag=True, help="Print only errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parameter_option(attr: str, param: Parameter) -> click.Option:
    names = {f"--{param.name}", f"--{param.name.replace('_', '-')}"}
    help_text = param.help or ""
    if isinstance(param, IncludeFile):
        help_text = (help_text + " (a file path; its content is stored)").strip()
    default = param.default
    if param.show_default and default is not None and not callable(default):
        help_text = f"{help_text} [default: {default}]".strip()
    if param.required:
        help_text = f"{help_text} [required]".strip()
    kind = getattr(param, "type", None)
    metavar = getattr(kind, "__name__", "VALUE").upper()
    return click.Option(
        [*sorted(names, key=len), attr],
        default=None,
        help=help_text,
        is_flag=False,
        # A bool parameter given bare (`--debug`) means true, as with a flag.
        flag_value="true" if kind is bool else None,
        metavar="TEXT" if isinstance(param, IncludeFile) else metavar,
    )


def _fail(exc: InloopError) -> None:
    # Escaped: messages hold brackets (pip install "inloop[dask]"); soft_wrap: one line per line.
    _err.print(f"[red]{escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
    raise SystemExit(1)


def build_cli(flow_cls: type[FlowSpec]) -> click.Group:
    """The click command group for ``flow_cls``."""
    name = flow_cls.__name__
    params = flow_parameters(flow_cls)

    @click.group(
        name=name,
        help=(flow_cls.__doc__ or f"Run the flow {name}.").strip(),
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.option("--quiet", is_flag=True, help="Print only errors.")
    @click.option(
        "--with",
        "with_decorators",
        multiple=True,
        help="Add a decorator to every step, e.g. retry.",
    )
    @click.option("--no-pylint", "no_pylint", is_flag=True, hidden=True)
    @click.option("--pylint", "pylint", is_flag=True, hidden=True)
    @click.option("--datastore", default="local", hidden=True)
    @click.option("--metadata", default="local", hidden=True)
    @click.option("--environment", default="local", hidden=True)
    @click.pass_context
    def cli(ctx: click.Context, quiet: bool, with_decorators: tuple[str, ...], **_: Any) -> None:
        ctx.obj = {"quiet": quiet, "with": list(with_decorators)}

    def _options(ctx: click.Context, kwargs: dict[str, Any]) -> Any:
        from inloop.flow.runtime import RunOptions

        return RunOptions(
            tags=list(kwargs["tags"]),
            max_workers=kwargs["max_workers"],
            max_num_splits=kwargs["max_num_splits"],
            with_decorators=[*ctx.obj["with"], *kwargs["with_decorators"]],
            executor=kwargs["executor"],
            quiet=bool(kwargs["quiet"] or ctx.obj["quiet"]),
            run_id_file=kwargs["run_id_file"],
        )

    def _execute(options: Any, parameters: dict[str, Any] | None) -> None:
        from inloop.flow.runtime import Runtime

        try:
            record = Runtime(flow_cls, options).execute(parameters)
        except InloopError as exc:
            _fail(exc)
            return
        if record.status != "succeeded":
            raise SystemExit(1)

    @cli.command(help=f"Run {name} from the start.")
    @_run_options
    @click.pass_context
    def run(ctx: click.Context, **kwargs: Any) -> None:
        given = {attr: kwargs.pop(attr) for attr in params if kwargs.get(attr) is not None}
        for attr in params:
            kwargs.pop(attr, None)
        _execute(_options(ctx, kwargs), given)

    for attr, param in params.items():
        run.params.append(_parameter_option(attr, param))

    @cli.command(help="Rerun a failed run, reusing its successful tasks.")
    @click.argument("step", required=False)
    @click.option("--origin-run-id", default=None, help="Run to resume (default: your latest).")
    @_run_options
    @click.pass_context
    def resume(
        ctx: click.Context, step: str | None, origin_run_id: str | None, **kwargs: Any
    ) -> None:
        from inloop.flow.user import user_namespace
        from inloop.store import RunStore

        options = _options(ctx, kwargs)
        if origin_run_id is None:
            runs = RunStore().list_runs(name, tags=[user_namespace()], limit=1)
            if not runs:
                _err.print(f"[red]No earlier run of {name} to resume; use `run` first.[/red]")
                raise SystemExit(1)
            options.origin_run_id = runs[0].run_id
        else:
            try:
                options.origin_run_id = int(origin_run_id.rsplit("/", 1)[-1])
            except ValueError:
                _err.print(
                    f"[red]--origin-run-id must be a run id such as 12 (or {name}/12); "
                    f"got {origin_run_id!r}.[/red]"
                )
                raise SystemExit(1) from None
        options.resume_step = step
        _execute(options, None)

    @cli.command(help="Show the steps of the flow and how they connect.")
    def show() -> None:
        try:
            click.echo(format_graph(build_graph(flow_cls)))
        except InloopError as exc:
            _fail(exc)

    @cli.command(help="Check the flow's graph and parameters without running it.")
    def check() -> None:
        try:
            graph = build_graph(flow_cls)
        except FlowDefinitionError as exc:
            _fail(exc)
            return
        problems = check_graph(graph, params)
        if problems:
            for problem in problems:
                _err.print(f"[red]✗[/red] {problem}", highlight=False)
            raise SystemExit(1)
        click.echo(f"{name}: the graph and parameters look good ({len(graph.nodes)} steps).")

    return cli


def _show_inloop_warnings_plainly() -> None:
    """Print inloop's own warnings as one readable line instead of Python's format."""
    from inloop.flow.runtime import InloopWarning

    original = warnings.showwarning

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(category, type) and issubclass(category, InloopWarning):
            _err.print(f"[yellow]Warning:[/yellow] {message}", highlight=False, soft_wrap=True)
        else:
            original(message, category, *args, **kwargs)

    warnings.showwarning = show


def main(flow_cls: type[FlowSpec], argv: list[str] | None = None) -> None:
    """Parse the command line and run the command for ``flow_cls``; exits the process.

    When the flow file is the program (``python flow.py run``) the process ends with
    ``os._exit`` once output is flushed: everything is already committed, and tearing
    down the loaded modules would add a tenth of a second to every command. Set
    ``INLOOP_SLOW_EXIT=1`` to exit normally (e.g. under coverage).
    """
    cli = build_cli(flow_cls)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "flow.py"
    _show_inloop_warnings_plainly()
    code = 0
    try:
        cli.main(args=argv, prog_name=f"python {prog}", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    if flow_cls.__module__ == "__main__" and not os.environ.get("INLOOP_SLOW_EXIT"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
