"""Step and flow decorators: ``@step``, ``@retry``, ``@catch``, ``@timeout``, ``@resources``, ...

A decorator records a :class:`StepDecorator` on the function (or class) it
decorates and returns it unchanged, so decorators stack in any order and type
checkers see plain functions. The runtime reads them back with
:func:`step_decorators`, :func:`get_decorator` and :func:`flow_decorators`.

Decorators that only make sense on Metaflow's cloud back ends (``@batch``,
``@kubernetes``, ``@conda``, ``@schedule``, ...) are accepted with any arguments
so existing flows load unchanged; they are recorded with ``local=False`` and
ignored when the flow runs. :func:`ignored_decorator_warning` says which.

Example::

    class TrainFlow(FlowSpec):
        @retry(times=2)
        @resources(cpu=2, memory=8192)
        @step
        def train(self):
            ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from inloop.errors import FlowDefinitionError

__all__ = [
    "CLOUD_FLOW_DECORATORS",
    "CLOUD_STEP_DECORATORS",
    "DECORATORS_ATTR",
    "StepDecorator",
    "airflow_external_task_sensor",
    "airflow_s3_key_sensor",
    "batch",
    "card",
    "catch",
    "conda",
    "conda_base",
    "environment",
    "flow_decorators",
    "get_decorator",
    "ignored_decorator_warning",
    "kubernetes",
    "nvidia",
    "project",
    "pypi",
    "pypi_base",
    "resources",
    "retry",
    "schedule",
    "secrets",
    "step",
    "step_decorators",
    "step_functions",
    "timeout",
    "trigger",
    "trigger_on_finish",
]

#: Attribute under which decorated functions and classes keep their decorators.
DECORATORS_ATTR = "__inloop_decorators__"

#: Metaflow step decorators that inloop accepts and ignores (they need a cloud back end).
CLOUD_STEP_DECORATORS = ("batch", "kubernetes", "conda", "pypi", "card", "secrets", "nvidia")
#: Metaflow flow (class) decorators that inloop accepts and ignores.
CLOUD_FLOW_DECORATORS = (
    "conda_base",
    "pypi_base",
    "schedule",
    "trigger",
    "trigger_on_finish",
    "airflow_s3_key_sensor",
    "airflow_external_task_sensor",
)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


@dataclass
class StepDecorator:
    """One decorator applied to a step or a flow: its name, its arguments, and
    whether inloop acts on it (``local=True``) or only records it (``local=False``)."""

    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    local: bool = True


# --------------------------------------------------------------------------- helpers


def _where(obj: Any) -> str:
    """'file:line' of a function's definition, or the object's name when unknown."""
    code = getattr(obj, "__code__", None)
    if code is not None:
        return f"{code.co_filename}:{code.co_firstlineno}"
    return getattr(obj, "__qualname__", repr(obj))


def _label(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)


def _attach_to_function(func: Any, deco: StepDecorator, *, unique: bool = True) -> None:
    if isinstance(func, type) or not callable(func):
        kind = "class" if isinstance(func, type) else type(func).__name__
        raise FlowDefinitionError(
            f"@{deco.name} decorates step methods, but it was applied to {kind} "
            f"{_label(func)!r}. Put @{deco.name} directly above a method's 'def', "
            "next to @step."
        )
    existing: list[StepDecorator] = func.__dict__.setdefault(DECORATORS_ATTR, [])
    if unique and any(d.name == deco.name for d in existing):
        raise FlowDefinitionError(
            f"@{deco.name} is applied twice to step {_label(func)!r} ({_where(func)}); "
            f"each decorator may appear once per step. Merge the two into one "
            f"@{deco.name}(...)."
        )
    # Decorators run bottom-up; inserting at the front keeps source (top-down) order.
    existing.insert(0, deco)


def _attach_to_class(cls: Any, deco: StepDecorator, *, unique: bool = True) -> None:
    if not isinstance(cls, type):
        raise FlowDefinitionError(
            f"@{deco.name} decorates flow classes, but it was applied to "
            f"{_label(cls)!r} ({_where(cls)}). Put @{deco.name} above the "
            "'class ...(FlowSpec):' line."
        )
    # Copy: the list may be inherited from a base class that must not change.
    own = list(cls.__dict__.get(DECORATORS_ATTR, ()))
    if unique and any(d.name == deco.name for d in own):
        raise FlowDefinitionError(
            f"@{deco.name} is applied twice to flow {cls.__name__!r}; each flow decorator "
            f"may appear once. Merge the two into one @{deco.name}(...)."
        )
    own.insert(0, deco)
    setattr(cls, DECORATORS_ATTR, own)


def _bad(deco: str, arg: str, value: object, accepted: str) -> FlowDefinitionError:
    return FlowDefinitionError(
        f"The {arg!r} argument of @{deco} must be {accepted}; got {value!r}. "
        f"Fix it in the @{deco}(...) call."
    )


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_int(deco: str, arg: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(deco, arg, value, f"an integer >= {minimum}")
    return value


def _check_number(deco: str, arg: str, value: object, *, positive: bool = False) -> float | int:
    if not _is_number(value) or (value <= 0 if positive else value < 0):  # type: ignore[operator]
        raise _bad(deco, arg, value, "a number > 0" if positive else "a number >= 0")
    return value  # type: ignore[return-value]


def _no_positional(deco: str, func: object) -> None:
    if func is not None and not callable(func):
        raise FlowDefinitionError(
            f"@{deco} takes keyword arguments only; got the positional value {func!r}. "
            f"Name the argument, e.g. @{deco}(...=...)."
        )


def _apply(func: Any, deco: StepDecorator) -> Any:
    if func is not None:
        _attach_to_function(func, deco)
        return func

    def decorate(f: F) -> F:
        _attach_to_function(f, deco)
        return f

    return decorate


# --------------------------------------------------------------------------- @step


def step(func: F) -> F:
    """Mark a method of a FlowSpec subclass as a step of the flow.

    Example::

        @step
        def start(self):
            self.next(self.end)
    """
    if isinstance(func, type) or not callable(func):
        raise FlowDefinitionError(
            f"@step decorates methods of a FlowSpec subclass, but it was applied to "
            f"{_label(func)!r}. Put @step directly above a method's 'def'."
        )
    func.is_step = True  # type: ignore[attr-defined]
    func.__dict__.setdefault(DECORATORS_ATTR, [])
    return func


# --------------------------------------------------------------------------- local step decorators


@overload
def retry(func: F, /) -> F: ...
@overload
def retry(*, times: int = 3, minutes_between_retries: float = 2) -> Callable[[F], F]: ...
def retry(func: Any = None, /, *, times: int = 3, minutes_between_retries: float = 2) -> Any:
    """Run a failed step again, up to ``times`` more times, waiting
    ``minutes_between_retries`` between attempts. Usable bare: ``@retry``."""
    _no_positional("retry", func)
    attrs = {
        "times": _check_int("retry", "times", times, minimum=0),
        "minutes_between_retries": _check_number(
            "retry", "minutes_between_retries", minutes_between_retries
        ),
    }
    return _apply(func, StepDecorator("retry", attrs))


@overload
def catch(func: F, /) -> F: ...
@overload
def catch(*, var: str | None = None, print_exception: bool = True) -> Callable[[F], F]: ...
def catch(func: Any = None, /, *, var: str | None = None, print_exception: bool = True) -> Any:
    """Let the flow continue when the step fails for good (after retries); the
    exception is stored in artifact ``var`` when given."""
    _no_positional("catch", func)
    if var is not None and (not isinstance(var, str) or not var.isidentifier()):
        raise _bad("catch", "var", var, "None or an artifact name (a Python identifier)")
    if not isinstance(print_exception, bool):
        raise _bad("catch", "print_exception", print_exception, "True or False")
    return _apply(func, StepDecorator("catch", {"var": var, "print_exception": print_exception}))


def timeout(
    func: Any = None, /, *, seconds: float = 0, minutes: float = 0, hours: float = 0
) -> Callable[[F], F]:
    """Fail an attempt of the step that runs longer than hours + minutes + seconds."""
    if func is not None:
        # Bare @timeout has no duration: there is nothing sensible to default to.
        _no_positional("timeout", func)
        raise FlowDefinitionError(
            f"@timeout on step {_label(func)!r} ({_where(func)}) needs a duration; "
            "write e.g. @timeout(minutes=30)."
        )
    attrs = {
        "seconds": _check_number("timeout", "seconds", seconds),
        "minutes": _check_number("timeout", "minutes", minutes),
        "hours": _check_number("timeout", "hours", hours),
    }
    if attrs["seconds"] + 60 * attrs["minutes"] + 3600 * attrs["hours"] <= 0:
        raise FlowDefinitionError(
            "@timeout needs a total duration > 0; got seconds=0, minutes=0, hours=0. "
            "Give at least one, e.g. @timeout(minutes=30)."
        )
    return _apply(None, StepDecorator("timeout", attrs))


@overload
def resources(func: F, /) -> F: ...
@overload
def resources(
    *,
    cpu: float = 1,
    gpu: int = 0,
    memory: int = 4096,
    disk: int | None = None,
    shared_memory: int | None = None,
) -> Callable[[F], F]: ...
def resources(
    func: Any = None,
    /,
    *,
    cpu: float = 1,
    gpu: int = 0,
    memory: int = 4096,
    disk: int | None = None,
    shared_memory: int | None = None,
) -> Any:
    """Declare what one task of the step needs: CPUs, GPUs, and memory, disk and
    shared memory in MiB. Executors that schedule by resources honour them."""
    _no_positional("resources", func)
    attrs: dict[str, Any] = {
        "cpu": _check_number("resources", "cpu", cpu, positive=True),
        "gpu": _check_int("resources", "gpu", gpu, minimum=0),
        "memory": _check_int("resources", "memory", memory, minimum=1),
        "disk": None if disk is None else _check_int("resources", "disk", disk, minimum=1),
        "shared_memory": None
        if shared_memory is None
        else _check_int("resources", "shared_memory", shared_memory, minimum=1),
    }
    return _apply(func, StepDecorator("resources", attrs))


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@overload
def environment(func: F, /) -> F: ...
@overload
def environment(*, vars: dict[str, Any] | None = None) -> Callable[[F], F]: ...
def environment(func: Any = None, /, *, vars: dict[str, Any] | None = None) -> Any:
    """Set environment variables while the step runs; values are turned into strings."""
    _no_positional("environment", func)
    if vars is None:
        vars = {}
    if not isinstance(vars, dict):
        raise _bad("environment", "vars", vars, "a dict of variable name to value")
    clean: dict[str, str] = {}
    for key, value in vars.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise _bad(
                "environment", "vars", key, "a dict whose keys are variable names like 'MY_VAR'"
            )
        if not isinstance(value, str | int | float | bool):
            raise _bad("environment", f"vars[{key!r}]", value, "a string, number or bool")
        clean[key] = str(value)
    return _apply(func, StepDecorator("environment", {"vars": clean}))


# --------------------------------------------------------------------------- flow decorators

_PROJECT_NAME = re.compile(r"^[a-z0-9_]+$")


def project(name: str) -> Callable[[C], C]:
    """Group the flow's runs under a project: ``@project(name="fraud")``.

    The name may hold lowercase letters, digits and underscores.
    """
    if isinstance(name, type):
        raise FlowDefinitionError(
            f"@project on flow {name.__name__!r} needs a name; write "
            '@project(name="my_project") above the class.'
        )
    if not isinstance(name, str) or not _PROJECT_NAME.match(name):
        raise _bad("project", "name", name, "lowercase letters, digits and underscores")

    def decorate(cls: C) -> C:
        _attach_to_class(cls, StepDecorator("project", {"name": name}))
        return cls

    return decorate


# --------------------------------------------------------------------------- cloud-only, ignored


def _cloud_step(name: str) -> Callable[..., Any]:
    def decorator(func: Any = None, /, **kwargs: Any) -> Any:
        _no_positional(name, func)
        deco = StepDecorator(name, dict(kwargs), local=False)
        # Metaflow allows some of these more than once (e.g. several @card); they are ignored.
        if func is not None:
            _attach_to_function(func, deco, unique=False)
            return func

        def decorate(f: Any) -> Any:
            _attach_to_function(f, deco, unique=False)
            return f

        return decorate

    decorator.__name__ = decorator.__qualname__ = name
    decorator.__doc__ = (
        f"Metaflow's @{name}: accepted with any arguments and ignored, "
        "because inloop runs steps on its own executors."
    )
    return decorator


def _cloud_flow(name: str) -> Callable[..., Any]:
    def decorator(cls: Any = None, /, **kwargs: Any) -> Any:
        deco = StepDecorator(name, dict(kwargs), local=False)
        if cls is not None:
            _attach_to_class(cls, deco, unique=False)
            return cls

        def decorate(c: Any) -> Any:
            _attach_to_class(c, deco, unique=False)
            return c

        return decorate

    decorator.__name__ = decorator.__qualname__ = name
    decorator.__doc__ = (
        f"Metaflow's flow decorator @{name}: accepted with any arguments and ignored, "
        "because inloop has no cloud scheduler or package manager integration."
    )
    return decorator


batch = _cloud_step("batch")
kubernetes = _cloud_step("kubernetes")
conda = _cloud_step("conda")
pypi = _cloud_step("pypi")
card = _cloud_step("card")
secrets = _cloud_step("secrets")
nvidia = _cloud_step("nvidia")
conda_base = _cloud_flow("conda_base")
pypi_base = _cloud_flow("pypi_base")
schedule = _cloud_flow("schedule")
trigger = _cloud_flow("trigger")
trigger_on_finish = _cloud_flow("trigger_on_finish")
airflow_s3_key_sensor = _cloud_flow("airflow_s3_key_sensor")
airflow_external_task_sensor = _cloud_flow("airflow_external_task_sensor")


# --------------------------------------------------------------------------- reading back


def step_decorators(func: Callable[..., Any]) -> list[StepDecorator]:
    """The decorators applied to a step function, in source order (top first)."""
    return list(getattr(func, DECORATORS_ATTR, ()))


def get_decorator(func: Callable[..., Any], name: str) -> StepDecorator | None:
    """The decorator called ``name`` on a step function, or None when absent."""
    for deco in getattr(func, DECORATORS_ATTR, ()):
        if deco.name == name:
            return deco
    return None


def flow_decorators(cls: type) -> list[StepDecorator]:
    """The flow decorators of a flow class, including those of its base classes;
    a subclass's decorator replaces a base class's of the same name."""
    merged: dict[str, list[StepDecorator]] = {}
    for klass in reversed(cls.__mro__):
        own = klass.__dict__.get(DECORATORS_ATTR)
        if not own:
            continue
        names = {d.name for d in own}
        for name in names:
            merged.pop(name, None)
        for deco in own:
            merged.setdefault(deco.name, []).append(deco)
    return [deco for group in merged.values() for deco in group]


def step_functions(cls: type) -> dict[str, Callable[..., Any]]:
    """The step functions of a flow class by name, in definition order, including
    inherited steps (a subclass may override a step, keeping its position)."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if callable(value) and getattr(value, "is_step", False) is True:
                found[name] = value
            elif name in found:
                del found[name]
    return found


def ignored_decorator_warning(flow_cls: type) -> str | None:
    """One sentence naming every cloud-only decorator the flow uses and where,
    or None when it uses none.

    Example: ``inloop runs flows locally: @batch (steps: train), @conda_base (flow)
    are accepted and ignored.``
    """
    by_step: dict[str, list[str]] = {}
    for step_name, func in step_functions(flow_cls).items():
        for deco in step_decorators(func):
            if not deco.local:
                where = by_step.setdefault(deco.name, [])
                if step_name not in where:
                    where.append(step_name)
    parts = [f"@{name} (steps: {', '.join(steps)})" for name, steps in by_step.items()]
    seen: set[str] = set()
    for deco in flow_decorators(flow_cls):
        if not deco.local and deco.name not in seen:
            seen.add(deco.name)
            parts.append(f"@{deco.name} (flow)")
    if not parts:
        return None
    verb = "is" if len(parts) == 1 else "are"
    return f"inloop runs flows locally: {', '.join(parts)} {verb} accepted and ignored."
