"""Tests for inloop.flow.parameters: types, conversion, the descriptor and resolution."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from inloop.errors import FlowDefinitionError, FlowError, ParameterError
from inloop.flow.parameters import (
    IncludeFile,
    JSONType,
    Parameter,
    flow_parameters,
    resolve_parameters,
)
from inloop.flow.spec import FlowSpec


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, str),
        ({"default": "x"}, str),
        ({"default": 3}, int),
        ({"default": 0.5}, float),
        ({"default": True}, bool),
        ({"default": {"a": 1}}, JSONType),
        ({"default": [1, 2]}, JSONType),
        ({"default": lambda: 5}, str),
        ({"default": lambda: 5, "type": int}, int),
        ({"default": "3", "type": int}, int),
        ({"type": JSONType}, JSONType),
        ({"type": JSONType()}, JSONType),
        ({"default": [1, 2], "separator": ","}, int),
        ({"default": "a,b", "separator": ","}, str),
    ],
)
def test_type_is_given_or_inferred_from_the_default(kwargs: dict[str, Any], expected: Any) -> None:
    assert Parameter("p", **kwargs).type is expected


def test_bad_definitions_raise_at_class_definition() -> None:
    with pytest.raises(FlowDefinitionError, match=r"type=<class 'list'>.*str, int, float, bool"):
        Parameter("p", type=list)
    with pytest.raises(FlowDefinitionError, match=r"default of type set.*Pass type="):
        Parameter("p", default={1, 2})
    with pytest.raises(FlowDefinitionError, match=r"'--bad' .* not valid"):
        Parameter("--bad")
    with pytest.raises(FlowDefinitionError, match="separator=''"):
        Parameter("p", separator="")


def test_definition_site_is_the_class_body_line() -> None:
    class Flow(FlowSpec):
        alpha = Parameter("alpha", default=1)
        data = IncludeFile("data")

    start = inspect.getsourcelines(Flow)[1]
    assert Flow.alpha.file == __file__
    assert Flow.alpha.line == start + 1
    assert Flow.data.line == start + 2
    assert Flow.alpha.attr_name == "alpha"


@pytest.mark.parametrize(
    ("kwargs", "raw", "value"),
    [
        ({"default": 1}, "42", 42),
        ({"default": 1}, 7.0, 7),
        ({"default": 1.0}, "2.5", 2.5),
        ({"default": 1.0}, 3, 3.0),
        ({"default": "s"}, 5, "5"),
        ({"default": False}, "Yes", True),
        ({"default": False}, "off", False),
        ({"default": False}, " TRUE ", True),
        ({"default": False}, 0, False),
        ({"type": JSONType}, '{"a": [1, 2]}', {"a": [1, 2]}),
        ({"type": JSONType}, {"a": (1, 2)}, {"a": [1, 2]}),
        ({"default": 1, "separator": ","}, "1,2,3", [1, 2, 3]),
        ({"default": "a", "separator": ";"}, ["x", "y"], ["x", "y"]),
        ({"default": "a", "separator": ","}, "", []),
        ({"default": 1}, None, None),
    ],
)
def test_convert(kwargs: dict[str, Any], raw: Any, value: Any) -> None:
    assert Parameter("p", **kwargs).convert(raw) == value


@pytest.mark.parametrize(
    ("kwargs", "raw", "expected"),
    [
        ({"default": 1}, "ten", "an integer"),
        ({"default": 1}, 2.5, "an integer"),
        ({"default": 1}, True, "an integer"),
        ({"default": 1.0}, "abc", "a number"),
        ({"default": False}, "maybe", "a bool"),
        ({"default": False}, 2, "a bool"),
        ({"default": "s"}, [1], "a string"),
        ({"type": JSONType}, "{bad", "JSON"),
        ({"type": JSONType}, {1, 2}, "JSON-serializable"),
        ({"default": 1, "separator": ","}, 5, "separated by ','"),
    ],
)
def test_convert_errors_name_parameter_value_and_type(
    kwargs: dict[str, Any], raw: Any, expected: str
) -> None:
    with pytest.raises(ParameterError) as info:
        Parameter("depth", **kwargs).convert(raw)
    message = str(info.value)
    assert "'depth'" in message
    assert repr(raw)[:20] in message
    assert expected in message


def test_descriptor_reads_through_the_flow_and_is_read_only() -> None:
    class Flow(FlowSpec):
        learning_rate = Parameter("learning-rate", default=0.1)

        def _get_parameter_value(self, attr: str) -> Any:
            return f"value of {attr}"

    assert isinstance(Flow.learning_rate, Parameter)
    flow = Flow.__new__(Flow)
    assert flow.learning_rate == "value of learning_rate"
    with pytest.raises(FlowError, match="'learning_rate' is read-only"):
        flow.learning_rate = 0.2


def test_include_file_reads_text_or_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("héllo", encoding="utf-8")
    assert IncludeFile("data").convert(str(path)) == "héllo"
    assert IncludeFile("data", is_text=False).convert(path) == "héllo".encode()
    assert IncludeFile("data", encoding="latin-1").convert(path) == "héllo".encode().decode(
        "latin-1"
    )
    assert IncludeFile("data").convert(None) is None


def test_include_file_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(ParameterError, match=r"'data' names the file .*nope\.csv.*does not exist"):
        IncludeFile("data").convert(str(missing))
    with pytest.raises(ParameterError, match="is a directory"):
        IncludeFile("data").convert(str(tmp_path))
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ParameterError, match=r"not valid utf-8 text.*is_text=False"):
        IncludeFile("data").convert(binary)
    with pytest.raises(ParameterError, match="a file path"):
        IncludeFile("data").convert(3)


def test_validate_default() -> None:
    Parameter("p", default=3).validate_default()
    Parameter("p", default=lambda: "not called").validate_default()
    with pytest.raises(ParameterError, match="expects an integer; got 'x'"):
        Parameter("p", default="x", type=int).validate_default()
    IncludeFile("f", default="missing/at/check/time.csv").validate_default()
    with pytest.raises(ParameterError, match="a file path as its default"):
        IncludeFile("f", default=3).validate_default()  # type: ignore[arg-type]


class BaseFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5)
    dropped = Parameter("dropped", default=1)
    data = Parameter("data-set", required=True)


class ChildFlow(BaseFlow):
    alpha = Parameter("alpha", default=0.25)  # overrides, keeping its place
    dropped = None
    seeds = Parameter("seeds", default=lambda: [1, 2], type=JSONType)


def test_flow_parameters_in_definition_order_with_inheritance() -> None:
    assert list(flow_parameters(BaseFlow)) == ["alpha", "dropped", "data"]
    params = flow_parameters(ChildFlow)
    assert list(params) == ["alpha", "data", "seeds"]
    assert params["alpha"].default == 0.25


def test_resolve_parameters_applies_defaults_and_converts() -> None:
    values = resolve_parameters(ChildFlow, {"data-set": "mnist", "alpha": "0.75"})
    assert values == {"alpha": 0.75, "data": "mnist", "seeds": [1, 2]}
    # Attribute names and underscores for dashes work too.
    assert resolve_parameters(ChildFlow, {"data": "a"})["data"] == "a"
    assert resolve_parameters(ChildFlow, {"data_set": "b"})["data"] == "b"


def test_resolve_parameters_errors() -> None:
    with pytest.raises(ParameterError, match=r"no parameter 'alpah'.*alpha, data-set, seeds"):
        resolve_parameters(ChildFlow, {"alpah": 1, "data": "x"})
    with pytest.raises(ParameterError, match=r"'data-set' of flow 'ChildFlow' is required.*--data"):
        resolve_parameters(ChildFlow, {})
    with pytest.raises(ParameterError, match="given twice"):
        resolve_parameters(ChildFlow, {"data": "x", "data-set": "y"})
    with pytest.raises(ParameterError, match="'alpha' expects a number"):
        resolve_parameters(ChildFlow, {"data": "x", "alpha": "fast"})
