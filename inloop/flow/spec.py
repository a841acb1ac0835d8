"""FlowSpec: the base class of every flow.

A flow is a class whose ``@step`` methods call ``self.next(...)``. Attributes set on
``self`` in a step become versioned artifacts; the next step sees them again.
Artifacts a step does not touch are passed on by reference (their content key), so
nothing is copied or re-serialized.

>>> from inloop.flow import FlowSpec, step
>>> class HelloFlow(FlowSpec):
...     @step
...     def start(self):
...         self.greeting = "hello"
...         self.next(self.end)
...     @step
...     def end(self):
...         print(self.greeting)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inloop.errors import FlowError

if TYPE_CHECKING:
    from inloop.store.artifacts import ArtifactStore


class MergeArtifactsError(FlowError):
    """``merge_artifacts`` found artifacts whose values differ between inputs."""


@dataclass
class _TaskState:
    """What a flow object knows while one of its steps runs (or as a join input)."""

    store: ArtifactStore
    step_name: str
    inherited: dict[str, str]  # artifact name -> content key
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    parameter_names: frozenset[str] = frozenset()
    is_join: bool = False
    max_num_splits: int = 10_000
    transition: dict[str, Any] | None = None
    param_cache: dict[str, Any] = field(default_factory=dict)


class FlowSpec:
    """Base class of a flow: subclass it and decorate methods with ``@step``.

    Run the flow from its file with ``python flow.py run``; the file ends with::

        if __name__ == "__main__":
            MyFlow()
    """

    _inloop: _TaskState  # set on objects made by the runtime

    def __init__(self, use_cli: bool = True) -> None:
        if use_cli:
            from inloop.flow.cli import main

            main(type(self))

    # -- made by the runtime -------------------------------------------------
    @classmethod
    def _for_task(cls, state: _TaskState) -> FlowSpec:
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_inloop", state)
        return obj

    def _state(self) -> _TaskState:
        state = self.__dict__.get("_inloop")
        if state is None:
            raise FlowError(
                f"{type(self).__name__} is not running. Run it with "
                f"`python flow.py run` or inloop.Runner({type(self).__name__}).run()."
            )
        return state

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: load an inherited artifact lazily.
        if name.startswith("__") or name == "_inloop":
            raise AttributeError(name)
        state = self.__dict__.get("_inloop")
        if state is not None and name in state.inherited:
            value = state.store.get(state.inherited[name])
            # Kept in __dict__ so that in-place changes are persisted at the end of the step.
            self.__dict__[name] = value
            return value
        known = sorted(state.inherited) if state is not None else []
        raise AttributeError(
            f"Flow {type(self).__name__} has no artifact or attribute {name!r}"
            + (f" in step {state.step_name!r}" if state is not None else "")
            + (f". Artifacts available here: {', '.join(known)}." if known else ".")
        )

    def _get_parameter_value(self, attr: str) -> Any:
        state = self._state()
        if attr not in state.param_cache:
            key = state.inherited.get(attr)
            if key is None:
                raise FlowError(f"Parameter {attr!r} has no value in this run.")
            state.param_cache[attr] = state.store.get(key)
        return state.param_cache[attr]

    # -- the user API ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The flow's name (its class name)."""
        return type(self).__name__

    @property
    def index(self) -> int | None:
        """Index of this task in the innermost foreach, or None outside a foreach."""
        stack = self._state().foreach_stack
        return int(stack[-1]["index"]) if stack else None

    @property
    def input(self) -> Any:
        """The item of the innermost foreach this task works on."""
        state = self._state()
        if not state.foreach_stack:
            raise FlowError(
                f"self.input is only defined inside a foreach; step {state.step_name!r} "
                "is not. Use self.next(self.step, foreach='items') to fan out."
            )
        return self._frame_value(state.foreach_stack[-1])

    def _frame_value(self, frame: dict[str, Any]) -> Any:
        state = self._state()
        key = state.inherited.get(frame["var"])
        items: Any = self.__dict__[frame["var"]] if key is None else state.store.get(key)
        if not hasattr(items, "__getitem__"):  # a set or other sized iterable
            items = list(items)
        return items[frame["index"]]

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` for each enclosing foreach, outermost first."""
        return [
            (int(f["index"]), int(f["num_splits"]), self._frame_value(f))
            for f in self._state().foreach_stack
        ]

    def next(self, *steps: Any, foreach: str | None = None) -> None:
        """Name the step(s) that run after this one; call it last in the step.

        ``self.next(self.a)`` continues, ``self.next(self.a, self.b)`` branches and
        ``self.next(self.a, foreach="items")`` runs ``a`` once per item.
        """
        state = self._state()
        if state.transition is not None:
            raise FlowError(
                f"Step {state.step_name!r} called self.next() twice; call it exactly once, "
                "as the last statement of the step."
            )
        if not steps:
            raise FlowError(f"Step {state.step_name!r} called self.next() with no step.")
        out = []
        for target in steps:
            name = getattr(target, "__name__", None)
            if name is None or not getattr(target, "is_step", False):
                raise FlowError(
                    f"Step {state.step_name!r}: self.next() takes steps such as self.train; "
                    f"got {target!r}."
                )
            out.append(name)
        transition: dict[str, Any] = {"kind": "linear", "out": out}
        if foreach is not None:
            transition.update(self._foreach_transition(state, out, foreach))
        elif len(out) > 1:
            transition["kind"] = "split"
        state.transition = transition

    def _foreach_transition(self, state: _TaskState, out: list[str], var: str) -> dict[str, Any]:
        where = f"Step {state.step_name!r}"
        if len(out) != 1:
            raise FlowError(f"{where}: a foreach goes to exactly one step; got {out}.")
        try:
            items = getattr(self, var)
        except AttributeError:
            raise FlowError(
                f"{where}: foreach={var!r} names no artifact. Set self.{var} to a list "
                "before calling self.next()."
            ) from None
        try:
            num_splits = len(items)
        except TypeError:
            raise FlowError(
                f"{where}: foreach={var!r} must be a sized iterable such as a list; got "
                f"{type(items).__name__}."
            ) from None
        if num_splits == 0:
            raise FlowError(f"{where}: foreach={var!r} is empty; it needs at least one item.")
        if num_splits > state.max_num_splits:
            raise FlowError(
                f"{where}: foreach={var!r} has {num_splits} items, more than the limit of "
                f"{state.max_num_splits}. Raise it with --max-num-splits {num_splits}."
            )
        return {"kind": "foreach", "var": var, "num_splits": num_splits}

    def merge_artifacts(
        self,
        inputs: Inputs,
        exclude: Sequence[str] | None = None,
        include: Sequence[str] | None = None,
    ) -> None:
        """In a join, take over the inputs' artifacts that agree.

        An artifact whose value is the same in every input that has it is merged (by
        reference, nothing is loaded). Artifacts already set in this step, parameters
        and names in ``exclude`` are skipped. Differing values raise an error listing
        them: resolve them by hand first, or exclude them. With ``include``, only those
        names are merged, and each must exist in some input.
        """
        state = self._state()
        if not state.is_join:
            raise FlowError(
                f"merge_artifacts() can only be called in a join step; {state.step_name!r} "
                "is not one (a join step takes `inputs`)."
            )
        if exclude and include:
            raise FlowError("merge_artifacts() takes include= or exclude=, not both.")
        skip = set(exclude or ()) | set(state.parameter_names)
        candidates: dict[str, set[str]] = {}
        for inp in inputs:
            for name, key in inp._state().inherited.items():
                if name.startswith("_") or name in skip:
                    continue
                candidates.setdefault(name, set()).add(key)
        if include is not None:
            missing = [n for n in include if n not in candidates]
            if missing:
                raise MergeArtifactsError(
                    f"merge_artifacts(include=...) names artifacts no input has: "
                    f"{', '.join(missing)}. Inputs have: {', '.join(sorted(candidates))}."
                )
            candidates = {n: candidates[n] for n in include}
        conflicts = sorted(
            n for n, keys in candidates.items() if len(keys) > 1 and n not in self.__dict__
        )
        if conflicts:
            raise MergeArtifactsError(
                f"Step {state.step_name!r}: artifacts differ between inputs and cannot be "
                f"merged: {', '.join(conflicts)}. Set them in this step before calling "
                "merge_artifacts(), or pass exclude=[...]."
            )
        for name, keys in candidates.items():
            if name not in self.__dict__:
                state.inherited[name] = next(iter(keys))


class Inputs:
    """The inputs of a join step: iterate them, index them, or name a branch.

    ``inputs.train_a.score`` reads the artifact ``score`` of the branch that ended
    in step ``train_a``; ``for inp in inputs`` visits every input in order.
    """

    def __init__(self, flows: Sequence[FlowSpec]) -> None:
        self._flows = list(flows)

    def __iter__(self) -> Iterator[FlowSpec]:
        return iter(self._flows)

    def __len__(self) -> int:
        return len(self._flows)

    def __getitem__(self, index: int) -> FlowSpec:
        return self._flows[index]

    def __getattr__(self, name: str) -> FlowSpec:
        if name.startswith("_"):
            raise AttributeError(name)
        for flow in self._flows:
            if flow._state().step_name == name:
                return flow
        steps = sorted({f._state().step_name for f in self._flows})
        raise AttributeError(f"No input comes from step {name!r}; inputs come from {steps}.")
