"""Values the metadata database can store: no NUL characters, no lone surrogates, bounded nesting.

PostgreSQL refuses text holding a NUL character (``\\x00``), and no database
can encode a lone UTF-16 surrogate (``\\ud800``, which JSON's ``\\ud800`` escape
and Python strings allow) as UTF-8: stored through a JSON column it breaks
every page and answer that later reads it back. Every part that stores text a
user gave checks it here first (the web app for every request body, path and
query parameter; the labeling functions for Python and CLI callers), so such
text is refused with a message naming the field, and nothing is stored.

>>> find_unstorable({"items": [{"text": "fine"}, {"text": "bad \\x00"}]}).where
'items.1.text'
>>> find_unstorable(["caf\\u00e9"]) is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "Unstorable",
    "find_unstorable",
    "printable",
    "text_problem",
    "unstorable_message",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
#: The largest value of an ``Integer`` column on PostgreSQL (32 bits).
INT32_MAX = 2**31 - 1

_NUL = (
    "contains a NUL character (\\x00), which the database cannot store; remove it "
    "(it is never part of real text)"
)
_SURROGATE = (
    "contains a lone UTF-16 surrogate (such as \\ud800), which is not text and cannot be "
    "encoded as UTF-8; send the character whole (both halves of a surrogate pair) or drop it"
)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can.

    >>> text_problem("ok"), text_problem("a\\x00b")[:24]
    (None, 'contains a NUL character')
    """
    if "\x00" in text:
        return _NUL
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE
    return None


def printable(value: object) -> object:
    """``value`` with any lone surrogate written as its escape, so it can be sent as UTF-8.

    For text stored before it was refused: pages and answers show it instead of
    failing. Anything but a string comes back as it is.

    >>> printable("bad \\ud800 text")
    'bad \\\\ud800 text'
    """
    if type(value) is not str and not isinstance(value, str):
        return value
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fixed = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return type(value)(fixed) if type(value) is not str else fixed  # keeps Markup Markup
    return value


@dataclass(frozen=True)
class Unstorable:
    """Where in a value the first problem is (``path``: keys and indexes), and what it is."""

    path: tuple[str | int, ...]
    problem: str
    value: object

    @property
    def where(self) -> str:
        """The path as ``items.0.text`` (empty for the value itself)."""
        return ".".join(map(str, self.path))


def find_unstorable(
    value: object, *, max_depth: int | None = None, numbers: bool = False
) -> Unstorable | None:
    """The first part of ``value`` (nested dicts and lists) that cannot be stored, or None.

    Strings (values and keys) must pass :func:`text_problem`. With
    ``max_depth``, containers may nest at most that deep (the value itself is
    depth 1). With ``numbers``, integers must fit in 64 bits and floats be
    finite, as databases and the models' arrays take them.

    >>> find_unstorable([[[1]]], max_depth=2).problem
    'is nested deeper than 2 levels of lists and objects'
    >>> find_unstorable({"n": 2**70}, numbers=True).where
    'n'
    """
    found = _scalar_problem(value, numbers)
    if found is not None:
        return Unstorable((), found, value)
    if not isinstance(value, dict | list | tuple):
        return None
    # Iterative, not recursive: a value nested 100,000 deep must not exhaust the stack.
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        container, depth, path = stack.pop()
        if max_depth is not None and depth > max_depth:
            return Unstorable(
                path, f"is nested deeper than {max_depth} levels of lists and objects", container
            )
        pairs: Any = container.items() if type(container) is dict else enumerate(container)
        for key, item in pairs:
            if type(key) is str:
                problem = text_problem(key)
                if problem is not None:
                    return Unstorable((*path, key), "has a key that " + problem, key)
            kind = type(item)
            if kind is float and not numbers:
                continue
            if kind is dict or kind is list or kind is tuple:
                stack.append((item, depth + 1, (*path, key)))
                continue
            problem = _scalar_problem(item, numbers)
            if problem is not None:
                return Unstorable((*path, key), problem, item)
    return None


def _scalar_problem(value: object, numbers: bool) -> str | None:
    kind = type(value)
    if kind is str:
        return text_problem(value)  # type: ignore[arg-type]
    if not numbers:
        return None
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return None
        return "is not a finite number (NaN and infinity cannot be stored); send a finite number"
    if kind is int and not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        return (
            f"is an integer outside 64 bits (from {INT64_MIN} to {INT64_MAX}); send a smaller "
            "number, or a string if it is an identifier"
        )
    return None


def unstorable_message(value: object, field: str) -> str | None:
    """The error message for text in ``value`` no database can store, or None when it can.

    ``field`` names ``value``; the message adds the path inside it. Each part
    raises it as its own error (``LabelError``, ``PolicyError``...).

    >>> unstorable_message({"text": "a\\x00"}, "items[0]")[:53]
    'The field "items[0][\\'text\\']" contains a NUL character'
    """
    from inloop.errors import quote

    found = find_unstorable(value)
    if found is None:
        return None
    where = field + "".join(f"[{p!r}]" for p in found.path)
    return f"The field {where!r} {found.problem}. Got {quote(found.value, 80)}; nothing was stored."
