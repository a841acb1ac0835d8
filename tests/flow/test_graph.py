"""Tests for inloop.flow.graph: building graphs from source and one test per check rule.

Most flows here are compiled from source strings registered in ``linecache``,
the way IPython runs a notebook cell, so line numbers are exact and the
notebook path is exercised everywhere. A marker comment ``# <-name`` picks the
line an error should point at.
"""

from __future__ import annotations

import inspect
import itertools
import linecache
import textwrap
from typing import Any

import pytest

from inloop.errors import FlowDefinitionError
from inloop.flow.decorators import retry, step
from inloop.flow.graph import FlowGraph, build_graph, check_graph, format_graph
from inloop.flow.parameters import flow_parameters
from inloop.flow.spec import FlowSpec

HEADER = """\
from inloop.flow.spec import FlowSpec
from inloop.flow.decorators import step, retry
from inloop.flow.parameters import Parameter
"""
_cells = itertools.count(1)


class Cell:
    """A flow compiled from source like a notebook cell, with its file name and lines."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, body: str, filename: str | None = None):
        self.source = HEADER + textwrap.dedent(body)
        self.filename = filename or f"<ipython-input-{next(_cells)}-0a1b2c>"
        lines = self.source.splitlines(keepends=True)
        # What IPython does: keep the cell's text in linecache under a made-up name.
        monkeypatch.setitem(
            linecache.cache, self.filename, (len(self.source), None, lines, self.filename)
        )
        namespace: dict[str, Any] = {"__name__": "__notebook_cell__"}
        exec(compile(self.source, self.filename, "exec"), namespace)
        flows = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, FlowSpec)]
        self.flow: type = flows[-1]

    def line(self, marker: str) -> int:
        for number, text in enumerate(self.source.splitlines(), start=1):
            if text.rstrip().endswith(f"# <-{marker}"):
                return number
        raise AssertionError(f"no marker {marker!r}")

    def graph(self) -> FlowGraph:
        return build_graph(self.flow)

    def errors(self) -> list[FlowDefinitionError]:
        return check_graph(self.graph(), flow_parameters(self.flow))


@pytest.fixture
def cell(monkeypatch: pytest.MonkeyPatch) -> Any:
    return lambda body, filename=None: Cell(monkeypatch, body, filename)


def only_error(
    errors: list[FlowDefinitionError], *, name: str, where: str, rule: str, step: str | None
) -> FlowDefinitionError:
    """The single error mentioning ``rule``, checked to name the step and its place."""
    matching = [e for e in errors if rule in str(e)]
    assert len(matching) == 1, [str(e) for e in errors]
    error = matching[0]
    message = str(error)
    assert f"{name!r}" in message
    assert f"{where} " in message or f"{where})" in message
    assert error.step == step
    assert error.line == int(where.rsplit(":", 1)[1])
    return error


# --------------------------------------------------------------------------- building


class BranchFlow(FlowSpec):
    """A flow defined the usual way, in this test file."""

    @step
    def start(self) -> None:
        """Make the items."""
        self.items = [1, 2, 3]
        self.next(self.fan, self.other)

    @retry(times=1)
    @step
    def fan(self) -> None:
        self.next(self.each, foreach="items")

    @step
    def each(self) -> None:
        self.next(self.gather)

    @step
    def gather(self, inputs: Any) -> None:
        self.next(self.join)

    @step
    def other(self) -> None:
        self.next(self.join)

    @step
    def join(self, inputs: Any) -> None:
        self.next(self.end)

    @step
    def end(self) -> None:
        """Done."""


def test_build_graph_of_a_flow_in_a_file() -> None:
    graph = build_graph(BranchFlow)
    assert graph.name == "BranchFlow"
    assert list(graph.nodes) == ["start", "fan", "each", "gather", "other", "join", "end"]
    assert check_graph(graph) == []
    start = graph["start"]
    assert (start.transition, start.out, start.in_steps) == ("split", ("fan", "other"), [])
    assert start.doc == "Make the items."
    assert start.file == __file__
    first = inspect.getsourcelines(BranchFlow.start)[1]
    assert start.line == first + 1  # the `def` line, under @step
    assert start.next_line == first + 4
    fan = graph["fan"]
    assert (fan.transition, fan.foreach_var, fan.out) == ("foreach", "items", ("each",))
    assert [d.name for d in fan.decorators] == ["retry"]
    assert fan.line == inspect.getsourcelines(BranchFlow.fan)[1] + 2
    assert graph["gather"].is_join and not graph["each"].is_join
    assert graph["join"].in_steps == ["gather", "other"]
    assert graph["end"].transition == "end" and graph["end"].out == ()
    assert graph["each"].split_parents == ["start", "fan"]
    assert graph["gather"].split_parents == ["start", "fan"]
    assert graph["join"].split_parents == ["start"]
    assert graph["end"].split_parents == []
    assert graph.join_of("start") == "join"
    assert graph.join_of("fan") == "gather"
    assert graph["fan"].matching_join == "gather" and graph["each"].matching_join is None
    assert graph.topological() == ["start", "fan", "each", "gather", "other", "join", "end"]
    assert "fan" in graph and "nope" not in graph
    assert [n.name for n in graph] == list(graph.nodes)
    with pytest.raises(KeyError, match="no step 'nope'; its steps are: start, fan"):
        graph["nope"]
    with pytest.raises(FlowDefinitionError, match="'each' is a linear step"):
        graph.join_of("each")


def test_build_graph_of_a_notebook_cell(cell: Any) -> None:
    # Newer IPython names cells like real files that do not exist on disk.
    c = cell(
        """
        class NotebookFlow(FlowSpec):
            @step
            def start(self):  # <-start
                self.next(self.work, foreach='xs')  # <-next

            @step
            def work(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
        """,
        filename="/tmp/ipykernel_4242/1234567.py",
    )
    graph = c.graph()
    assert check_graph(graph) == []
    assert graph["start"].line == c.line("start")
    assert graph["start"].next_line == c.line("next")
    assert graph["start"].file == c.filename
    assert graph["start"].foreach_var == "xs"
    assert graph.join_of("start") == "join"


def test_source_with_a_string_indented_less_than_the_def(cell: Any) -> None:
    c = cell(
        '''
        class Flow(FlowSpec):
            @step
            def start(self):
                self.text = """
        not indented like the code
        """
                self.next(self.end)  # <-next

            @step
            def end(self):
                pass
        '''
    )
    graph = c.graph()
    assert check_graph(graph) == []
    assert graph["start"].next_line == c.line("next")


def test_topological_and_format_graph(cell: Any) -> None:
    c = cell(
        '''
        class Flow(FlowSpec):
            @step
            def start(self):
                """Load the data.

                From the warehouse."""
                self.next(self.a, self.b)

            @step
            def b(self):
                self.next(self.join)

            @step
            def a(self):
                self.xs = [1]
                self.next(self.each, foreach="xs")

            @step
            def each(self):
                self.next(self.inner)

            @step
            def inner(self, inputs):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                """Report."""
        '''
    )
    graph = c.graph()
    assert check_graph(graph) == []
    assert graph.topological() == ["start", "b", "a", "each", "inner", "join", "end"]
    assert format_graph(graph) == textwrap.dedent(
        """\
        Flow Flow

        Step start
            Load the data.

            From the warehouse.
            => a, b

        Step b
            => join

        Step a (foreach over xs)
            => each

        Step each
            => inner

        Step inner (join)
            => join

        Step join (join)
            => end

        Step end
            Report.
        """
    )


# --------------------------------------------------------------------------- one test per rule


def test_rule_next_called_twice(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def train(self):
                if self.x:
                    self.next(self.end)
                else:
                    self.next(self.end)  # <-second

            @step
            def start(self):
                self.next(self.train)

            @step
            def end(self):
                pass
        """
    )
    only_error(
        c.errors(),
        name="train",
        where=f"{c.filename}:{c.line('second')}",
        rule="a step must call self.next() exactly once, as its last statement",
        step="train",
    )
    assert "calls self.next() 2 times" in str(c.errors()[0])


def test_rule_next_must_be_last(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)  # <-call
                self.x = 1

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="exactly once, as its last statement",
        step="start",
    )
    assert "Move the self.next(...) call to the end" in str(error)


def test_rule_next_inside_a_block(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                for _ in range(1):
                    self.next(self.end)  # <-call

            @step
            def end(self):
                pass
        """
    )
    only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="exactly once, as its last statement",
        step="start",
    )


def test_rule_next_missing(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):  # <-def
                self.x = 1

            @step
            def end(self):
                pass
        """
    )
    errors = c.errors()
    error = only_error(
        errors,
        name="start",
        where=f"{c.filename}:{c.line('def')}",
        rule="exactly once",
        step="start",
    )
    assert "never calls self.next()" in str(error)
    assert "self.next(self.end)" in str(error)
    # end is then unreachable: that is reported too.
    assert any("'end'" in str(e) and "never reached" in str(e) for e in errors)


def test_rule_end_has_no_next(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                self.next(self.start)  # <-call
        """
    )
    only_error(
        c.errors(),
        name="end",
        where=f"{c.filename}:{c.line('call')}",
        rule="the end step finishes the flow and must not call self.next()",
        step="end",
    )


def test_rule_unknown_target_suggests_a_close_name(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.trian)  # <-call

            @step
            def train(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="self.next() takes steps of this flow",
        step="start",
    )
    assert "'trian', which is not a step" in str(error)
    assert "Did you mean self.train?" in str(error)


def test_rule_target_without_step_decorator(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.helper)  # <-call

            def helper(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="self.next() takes steps of this flow",
        step="start",
    )
    assert "a method without @step" in str(error) and "Add @step above 'def helper'" in str(error)


def test_rule_target_must_be_written_as_self_step(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(getattr(self, "end"))  # <-call

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="written as self.<step_name>",
        step="start",
    )
    assert "getattr(self, 'end')" in str(error)


def test_rule_foreach_must_be_a_string_literal(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                var = "xs"
                self.xs = [1]
                self.next(self.each, foreach=var)  # <-call

            @step
            def each(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="foreach= must be a string literal",
        step="start",
    )
    assert "foreach=var" in str(error)
    assert c.graph()["start"].transition == "foreach"


def test_rule_foreach_goes_to_one_step(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.xs = [1]
                self.next(self.a, self.b, foreach="xs")  # <-call

            @step
            def a(self):
                self.next(self.join)

            @step
            def b(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="a foreach runs exactly one step for each item",
        step="start",
    )


@pytest.mark.parametrize("missing", ["start", "end"])
def test_rule_start_and_end_exist(cell: Any, missing: str) -> None:
    other = "end" if missing == "start" else "start"
    c = cell(
        f"""
        class Flow(FlowSpec):  # <-class
            @step
            def {other}(self):
                pass
        """
    )
    errors = c.errors()
    error = only_error(
        errors,
        name="Flow",
        where=f"{c.filename}:{c.line('class') + 2}",  # classes from exec: the first step's def
        rule="every flow has exactly one step named start and one named end",
        step=None,
    )
    assert f"has no step named {missing!r}" in str(error)


def test_rule_start_exists_in_a_file_points_at_the_class() -> None:
    class NoStart(FlowSpec):
        @step
        def end(self) -> None:
            pass

    errors = check_graph(build_graph(NoStart))
    line = inspect.getsourcelines(NoStart)[1]
    only_error(
        errors,
        name="NoStart",
        where=f"{_shown(__file__)}:{line}",
        rule="exactly one step named start",
        step=None,
    )


def test_rule_start_without_step_decorator_hints_at_it(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    assert "Add @step above 'def start'" in str(c.errors()[0])


def test_rule_start_takes_no_inputs(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('def')}",
        rule="start is the first step and receives no inputs",
        step="start",
    )


def test_rule_step_arguments(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self, inputs, extra):  # <-def
                pass
        """
    )
    only_error(
        c.errors(),
        name="end",
        where=f"{c.filename}:{c.line('def')}",
        rule="a step takes only self, or self and inputs when it is a join",
        step="end",
    )


def test_rule_reachable_from_start(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def orphan(self):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="orphan",
        where=f"{c.filename}:{c.line('def')}",
        rule="every step must be reachable from start",
        step="orphan",
    )
    assert "self.next(self.orphan)" in str(error)


def test_rule_no_cycles(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a)

            @step
            def a(self):
                self.next(self.b)

            @step
            def b(self):
                self.next(self.a)  # <-back

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="b",
        where=f"{c.filename}:{c.line('back')}",
        rule="a flow must not loop",
        step="b",
    )
    assert "a -> b -> a" in str(error)
    with pytest.raises(FlowDefinitionError, match="cycle through steps a, b"):
        c.graph().topological()
    assert "Step a" in format_graph(c.graph())  # still shows something


def test_rule_more_than_one_incoming_edge_needs_a_join(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.merge)

            @step
            def b(self):
                self.next(self.merge)

            @step
            def merge(self):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="merge",
        where=f"{c.filename}:{c.line('def')}",
        rule="a step reached from more than one step must be a join that takes inputs",
        step="merge",
    )
    assert "reached from 'a' and 'b'" in str(error)
    assert "def merge(self, inputs)" in str(error)


def test_rule_branch_that_skips_its_join_is_pointed_at(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.join)

            @step
            def b(self):
                self.next(self.end)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):  # <-def
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="end",
        where=f"{c.filename}:{c.line('def')}",
        rule="a step reached from more than one step must be a join",
        step="end",
    )
    assert "Send 'b' to 'join', the join of 'start'" in str(error)


def test_rule_join_without_a_split(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a)

            @step
            def a(self):
                self.next(self.join)

            @step
            def join(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="join",
        where=f"{c.filename}:{c.line('def')}",
        rule="a join must receive all branches of exactly one split or foreach",
        step="join",
    )
    assert "not the join of any split or foreach" in str(error)


def test_rule_join_mixes_branches_of_different_splits(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.a1, self.a2)

            @step
            def a1(self):
                self.next(self.join)

            @step
            def a2(self):
                self.next(self.join)

            @step
            def b(self):
                self.next(self.join)

            @step
            def join(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="join",
        where=f"{c.filename}:{c.line('def')}",
        rule="all branches of exactly one split or foreach",
        step="join",
    )
    assert "joins branches from different splits" in str(error)
    assert "'a1' (inside 'start', 'a')" in str(error) and "'b' (inside 'start')" in str(error)


def test_rule_split_joined_by_two_joins(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.join_a)

            @step
            def b(self):
                self.next(self.join_b)

            @step
            def join_a(self, inputs):
                self.next(self.join_b)

            @step
            def join_b(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    errors = c.errors()
    # join_b gets a branch from inside the split and one from outside it.
    only_error(
        errors,
        name="join_b",
        where=f"{c.filename}:{c.line('def')}",
        rule="all branches of exactly one split",
        step="join_b",
    )


def test_rule_each_split_has_one_join(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.a, self.b)

            @step
            def a(self):
                self.next(self.join_a)

            @step
            def b(self):
                self.next(self.join_b)

            @step
            def join_a(self, inputs):
                self.next(self.end)

            @step
            def join_b(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    errors = c.errors()
    error = only_error(
        errors,
        name="join_b",
        where=f"{c.filename}:{c.line('def')}",
        rule="a join must receive all branches",
        step="join_b",
    )
    assert "which 'join_a' also joins" in str(error)


def test_rule_foreach_join_follows_a_step_inside_the_foreach(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2]
                self.next(self.join, foreach="xs")

            @step
            def join(self, inputs):  # <-def
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="join",
        where=f"{c.filename}:{c.line('def')}",
        rule="each branch of a split or foreach needs at least one step before its join",
        step="join",
    )
    assert "foreach step 'start' goes to directly" in str(error)


def test_rule_every_split_is_joined(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2]
                self.next(self.each, foreach="xs")  # <-call

            @step
            def each(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    error = only_error(
        c.errors(),
        name="start",
        where=f"{c.filename}:{c.line('call')}",
        rule="every split and foreach must be joined before end",
        step="start",
    )
    assert "starts a foreach that is never joined" in str(error)
    with pytest.raises(FlowDefinitionError, match="never joined"):
        c.graph().join_of("start")


def test_rule_source_must_be_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    source = HEADER + textwrap.dedent(
        """
        class Flow(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    namespace: dict[str, Any] = {"__name__": "__nowhere__"}
    exec(compile(source, "<string>", "exec"), namespace)  # no linecache entry: no source
    errors = check_graph(build_graph(namespace["Flow"]))
    assert errors
    assert "has no readable source" in str(errors[0])
    assert "inloop reads each step's source" in str(errors[0])


# --------------------------------------------------------------------------- parameters


def test_rule_parameters(cell: Any) -> None:
    c = cell(
        """
        class Flow(FlowSpec):
            alpha = Parameter("alpha", default=1)
            alpha_again = Parameter("alpha", default=2)  # <-dup
            index = Parameter("idx", default=0)  # <-reserved
            train_it = Parameter("train", default=0)  # <-shadow
            data = Parameter("data", required=True, default="x")  # <-required
            depth = Parameter("depth", type=int, default="deep")  # <-default

            @step
            def start(self):
                self.next(self.train)

            @step
            def train(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    errors = c.errors()
    assert len(errors) == 5, [str(e) for e in errors]
    cases = [
        ("alpha", "dup", "parameter names must be unique within a flow"),
        ("idx", "reserved", "must not share its name with a step or a built-in flow attribute"),
        ("train", "shadow", "must not share its name with a step"),
        ("data", "required", "a required parameter has no default"),
        ("depth", "default", "a parameter's default must convert to its type"),
    ]
    for name, marker, rule in cases:
        matching = [e for e in errors if e.line == c.line(marker)]
        assert len(matching) == 1, (marker, [str(e) for e in errors])
        message = str(matching[0])
        assert f"Parameter {name!r} ({c.filename}:{c.line(marker)})" in message
        assert rule in message
    assert "'index', which every flow already has" in str(errors[1])
    assert "'train', which is also a step" in str(errors[2])
    assert "expects an integer; got 'deep'" in str(errors[4])


def _shown(path: str) -> str:
    """How messages show a file path: relative to the working directory when under it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
