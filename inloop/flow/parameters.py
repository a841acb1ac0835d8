"""Flow parameters: values fixed when a run starts, read in steps as ``self.<name>``.

Declare them as class attributes of the flow::

    class TrainFlow(FlowSpec):
        alpha = Parameter("alpha", default=0.01, help="learning rate")
        config = Parameter("config", type=JSONType, default='{"depth": 3}')
        labels = IncludeFile("labels", default="labels.csv")

The type is taken from ``type=`` or inferred from the default. On the command
line ``--alpha 0.1`` (or ``--learning-rate`` for a name with underscores)
sets a value; :func:`resolve_parameters` turns given values into typed ones.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload

from inloop.errors import FlowDefinitionError, FlowError, ParameterError

__all__ = [
    "RESERVED_NAMES",
    "IncludeFile",
    "JSONType",
    "Parameter",
    "flow_parameters",
    "resolve_parameters",
]

#: Names a parameter may not take: they are attributes every flow already has.
RESERVED_NAMES = frozenset({"name", "input", "index", "next", "foreach_stack", "merge_artifacts"})

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


class JSONType:
    """Marker type for a parameter whose value is JSON: ``type=JSONType``.

    Strings (e.g. from the command line) are parsed with ``json.loads``; Python
    values must be JSON-serializable and are passed through.
    """


def _type_label(tp: Any) -> str:
    if tp is bool:
        return "a bool (true/false, yes/no, 1/0)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    return "JSON"


def _is_json_type(tp: Any) -> bool:
    return tp is JSONType or isinstance(tp, JSONType)


def _definition_site() -> tuple[str, int]:
    """File and line of the class body line that created the parameter."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


class Parameter:
    """A value of the flow given when a run starts and read-only in its steps.

    ``name`` is what the command line uses (``--name``); the class attribute it
    is assigned to is how steps read it. ``default`` may be a callable taking no
    arguments, called when the run starts. ``separator`` turns a string such as
    ``"a,b,c"`` into a list whose items have the parameter's type.
    """

    def __init__(
        self,
        name: str,
        default: Any = None,
        type: Any = None,
        help: str | None = None,
        required: bool = False,
        show_default: bool = True,
        separator: str | None = None,
    ) -> None:
        self.file, self.line = _definition_site()
        if not isinstance(name, str) or not _NAME.match(name):
            raise FlowDefinitionError(
                f"Parameter name {name!r} ({self.file}:{self.line}) is not valid; use letters, "
                "digits, '-' and '_', starting with a letter, e.g. Parameter('alpha').",
                line=self.line,
            )
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise FlowDefinitionError(
                f"Parameter {name!r} ({self.file}:{self.line}) has separator={separator!r}; "
                "it must be a non-empty string such as ','.",
                line=self.line,
            )
        self.name = name
        self.default = default
        self.help = help
        self.required = bool(required)
        self.show_default = show_default
        self.separator = separator
        #: The class attribute this parameter is assigned to (set by ``__set_name__``).
        self.attr_name: str | None = None
        self.type = self._resolve_type(type, default)

    def _resolve_type(self, tp: Any, default: Any) -> Any:
        if tp is not None:
            if tp in (str, int, float, bool) or _is_json_type(tp):
                return JSONType if _is_json_type(tp) else tp
            raise FlowDefinitionError(
                f"Parameter {self.name!r} ({self.file}:{self.line}) has type={tp!r}; "
                "accepted types are str, int, float, bool and JSONType.",
                line=self.line,
            )
        sample = default
        if self.separator is not None and isinstance(default, list | tuple):
            sample = default[0] if default else None
        if sample is None or callable(sample):
            return str
        for candidate in (bool, int, float, str):  # bool first: it is an int subclass
            if isinstance(sample, candidate):
                return candidate
        if isinstance(sample, dict | list):
            return JSONType
        raise FlowDefinitionError(
            f"Parameter {self.name!r} ({self.file}:{self.line}) has a default of type "
            f"{type(sample).__name__}; inloop infers the type from a str, int, float, bool, "
            "dict or list default. Pass type=... explicitly or change the default.",
            line=self.line,
        )

    # ------------------------------------------------------------------ descriptor

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr_name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Parameter: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> Any: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._get_parameter_value(self.attr_name or self.name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: Any) -> None:
        attr = self.attr_name or self.name
        raise FlowError(
            f"Parameter {attr!r} is read-only: its value is fixed when the run starts. "
            f"Store a changed copy under another name, e.g. self.{attr}_used = ..."
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, default={self.default!r}, "
            f"type={getattr(self.type, '__name__', self.type)})"
        )

    # ------------------------------------------------------------------ values

    def _fail(self, raw: object, expected: str, hint: str = "") -> ParameterError:
        shown = repr(raw)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        return ParameterError(
            f"Parameter {self.name!r} expects {expected}; got {shown} ({type(raw).__name__}). "
            + (hint or f"Pass {expected} instead.")
        )

    def convert(self, raw: Any) -> Any:
        """Turn a command-line string or a Python value into the parameter's type.

        None stays None. With a separator a string is split into a list and a
        list or tuple is converted item by item.
        """
        if raw is None:
            return None
        if self.separator is not None:
            if isinstance(raw, str):
                items: list[Any] = raw.split(self.separator) if raw else []
            elif isinstance(raw, list | tuple):
                items = list(raw)
            else:
                raise self._fail(
                    raw,
                    f"a string of items separated by {self.separator!r} or a list",
                )
            return [self._convert_one(item) for item in items]
        return self._convert_one(raw)

    def _convert_one(self, raw: Any) -> Any:
        tp = self.type
        if tp is str:
            if isinstance(raw, str):
                return raw
            if isinstance(raw, int | float | bool):
                return str(raw)
            raise self._fail(raw, _type_label(tp))
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int) and raw in (0, 1):
                return bool(raw)
            if isinstance(raw, str):
                word = raw.strip().lower()
                if word in _TRUE:
                    return True
                if word in _FALSE:
                    return False
            raise self._fail(raw, _type_label(tp))
        if tp is int:
            if isinstance(raw, bool):
                raise self._fail(raw, _type_label(tp))
            if isinstance(raw, int):
                return raw
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if isinstance(raw, str):
                try:
                    return int(raw.strip())
                except ValueError:
                    pass
            raise self._fail(raw, _type_label(tp), "Write a whole number such as 10.")
        if tp is float:
            if isinstance(raw, bool):
                raise self._fail(raw, _type_label(tp))
            if isinstance(raw, int | float):
                return float(raw)
            if isinstance(raw, str):
                try:
                    return float(raw.strip())
                except ValueError:
                    pass
            raise self._fail(raw, _type_label(tp), "Write a number such as 0.5.")
        # JSONType
        if isinstance(raw, str | bytes | bytearray):
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise self._fail(
                    raw, "JSON", f"It does not parse ({exc}); quote it, e.g. '{{\"k\": 1}}'."
                ) from None
        try:
            # Round trip: proves the value is JSON and hands the run its own copy.
            return json.loads(json.dumps(raw))
        except (TypeError, ValueError):
            raise self._fail(raw, "a JSON-serializable value or a JSON string") from None

    def default_value(self) -> Any:
        """The converted default, calling it first when it is a callable."""
        default = self.default() if callable(self.default) else self.default
        return self.convert(default)

    def validate_default(self) -> None:
        """Raise ParameterError when the default cannot be converted to the type.

        Callable defaults are not called here (they run when a run starts).
        """
        if self.default is None or callable(self.default):
            return
        self.convert(self.default)


class IncludeFile(Parameter):
    """A parameter whose value is a path; the run sees the file's contents.

    Text files are read with ``encoding`` (``is_text=True``), others as bytes.
    """

    def __init__(
        self,
        name: str,
        default: str | os.PathLike[str] | None = None,
        is_text: bool = True,
        encoding: str = "utf-8",
        help: str | None = None,
        required: bool = False,
    ) -> None:
        super().__init__(name, default=None, type=str, help=help, required=required)
        self.default = default
        self.is_text = is_text
        self.encoding = encoding

    def convert(self, raw: Any) -> Any:
        if raw is None:
            return None
        if not isinstance(raw, str | os.PathLike):
            raise self._fail(raw, "a file path")
        path = Path(raw).expanduser()
        try:
            if self.is_text:
                return path.read_text(encoding=self.encoding)
            return path.read_bytes()
        except FileNotFoundError:
            raise ParameterError(
                f"Parameter {self.name!r} names the file {str(path)!r}, which does not exist "
                f"(looked in {os.getcwd()!r} for relative paths). Pass an existing file, "
                f"e.g. --{self.name} data/file.csv."
            ) from None
        except IsADirectoryError:
            raise ParameterError(
                f"Parameter {self.name!r} names {str(path)!r}, which is a directory; pass a file."
            ) from None
        except UnicodeDecodeError as exc:
            raise ParameterError(
                f"Parameter {self.name!r}: file {str(path)!r} is not valid {self.encoding} "
                f"text ({exc.reason}). Pass encoding=... or is_text=False to read bytes."
            ) from None
        except OSError as exc:
            raise ParameterError(
                f"Parameter {self.name!r}: cannot read file {str(path)!r} ({exc.strerror})."
            ) from None

    def validate_default(self) -> None:
        # The file is read when the run starts; here only the default's kind is checked.
        if self.default is None or callable(self.default):
            return
        if not isinstance(self.default, str | os.PathLike):
            raise self._fail(self.default, "a file path as its default")


def flow_parameters(flow_cls: type) -> dict[str, Parameter]:
    """The parameters of a flow class by attribute name, in definition order,
    including those inherited from base classes."""
    found: dict[str, Parameter] = {}
    for klass in reversed(flow_cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, Parameter):
                found[attr] = value
            elif attr in found:
                del found[attr]
    return found


def _key(name: str) -> str:
    return name.replace("-", "_")


def resolve_parameters(flow_cls: type, given: Mapping[str, object]) -> dict[str, object]:
    """Typed values of all parameters of ``flow_cls`` by attribute name.

    Keys of ``given`` may be attribute names or parameter names, with dashes or
    underscores. Missing parameters take their default (callables are called);
    unknown names and missing required parameters raise ParameterError.
    """
    params = flow_parameters(flow_cls)
    lookup: dict[str, str] = {}
    for attr, param in params.items():
        lookup[_key(attr)] = attr
        lookup.setdefault(_key(param.name), attr)
    chosen: dict[str, tuple[str, object]] = {}
    for key, value in given.items():
        attr_or_none = lookup.get(_key(key))
        if attr_or_none is None:
            valid = ", ".join(sorted(p.name for p in params.values())) or "(none)"
            raise ParameterError(
                f"Flow {flow_cls.__name__!r} has no parameter {key!r}; its parameters are: "
                f"{valid}. Check the spelling."
            )
        if attr_or_none in chosen:
            raise ParameterError(
                f"Parameter {params[attr_or_none].name!r} was given twice, as "
                f"{chosen[attr_or_none][0]!r} and {key!r}; give it once."
            )
        chosen[attr_or_none] = (key, value)
    values: dict[str, object] = {}
    for attr, param in params.items():
        if attr in chosen:
            values[attr] = param.convert(chosen[attr][1])
        elif param.required:
            raise ParameterError(
                f"Parameter {param.name!r} of flow {flow_cls.__name__!r} is required; "
                f"pass it, e.g. --{param.name} VALUE."
            )
        else:
            values[attr] = param.default_value()
    return values
