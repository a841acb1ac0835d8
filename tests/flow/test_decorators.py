"""Tests for inloop.flow.decorators: recording, validation and the ignored-decorator note."""

from __future__ import annotations

from typing import Any

import pytest

from inloop.errors import FlowDefinitionError
from inloop.flow.decorators import (
    DECORATORS_ATTR,
    StepDecorator,
    batch,
    card,
    catch,
    conda,
    conda_base,
    environment,
    flow_decorators,
    get_decorator,
    ignored_decorator_warning,
    kubernetes,
    project,
    resources,
    retry,
    schedule,
    step,
    step_decorators,
    step_functions,
    timeout,
    trigger,
)
from inloop.flow.spec import FlowSpec


def _any(value: object) -> Any:
    """A value passed where its type is wrong on purpose."""
    return value


def _fn() -> Any:
    def f(self: Any) -> None:
        pass

    return f


def test_step_marks_function_and_creates_the_list() -> None:
    f = step(_fn())
    assert f.is_step is True
    assert getattr(f, DECORATORS_ATTR) == []
    assert step_decorators(f) == []


@pytest.mark.parametrize("step_first", [True, False])
def test_decorators_stack_in_either_order_and_keep_source_order(step_first: bool) -> None:
    f = _fn()
    if step_first:
        f = retry(times=1)(resources(cpu=2)(step(f)))
    else:
        f = step(retry(times=1)(resources(cpu=2)(f)))
    assert f.is_step is True
    assert [d.name for d in step_decorators(f)] == ["retry", "resources"]


def test_bare_and_called_forms_record_defaults() -> None:
    bare = retry(step(_fn()))
    called = retry()(step(_fn()))
    assert get_decorator(bare, "retry") == get_decorator(called, "retry")
    assert get_decorator(bare, "retry") == StepDecorator(
        "retry", {"times": 3, "minutes_between_retries": 2}
    )
    assert get_decorator(catch(_fn()), "catch") == StepDecorator(
        "catch", {"var": None, "print_exception": True}
    )
    assert get_decorator(resources(_fn()), "resources") == StepDecorator(
        "resources", {"cpu": 1, "gpu": 0, "memory": 4096, "disk": None, "shared_memory": None}
    )
    assert get_decorator(environment(_fn()), "environment") == StepDecorator(
        "environment", {"vars": {}}
    )
    assert get_decorator(step(_fn()), "retry") is None


def test_called_forms_record_arguments() -> None:
    f = _fn()
    f = catch(var="error", print_exception=False)(f)
    f = timeout(minutes=5)(f)
    f = environment(vars={"N": 3, "MODE": "fast"})(f)
    f = resources(cpu=0.5, gpu=1, memory=100, disk=10, shared_memory=64)(f)
    assert get_decorator(f, "catch") == StepDecorator(
        "catch", {"var": "error", "print_exception": False}
    )
    assert get_decorator(f, "timeout") == StepDecorator(
        "timeout", {"seconds": 0, "minutes": 5, "hours": 0}
    )
    # Environment values become strings: that is what the process environment holds.
    env = get_decorator(f, "environment")
    assert env is not None and env.attributes["vars"] == {"N": "3", "MODE": "fast"}
    res = get_decorator(f, "resources")
    assert res is not None and res.attributes["gpu"] == 1 and res.local is True


@pytest.mark.parametrize(
    ("make", "deco", "arg", "value", "accepted"),
    [
        (lambda: retry(times=-1), "retry", "times", "-1", "integer >= 0"),
        (lambda: retry(times=True), "retry", "times", "True", "integer >= 0"),
        (lambda: retry(times=_any(1.5)), "retry", "times", "1.5", "integer >= 0"),
        (
            lambda: retry(minutes_between_retries=-2),
            "retry",
            "minutes_between_retries",
            "-2",
            "number >= 0",
        ),
        (lambda: catch(var="1bad"), "catch", "var", "'1bad'", "identifier"),
        (
            lambda: catch(print_exception=_any("yes")),
            "catch",
            "print_exception",
            "'yes'",
            "True or",
        ),
        (lambda: timeout(minutes=-1), "timeout", "minutes", "-1", "number >= 0"),
        (lambda: timeout(hours=float("inf")), "timeout", "hours", "inf", "number >= 0"),
        (lambda: resources(cpu=0), "resources", "cpu", "0", "number > 0"),
        (lambda: resources(gpu=-1), "resources", "gpu", "-1", "integer >= 0"),
        (lambda: resources(memory=0), "resources", "memory", "0", "integer >= 1"),
        (lambda: resources(memory=_any("16G")), "resources", "memory", "'16G'", "integer >= 1"),
        (lambda: resources(disk=0), "resources", "disk", "0", "integer >= 1"),
        (lambda: environment(vars=_any(["A"])), "environment", "vars", "['A']", "a dict"),
        (lambda: environment(vars={"1A": "x"}), "environment", "vars", "'1A'", "variable names"),
        (
            lambda: environment(vars={"A": [1]}),
            "environment",
            "vars['A']",
            "[1]",
            "string, number or bool",
        ),
        (lambda: project(name="My-Project"), "project", "name", "'My-Project'", "lowercase"),
    ],
)
def test_bad_arguments_name_decorator_argument_value_and_accepted(
    make: Any, deco: str, arg: str, value: str, accepted: str
) -> None:
    with pytest.raises(FlowDefinitionError) as info:
        make()
    message = str(info.value)
    assert f"@{deco}" in message
    assert repr(arg) in message
    assert value in message
    assert accepted in message


def test_timeout_needs_a_positive_total() -> None:
    with pytest.raises(FlowDefinitionError, match=r"total duration > 0.*@timeout\(minutes=30\)"):
        timeout()
    with pytest.raises(FlowDefinitionError, match="needs a duration"):
        timeout(_fn())
    assert timeout(seconds=1)(_fn()) is not None


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="keyword arguments only; got the positional"):
        retry(2)  # type: ignore[call-overload]


def test_same_decorator_twice_is_an_error() -> None:
    f = retry(step(_fn()))
    with pytest.raises(FlowDefinitionError, match=r"@retry is applied twice to step .*f"):
        retry(times=1)(f)


def test_step_decorators_refuse_classes_and_flow_decorators_refuse_functions() -> None:
    class NotAStep:
        pass

    with pytest.raises(FlowDefinitionError, match="@retry decorates step methods"):
        retry(NotAStep)
    with pytest.raises(FlowDefinitionError, match="@step decorates methods"):
        step(NotAStep)
    with pytest.raises(FlowDefinitionError, match="@conda_base decorates flow classes"):
        conda_base(_fn())
    with pytest.raises(FlowDefinitionError, match="@conda decorates step methods"):
        conda(NotAStep)


def test_project_is_a_flow_decorator_with_a_name() -> None:
    @project(name="fraud_2")
    class Base(FlowSpec):
        pass

    assert flow_decorators(Base) == [StepDecorator("project", {"name": "fraud_2"})]
    with pytest.raises(FlowDefinitionError, match="needs a name"):
        project(Base)  # type: ignore[arg-type]
    with pytest.raises(FlowDefinitionError, match="applied twice to flow"):
        project(name="again")(Base)


def test_flow_decorators_are_inherited_and_overridden() -> None:
    @project(name="base")
    @schedule(daily=True)
    class Base(FlowSpec):
        pass

    @project(name="child")
    class Child(Base):
        pass

    assert [d.name for d in flow_decorators(Base)] == ["project", "schedule"]
    names = {d.name: d.attributes for d in flow_decorators(Child)}
    assert names == {"schedule": {"daily": True}, "project": {"name": "child"}}
    # Decorating the child must not change what the base class has.
    assert flow_decorators(Base)[0].attributes == {"name": "base"}


def test_cloud_decorators_accept_anything_and_are_not_local() -> None:
    f = batch(cpu=4, queue="q")(kubernetes(step(_fn())))
    f = card(type="blank")(card(f))  # Metaflow allows several @card
    assert [(d.name, d.local) for d in step_decorators(f)] == [
        ("card", False),
        ("card", False),
        ("batch", False),
        ("kubernetes", False),
    ]
    assert get_decorator(f, "batch") == StepDecorator(
        "batch", {"cpu": 4, "queue": "q"}, local=False
    )

    @trigger(event="new_data")
    @conda_base
    class Flow(FlowSpec):
        pass

    assert [(d.name, d.local) for d in flow_decorators(Flow)] == [
        ("trigger", False),
        ("conda_base", False),
    ]


def test_step_functions_in_definition_order_with_inheritance() -> None:
    class Base(FlowSpec):
        @step
        def start(self) -> None:
            self.next(self.end)

        @step
        def middle(self) -> None:
            self.next(self.end)

        @step
        def end(self) -> None:
            pass

    class Child(Base):
        @step
        def start(self) -> None:  # overrides, keeping its place
            self.next(self.extra)

        @step
        def extra(self) -> None:
            self.next(self.end)

        middle = None  # type: ignore[assignment]  # removes the inherited step

    assert list(step_functions(Base)) == ["start", "middle", "end"]
    assert list(step_functions(Child)) == ["start", "end", "extra"]
    assert step_functions(Child)["start"] is Child.__dict__["start"]


def test_ignored_decorator_warning_lists_every_cloud_decorator_once() -> None:
    class Plain(FlowSpec):
        @retry
        @step
        def start(self) -> None:
            self.next(self.end)

        @step
        def end(self) -> None:
            pass

    assert ignored_decorator_warning(Plain) is None

    @conda_base(python="3.11")
    @project(name="p")
    class Cloudy(FlowSpec):
        @batch
        @step
        def start(self) -> None:
            self.next(self.train)

        @batch(gpu=1)
        @kubernetes
        @step
        def train(self) -> None:
            self.next(self.end)

        @step
        def end(self) -> None:
            pass

    assert ignored_decorator_warning(Cloudy) == (
        "inloop runs flows locally: @batch (steps: start, train), "
        "@kubernetes (steps: train), @conda_base (flow) are accepted and ignored."
    )

    @schedule
    class OnlyFlow(FlowSpec):
        pass

    assert ignored_decorator_warning(OnlyFlow) == (
        "inloop runs flows locally: @schedule (flow) is accepted and ignored."
    )
