"""The graph of a flow, read from its steps' source, and the checks run before a run.

:func:`build_graph` parses each step function's own source (so a flow defined
in a notebook cell works as well as one in a file) and records where each
``self.next(...)`` goes. :func:`check_graph` lists every rule the graph breaks;
each message names the step, its ``file:line``, the rule and the fix.

Example::

    graph = build_graph(MyFlow)
    for error in check_graph(graph, flow_parameters(MyFlow)):
        print(error)
    print(format_graph(graph))
"""

from __future__ import annotations

import ast
import difflib
import heapq
import inspect
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from inloop.errors import FlowDefinitionError, ParameterError
from inloop.flow.decorators import StepDecorator, step_decorators, step_functions
from inloop.flow.parameters import RESERVED_NAMES, Parameter

__all__ = ["FlowGraph", "StepNode", "build_graph", "check_graph", "format_graph"]

# The rules, worded once so every message states them the same way.
RULE_NEXT_ONCE = "a step must call self.next() exactly once, as its last statement"
RULE_END = "the end step finishes the flow and must not call self.next()"
RULE_TARGET = "self.next() takes steps of this flow, written as self.<step_name>"
RULE_FOREACH = "foreach= must be a string literal naming an artifact, e.g. foreach='items'"
RULE_FOREACH_ONE = "a foreach runs exactly one step for each item"
RULE_START_END = "every flow has exactly one step named start and one named end"
RULE_START_INPUTS = "start is the first step and receives no inputs"
RULE_ARGS = "a step takes only self, or self and inputs when it is a join"
RULE_REACH = "every step must be reachable from start"
RULE_CYCLE = "a flow must not loop: no step may lead back to itself"
RULE_JOIN_NEEDED = "a step reached from more than one step must be a join that takes inputs"
RULE_JOIN_MATCH = "a join must receive all branches of exactly one split or foreach"
RULE_JOIN_GAP = "each branch of a split or foreach needs at least one step before its join"
RULE_JOINED = "every split and foreach must be joined before end"
RULE_SOURCE = "inloop reads each step's source to find where self.next() goes"
RULE_PARAM_UNIQUE = "parameter names must be unique within a flow"
RULE_PARAM_SHADOW = "a parameter must not share its name with a step or a built-in flow attribute"
RULE_PARAM_REQUIRED = "a required parameter has no default"
RULE_PARAM_DEFAULT = "a parameter's default must convert to its type"


@dataclass
class StepNode:
    """One step of a flow and where it leads.

    ``transition`` is ``'linear'`` (one next step), ``'split'`` (several, run in
    parallel), ``'foreach'`` (one step per item of ``foreach_var``) or ``'end'``
    (no next step). ``line`` is the line of the ``def``; ``next_line`` that of
    the ``self.next(...)`` call. ``split_parents`` are the splits and foreaches
    enclosing the step, innermost last; for a join it ends with the split the
    join closes. ``matching_join`` is set on split and foreach steps.
    """

    name: str
    func: Callable[..., Any]
    transition: str
    out: tuple[str, ...]
    foreach_var: str | None
    is_join: bool
    in_steps: list[str]
    doc: str
    file: str
    line: int
    next_line: int | None
    decorators: list[StepDecorator]
    split_parents: list[str] = field(default_factory=list)
    matching_join: str | None = None
    # Rules broken inside the step itself, found while parsing; reported by check_graph.
    problems: list[FlowDefinitionError] = field(default_factory=list, repr=False, compare=False)


@dataclass
class FlowGraph:
    """The steps of a flow by name, in definition order.

    ``file`` and ``line`` locate the flow class (or its first step when the
    class's own source cannot be found, as in some notebooks).
    """

    name: str
    nodes: dict[str, StepNode]
    flow_cls: type | None = None
    file: str = "<unknown>"
    line: int = 0

    def __getitem__(self, name: str) -> StepNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(
                f"Flow {self.name!r} has no step {name!r}; its steps are: "
                f"{', '.join(self.nodes) or '(none)'}."
            ) from None

    def __iter__(self) -> Iterator[StepNode]:
        return iter(self.nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def topological(self) -> list[str]:
        """Step names so that every step comes after the steps leading to it;
        ties keep definition order. Raises FlowDefinitionError on a cycle."""
        order = {name: i for i, name in enumerate(self.nodes)}
        indegree = {name: 0 for name in self.nodes}
        for node in self:
            for target in set(node.out):
                if target in indegree:
                    indegree[target] += 1
        ready = [(order[n], n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        result: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            result.append(name)
            for target in set(self.nodes[name].out):
                if target in indegree:
                    indegree[target] -= 1
                    if indegree[target] == 0:
                        heapq.heappush(ready, (order[target], target))
        if len(result) != len(self.nodes):
            stuck = [n for n in self.nodes if n not in result]
            raise FlowDefinitionError(
                f"Flow {self.name!r} has a cycle through steps {', '.join(stuck)}; "
                f"{RULE_CYCLE}. Run check to see where."
            )
        return result

    def join_of(self, split_step: str) -> str:
        """The join step that closes the split or foreach ``split_step``."""
        node = self[split_step]
        if node.transition not in ("split", "foreach"):
            raise FlowDefinitionError(
                f"Step {split_step!r} is a {node.transition} step, not a split or foreach, "
                "so it has no join.",
                step=split_step,
                line=node.line,
            )
        if node.matching_join is None:
            raise FlowDefinitionError(
                f"Step {split_step!r} ({_loc(node.file, node.line)}) is never joined; "
                f"{RULE_JOINED}. Run check for details.",
                step=split_step,
                line=node.line,
            )
        return node.matching_join


# --------------------------------------------------------------------------- building


def _loc(file: str, line: int) -> str:
    """``file:line``, relative to the working directory when the file is under it."""
    shown = file
    if os.path.isabs(file):
        try:
            rel = os.path.relpath(file)
        except ValueError:  # another drive on Windows
            rel = file
        if not rel.startswith(".."):
            shown = rel
    return f"{shown}:{line}"


def _step_error(
    step: str, file: str, line: int, what: str, rule: str, fix: str
) -> FlowDefinitionError:
    return FlowDefinitionError(
        f"Step {step!r} ({_loc(file, line)}) {what}; {rule}. {fix}", step=step, line=line
    )


def _parse_source(func: Callable[..., Any]) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, int]:
    """The function's AST and the offset to add to its line numbers for file lines."""
    lines, start = inspect.getsourcelines(func)
    source = "".join(lines)
    try:
        tree = ast.parse(textwrap.dedent(source))
        offset = start - 1
    except SyntaxError:
        # dedent gives up when a multi-line string is indented less than the def;
        # nesting the indented source under an `if` parses it as it stands.
        tree = ast.parse("if 1:\n" + source)
        offset = start - 2
        tree.body = tree.body[0].body  # type: ignore[attr-defined]
    fdef = tree.body[0] if tree.body else None
    if not isinstance(fdef, ast.FunctionDef | ast.AsyncFunctionDef):
        raise OSError("the source is not a function definition")
    return fdef, offset


def _is_next_call(node: ast.AST, self_name: str) -> TypeGuard[ast.Call]:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "next"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == self_name
    )


def _build_node(name: str, func: Callable[..., Any]) -> StepNode:
    raw = inspect.unwrap(func)
    code = getattr(raw, "__code__", None)
    file = code.co_filename if code is not None else "<unknown>"
    first_line = code.co_firstlineno if code is not None else 0
    node = StepNode(
        name=name,
        func=func,
        transition="end",
        out=(),
        foreach_var=None,
        is_join=False,
        in_steps=[],
        doc=inspect.cleandoc(func.__doc__) if func.__doc__ else "",
        file=file,
        line=first_line,
        next_line=None,
        decorators=step_decorators(func),
    )

    def problem(line: int, what: str, rule: str, fix: str) -> None:
        node.problems.append(_step_error(name, file, line, what, rule, fix))

    try:
        fdef, offset = _parse_source(raw)
    except (OSError, TypeError, SyntaxError) as exc:
        problem(
            first_line,
            f"has no readable source ({exc})",
            RULE_SOURCE,
            "Define the flow in a .py file or a notebook cell, not through exec() of a "
            "string without a file.",
        )
        return node
    node.line = fdef.lineno + offset

    positional = [a.arg for a in (*fdef.args.posonlyargs, *fdef.args.args)]
    extra = len(positional) - 1
    if extra > 1 or fdef.args.vararg or fdef.args.kwonlyargs or extra < 0:
        problem(
            node.line,
            f"takes the arguments ({', '.join(positional)})",
            RULE_ARGS,
            f"Write 'def {name}(self)' or, for a join, 'def {name}(self, inputs)'.",
        )
    node.is_join = extra == 1
    self_name = positional[0] if positional else "self"

    calls = sorted(
        (c for c in ast.walk(fdef) if _is_next_call(c, self_name)),
        key=lambda c: (c.lineno, c.col_offset),
    )
    if name == "end":
        if calls:
            node.next_line = calls[0].lineno + offset
            problem(
                node.next_line,
                "calls self.next()",
                RULE_END,
                "Remove the self.next() call from end.",
            )
        return node
    if not calls:
        problem(
            node.line,
            "never calls self.next()",
            RULE_NEXT_ONCE,
            f"End the step with self.next(self.<next_step>), or self.next(self.end) if "
            f"{name!r} is the last step before end.",
        )
        return node
    if len(calls) > 1:
        lines = ", ".join(str(c.lineno + offset) for c in calls)
        problem(
            calls[1].lineno + offset,
            f"calls self.next() {len(calls)} times (lines {lines})",
            RULE_NEXT_ONCE,
            "Keep one call at the end of the step; to run several steps use "
            "self.next(self.a, self.b), and to choose at run time put the choice in data.",
        )
    call = calls[-1]
    node.next_line = call.lineno + offset
    last = fdef.body[-1]
    if len(calls) == 1 and not (isinstance(last, ast.Expr) and last.value is call):
        problem(
            node.next_line,
            "calls self.next() before its last statement or inside a block",
            RULE_NEXT_ONCE,
            "Move the self.next(...) call to the end of the step, outside any if, for, "
            "with or try block.",
        )

    targets: list[str] = []
    for arg in call.args:
        if (
            isinstance(arg, ast.Attribute)
            and isinstance(arg.value, ast.Name)
            and arg.value.id == self_name
        ):
            targets.append(arg.attr)
        else:
            problem(
                node.next_line,
                f"passes {ast.unparse(arg)!r} to self.next()",
                RULE_TARGET,
                "Name the step directly, e.g. self.next(self.train); the graph must be "
                "readable without running the flow.",
            )
    if not call.args:
        problem(
            node.next_line,
            "calls self.next() without a step",
            RULE_TARGET,
            "Pass the next step, e.g. self.next(self.end).",
        )
    for target in sorted({t for t in targets if targets.count(t) > 1}):
        problem(
            node.next_line,
            f"lists step {target!r} twice in self.next()",
            "each branch of a split goes to a different step",
            f"Remove the repeated self.{target}.",
        )
    for keyword in call.keywords:
        if keyword.arg == "foreach":
            value = keyword.value
            if (
                isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value.isidentifier()
            ):
                node.foreach_var = value.value
            else:
                problem(
                    node.next_line,
                    f"passes foreach={ast.unparse(value)}",
                    RULE_FOREACH,
                    "Assign the items to an artifact first (self.items = [...]) and pass its "
                    "name in quotes: foreach='items'.",
                )
                node.foreach_var = ""  # still a foreach, with an unusable variable
        else:
            shown = f"{keyword.arg}=" if keyword.arg else "**"
            problem(
                node.next_line,
                f"passes {shown}... to self.next()",
                "self.next() accepts steps and foreach= only",
                f"Remove {shown}...",
            )
    node.out = tuple(dict.fromkeys(targets))
    if node.foreach_var is not None:
        node.transition = "foreach"
        if len(call.args) != 1:
            problem(
                node.next_line,
                f"starts a foreach over {len(call.args)} steps",
                RULE_FOREACH_ONE,
                "Pass exactly one step: self.next(self.process, foreach='items').",
            )
    elif len(node.out) > 1:
        node.transition = "split"
    elif node.out:
        node.transition = "linear"
    return node


def _class_location(flow_cls: type, nodes: dict[str, StepNode]) -> tuple[str, int]:
    own = [n for n in nodes.values() if n.name in vars(flow_cls)] or list(nodes.values())
    file = own[0].file if own else "<unknown>"
    line = min((n.line for n in own if n.file == file), default=0)
    try:
        if inspect.getsourcefile(flow_cls) == file or not own:
            _, line = inspect.getsourcelines(flow_cls)
            file = inspect.getsourcefile(flow_cls) or file
    except (OSError, TypeError):
        pass  # classes made by exec() in a notebook: fall back to their first step
    return file, line


def build_graph(flow_cls: type) -> FlowGraph:
    """Read the graph of ``flow_cls`` from the source of its ``@step`` methods.

    Building never fails on a broken flow; :func:`check_graph` reports the problems.
    """
    nodes = {name: _build_node(name, func) for name, func in step_functions(flow_cls).items()}
    for node in nodes.values():
        for target in node.out:
            if target in nodes:
                nodes[target].in_steps.append(node.name)
    file, line = _class_location(flow_cls, nodes)
    graph = FlowGraph(name=flow_cls.__name__, nodes=nodes, flow_cls=flow_cls, file=file, line=line)
    _analyze(graph)
    return graph


# --------------------------------------------------------------------------- checking


def _flow_error(graph: FlowGraph, what: str, rule: str, fix: str) -> FlowDefinitionError:
    return FlowDefinitionError(
        f"Flow {graph.name!r} ({_loc(graph.file, graph.line)}) {what}; {rule}. {fix}",
        line=graph.line,
    )


def _undecorated(graph: FlowGraph, name: str) -> bool:
    """Whether the flow class has a method ``name`` that lacks @step."""
    value = getattr(graph.flow_cls, name, None) if graph.flow_cls is not None else None
    return callable(value) and not getattr(value, "is_step", False)


def _check_targets(graph: FlowGraph) -> list[FlowDefinitionError]:
    errors = []
    for node in graph:
        for target in node.out:
            if target in graph.nodes:
                continue
            line = node.next_line or node.line
            if _undecorated(graph, target):
                fix = f"Add @step above 'def {target}'."
                what = f"goes to {target!r}, a method without @step"
            else:
                close = difflib.get_close_matches(target, list(graph.nodes), n=1)
                fix = (
                    f"Did you mean self.{close[0]}?"
                    if close
                    else f"Define a step {target!r} or use one of: {', '.join(graph.nodes)}."
                )
                what = f"goes to {target!r}, which is not a step of the flow"
            errors.append(_step_error(node.name, node.file, line, what, RULE_TARGET, fix))
    return errors


def _find_cycles(graph: FlowGraph) -> list[FlowDefinitionError]:
    errors: list[FlowDefinitionError] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        node = graph.nodes[name]
        for target in node.out:
            if target not in graph.nodes:
                continue
            if state.get(target) == 1:
                loop = [*path[path.index(target) :], target]
                errors.append(
                    _step_error(
                        name,
                        node.file,
                        node.next_line or node.line,
                        f"goes back to {target!r}, closing the loop {' -> '.join(loop)}",
                        RULE_CYCLE,
                        f"Send {name!r} forward to a later step; to repeat work, use a "
                        "foreach or a loop inside one step.",
                    )
                )
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in graph.nodes:
        if name not in state:
            visit(name)
    return errors


def _reachable(graph: FlowGraph) -> list[str]:
    seen: dict[str, None] = {}
    stack = ["start"]
    while stack:
        name = stack.pop()
        if name in seen or name not in graph.nodes:
            continue
        seen[name] = None
        stack.extend(reversed(graph.nodes[name].out))
    return list(seen)


def _out_stack(node: StepNode) -> list[str]:
    """The splits enclosing the steps that ``node`` leads to."""
    if node.transition in ("split", "foreach"):
        return [*node.split_parents, node.name]
    if node.is_join:
        return node.split_parents[:-1]
    return list(node.split_parents)


def _check_splits(graph: FlowGraph, reachable: list[str]) -> list[FlowDefinitionError]:
    """Fill split_parents/matching_join along the (acyclic) graph and check joins."""
    errors: list[FlowDefinitionError] = []
    live = set(reachable)
    for name in graph.topological():
        if name not in live:
            continue
        node = graph.nodes[name]
        parents = [graph.nodes[p] for p in node.in_steps if p in live]
        if name == "start" or not parents:
            continue
        incoming = [_out_stack(p) for p in parents]
        if not node.is_join:
            if len(parents) > 1:
                names = " and ".join(repr(p.name) for p in parents)
                fix = f"Make it a join: 'def {name}(self, inputs)'."
                if any(stack != incoming[0] for stack in incoming):
                    # Branches from different depths meet: a join would not help; point at
                    # the branch that skips its split's join.
                    for parent, stack in zip(parents, incoming, strict=True):
                        join = graph.nodes[stack[-1]].matching_join if stack else None
                        if join is not None and join != name:
                            fix = (
                                f"Send {parent.name!r} to {join!r}, the join of "
                                f"{stack[-1]!r}, so that all its branches meet there."
                            )
                            break
                    else:
                        fix = "Join the branches of each split before they meet here."
                errors.append(
                    _step_error(
                        name,
                        node.file,
                        node.line,
                        f"is reached from {names} but takes no inputs",
                        RULE_JOIN_NEEDED,
                        fix,
                    )
                )
            node.split_parents = incoming[0]
            continue
        for parent in parents:
            if parent.transition in ("split", "foreach"):
                errors.append(
                    _step_error(
                        name,
                        node.file,
                        node.line,
                        f"is a join that {parent.transition} step {parent.name!r} goes to directly",
                        RULE_JOIN_GAP,
                        f"Add a step between {parent.name!r} and {name!r}.",
                    )
                )
        if not incoming[0] or any(stack != incoming[0] for stack in incoming):
            where = ", ".join(
                f"{p.name!r} (inside {', '.join(map(repr, s)) if s else 'no split'})"
                for p, s in zip(parents, incoming, strict=True)
            )
            if not any(incoming):
                what, fix = (
                    f"takes inputs but is not the join of any split or foreach (it follows "
                    f"{where})",
                    f"Remove the inputs argument, or split before it with "
                    f"self.next(self.a, self.b) and join both branches in {name!r}.",
                )
            else:
                what, fix = (
                    f"joins branches from different splits: {where}",
                    "Join the inner split first in its own join step, then join the outer one.",
                )
            errors.append(_step_error(name, node.file, node.line, what, RULE_JOIN_MATCH, fix))
            node.split_parents = max(incoming, key=len)
            continue
        node.split_parents = incoming[0]
        split = graph.nodes[incoming[0][-1]]
        if split.matching_join is not None and split.matching_join != name:
            errors.append(
                _step_error(
                    name,
                    node.file,
                    node.line,
                    f"joins branches of {split.name!r}, which {split.matching_join!r} also joins",
                    RULE_JOIN_MATCH,
                    f"Send every branch of {split.name!r} to one join step.",
                )
            )
        else:
            split.matching_join = name
    end = graph.nodes.get("end")
    if end is not None and "end" in live:
        for split_name in reversed(_out_stack(end)):
            split = graph.nodes[split_name]
            if split.matching_join is not None:
                continue
            errors.append(
                _step_error(
                    split_name,
                    split.file,
                    split.next_line or split.line,
                    f"starts a {split.transition} that is never joined: its branches reach "
                    "end without a join step",
                    RULE_JOINED,
                    f"Send all branches of {split_name!r} to one step that takes inputs, "
                    "e.g. 'def join(self, inputs)', and go on to end from there.",
                )
            )
    return errors


def _analyze(graph: FlowGraph) -> list[FlowDefinitionError]:
    """Every structural error of the graph; fills split_parents and matching_join."""
    for node in graph:
        node.split_parents = []
        node.matching_join = None
    errors: list[FlowDefinitionError] = []
    for required in ("start", "end"):
        if required not in graph.nodes:
            fix = (
                f"Add @step above 'def {required}'."
                if _undecorated(graph, required)
                else f"Add a step: @step def {required}(self): ..."
            )
            errors.append(
                _flow_error(graph, f"has no step named {required!r}", RULE_START_END, fix)
            )
    errors.extend(_check_targets(graph))
    start = graph.nodes.get("start")
    if start is not None and start.is_join:
        errors.append(
            _step_error(
                "start",
                start.file,
                start.line,
                "takes inputs",
                RULE_START_INPUTS,
                "Write 'def start(self)'.",
            )
        )
    cycles = _find_cycles(graph)
    errors.extend(cycles)
    if start is None:
        return errors
    reachable = _reachable(graph)
    for node in graph:
        if node.name not in reachable:
            errors.append(
                _step_error(
                    node.name,
                    node.file,
                    node.line,
                    "is never reached from start",
                    RULE_REACH,
                    f"Call self.next(self.{node.name}) from the step that should run before "
                    "it, or delete the step.",
                )
            )
    if not cycles:
        errors.extend(_check_splits(graph, reachable))
    return errors


def _check_parameters(
    graph: FlowGraph, parameters: Mapping[str, Parameter]
) -> list[FlowDefinitionError]:
    errors: list[FlowDefinitionError] = []
    seen: dict[str, str] = {}

    def add(param: Parameter, what: str, rule: str, fix: str) -> None:
        errors.append(
            FlowDefinitionError(
                f"Parameter {param.name!r} ({_loc(param.file, param.line)}) {what}; {rule}. {fix}",
                line=param.line,
            )
        )

    for attr, param in parameters.items():
        key = param.name.replace("-", "_")
        if key in seen:
            add(
                param,
                f"(attribute {attr!r}) has the same name as parameter attribute {seen[key]!r}",
                RULE_PARAM_UNIQUE,
                "Rename one of them.",
            )
        seen.setdefault(key, attr)
        for candidate in dict.fromkeys((attr, key)):
            if candidate in RESERVED_NAMES:
                add(
                    param,
                    f"uses the name {candidate!r}, which every flow already has",
                    RULE_PARAM_SHADOW,
                    f"Rename it (built-in names: {', '.join(sorted(RESERVED_NAMES))}).",
                )
            elif candidate in graph.nodes:
                add(
                    param,
                    f"uses the name {candidate!r}, which is also a step",
                    RULE_PARAM_SHADOW,
                    "Rename the parameter or the step.",
                )
        if param.required and param.default is not None:
            add(
                param,
                f"is required but has default={param.default!r}",
                RULE_PARAM_REQUIRED,
                "Drop required=True to keep the default, or drop the default.",
            )
        try:
            param.validate_default()
        except ParameterError as exc:
            add(
                param,
                f"has a default that does not convert ({exc})",
                RULE_PARAM_DEFAULT,
                "Change the default, or pass the matching type=.",
            )
    return errors


def check_graph(
    graph: FlowGraph, parameters: Mapping[str, Parameter] | None = None
) -> list[FlowDefinitionError]:
    """Every rule the flow breaks, as errors naming step, ``file:line``, rule and fix.

    ``parameters`` (attribute name -> Parameter, see ``flow_parameters``) are
    checked too when given. An empty list means the flow may run.
    """
    errors: list[FlowDefinitionError] = []
    for node in graph:
        errors.extend(node.problems)
    errors.extend(_analyze(graph))
    if parameters:
        errors.extend(_check_parameters(graph, parameters))
    return errors


# --------------------------------------------------------------------------- showing


def format_graph(graph: FlowGraph) -> str:
    """A readable outline of the flow: each step, its docstring and where it goes."""
    try:
        order = graph.topological()
    except FlowDefinitionError:
        order = list(graph.nodes)
    blocks = []
    for name in order:
        node = graph.nodes[name]
        notes = []
        if node.is_join:
            notes.append("(join)")
        if node.transition == "foreach":
            notes.append(f"(foreach over {node.foreach_var})")
        lines = [" ".join([f"Step {name}", *notes])]
        lines.extend(f"    {line}" if line else "" for line in node.doc.splitlines())
        if node.out:
            lines.append(f"    => {', '.join(node.out)}")
        blocks.append("\n".join(lines))
    return f"Flow {graph.name}\n\n" + "\n\n".join(blocks) + "\n"
