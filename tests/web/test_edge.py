"""The edge's shortcut: a JSON body is walked only when its bytes could break a rule.

``inloop.web.edge`` skips walking bodies whose bytes hold nothing that could
parse into NUL, a surrogate, a 64-bit overflow, a non-finite number or deep
nesting. These properties check that the shortcut never lets such a body by.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inloop.store.text import find_unstorable
from inloop.web.edge import risky

DEPTH = 6

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


def _walked(body: bytes) -> bool:
    return risky(body, DEPTH)


@settings(max_examples=400, database=None, derandomize=True)
@given(value=_values, ascii_only=st.booleans())
def test_a_body_that_breaks_a_rule_is_always_walked(value: Any, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    parsed = json.loads(body)
    if find_unstorable(parsed, max_depth=DEPTH, numbers=True) is not None:
        assert _walked(body), body[:200]


def test_plain_predict_bodies_are_not_walked() -> None:
    row = [0.1 * i for i in range(64)]
    assert not _walked(json.dumps({"instance": row}).encode())
    assert not _walked(json.dumps({"instance": "a short text, in English"}).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"[1e999]",
        b"[-1E+400]",
        b"[1" + b"0" * 400 + b".5]",
        b"[123456789012345678901]",
        b"[NaN]",
        b"[-Infinity]",
        b'["\\u0000"]',
        b'{"\\ud800": 1}',
        b'["\xed\xa0\x80"]',  # a raw surrogate, which Python's JSON reads
        '["\ud800"]'.encode("utf-16", "surrogatepass"),
        b"[" * 7 + b"]" * 7,
    ],
)
def test_hand_written_bodies_that_break_a_rule_are_walked(body: bytes) -> None:
    parsed = json.loads(body)
    assert find_unstorable(parsed, max_depth=DEPTH, numbers=True) is not None
    assert _walked(body)
