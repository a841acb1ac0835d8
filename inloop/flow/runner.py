"""Run flows from notebooks and scripts: ``Runner("flow.py").run(alpha=0.1)``.

The run happens in this process (worker processes do the tasks), so a flow class
defined in a notebook cell runs as well as one in a file::

    run = Runner(MyFlow).run(alpha=0.1)
    run.data.score
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from inloop.errors import FlowError
from inloop.flow.spec import FlowSpec


def load_flow_file(path: str | os.PathLike[str], flow_name: str | None = None) -> type[FlowSpec]:
    """Import a flow file by path and return its FlowSpec subclass."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FlowError(f"Flow file {str(path)!r} does not exist.")
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:8]
    module_name = f"inloop_flow_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise FlowError(f"Cannot import {str(file)!r} as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    flows = {
        value.__name__: value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, FlowSpec)
        and value is not FlowSpec
        and value.__module__ == module_name
    }
    if flow_name is not None:
        if flow_name not in flows:
            raise FlowError(f"{file.name} has no flow {flow_name!r}; it has {sorted(flows)}.")
        return flows[flow_name]
    if len(flows) != 1:
        raise FlowError(
            f"{file.name} defines {len(flows)} flows ({', '.join(sorted(flows)) or 'none'}); "
            "name one with Runner(path, flow_name=...)."
        )
    return next(iter(flows.values()))


class ExecutingRun:
    """A finished run started by :class:`Runner`; attribute access goes to its ``Run``."""

    def __init__(self, run: Any, status: str) -> None:
        self.run = run
        self.status = status  # "successful" or "failed"
        self.returncode = 0 if status == "successful" else 1

    def __enter__(self) -> ExecutingRun:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def __repr__(self) -> str:
        return f"ExecutingRun({self.run.pathspec}, status={self.status!r})"


class Runner:
    """Run a flow (a file path or a FlowSpec class) from Python.

    ``show_output=False`` hides the progress display and task output;
    ``max_workers``, ``executor`` and ``with_decorators`` apply to every call.
    """

    def __init__(
        self,
        flow: str | os.PathLike[str] | type[FlowSpec],
        *,
        flow_name: str | None = None,
        show_output: bool = True,
        max_workers: int | None = None,
        max_num_splits: int | None = None,
        executor: str | None = None,
        with_decorators: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        if isinstance(flow, type):
            if not issubclass(flow, FlowSpec):
                raise FlowError(f"Runner takes a FlowSpec subclass or a file; got {flow!r}.")
            self.flow_cls = flow
        else:
            self.flow_cls = load_flow_file(flow, flow_name)
        self.show_output = show_output
        self.defaults: dict[str, Any] = {
            "max_workers": max_workers,
            "max_num_splits": max_num_splits,
            "executor": executor,
            "with_decorators": list(with_decorators),
        }
        self.env = dict(env or {})

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _execute(self, parameters: dict[str, Any] | None, **options: Any) -> ExecutingRun:
        from inloop.flow.client import Run
        from inloop.flow.runtime import RunOptions, Runtime

        merged = {**self.defaults, **{k: v for k, v in options.items() if v is not None}}
        run_options = RunOptions(quiet=not self.show_output, **merged)
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            record = Runtime(self.flow_cls, run_options).execute(parameters)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        run = Run(f"{record.flow_name}/{record.run_id}", _namespace_check=False)
        return ExecutingRun(run, "successful" if record.status == "succeeded" else "failed")

    def run(
        self,
        *,
        tags: Sequence[str] = (),
        max_workers: int | None = None,
        max_num_splits: int | None = None,
        with_decorators: Sequence[str] | None = None,
        executor: str | None = None,
        **parameters: Any,
    ) -> ExecutingRun:
        """Run the flow with these parameter values and wait for it to finish."""
        return self._execute(
            parameters,
            tags=list(tags),
            max_workers=max_workers,
            max_num_splits=max_num_splits,
            with_decorators=with_decorators,
            executor=executor,
        )

    def resume(
        self,
        origin_run_id: int | str | None = None,
        step: str | None = None,
        *,
        tags: Sequence[str] = (),
        max_workers: int | None = None,
        executor: str | None = None,
    ) -> ExecutingRun:
        """Rerun a failed run (default: the latest), reusing its successful tasks."""
        from inloop.flow.user import user_namespace
        from inloop.store import RunStore

        if origin_run_id is None:
            runs = RunStore().list_runs(self.flow_cls.__name__, tags=[user_namespace()], limit=1)
            if not runs:
                raise FlowError(f"No earlier run of {self.flow_cls.__name__} to resume.")
            origin = runs[0].run_id
        else:
            origin = int(str(origin_run_id).rsplit("/", 1)[-1])
        return self._execute(
            None,
            tags=list(tags),
            max_workers=max_workers,
            executor=executor,
            origin_run_id=origin,
            resume_step=step,
        )
