"""The app's edge: every request's size, text and nesting are checked before any route sees them.

:class:`InputEdge` is ASGI middleware in front of the whole app (routes,
pages, the serving fast path). In one place, for every route:

- **Size.** A body is counted as ``receive()`` delivers it and refused with
  413 once it passes the limit; a ``Content-Length`` over the limit is refused
  before a byte of the body is read. The limit is ``INLOOP_MAX_BODY_BYTES``,
  or the one a middleware closer to the route puts in
  ``scope["inloop.body_limit"]`` (the serving routes: the service's
  ``max_bytes``, see :mod:`inloop.serve.limits`).
- **Text.** Path and query parameters and JSON (or form) bodies holding a NUL
  character or a lone UTF-16 surrogate are refused with 422 naming the field
  (:mod:`inloop.store.text`): databases cannot store them, and stored they
  broke every page that read them back.
- **Numbers and nesting.** A JSON body nested deeper than
  ``INLOOP_MAX_JSON_DEPTH``, or holding an integer past 64 bits or a
  non-finite number (Python's JSON reads ``NaN`` and ``1e999``), is refused
  with 422. The parsed body is left in ``scope["inloop.json"]`` so the serving
  fast path does not parse it again.

>>> edge = InputEdge(app=None, max_body_bytes=1024, max_json_depth=8)
>>> edge.max_body_bytes
1024
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from inloop.errors import quote
from inloop.store.text import find_unstorable, text_problem

__all__ = ["BODY_LIMIT_KEY", "JSON_KEY", "InputEdge", "RequestRefused", "risky"]

#: ``scope`` key for a route's own body limit: ``(bytes, "where the limit comes from")``.
BODY_LIMIT_KEY = "inloop.body_limit"
#: ``scope`` key under which the checked JSON body is left for the serving fast path.
JSON_KEY = "inloop.json"
_BODY_SETTING = "the setting INLOOP_MAX_BODY_BYTES"
# What a JSON body must hold for its parsed value to break a rule: a \\u escape (NUL, a
# surrogate), a raw surrogate's lead byte (Python's JSON reads them) or NUL (UTF-16 bodies),
# 19 digits in a row (past 64 bits, or a float that overflows), a three-digit exponent, NaN
# or Infinity. A body with none of them, and fewer brackets than the depth limit, is not
# walked: the common predict body costs a few byte searches, not a walk of every number.
_DIGITS = bytes.maketrans(b"0123456789E", b"9999999999e")
_MARKERS = (b"\\u", b"\x00", b"\xed", b"9" * 19, b"e999", b"e+999", b"e-999", b"NaN", b"Infinity")


def risky(body: bytes, max_depth: int) -> bool:
    """Whether the JSON ``body`` may hold a value :func:`find_unstorable` refuses.

    False means it certainly does not (so it need not be walked).

    >>> risky(b'{"instance": [0.5, 1e-05]}', 32), risky(b'{"a": "\\\\u0000"}', 32)
    (False, True)
    """
    if body.count(b"[") + body.count(b"{") > max_depth:
        return True
    marked = body.translate(_DIGITS)
    return any(marker in marked for marker in _MARKERS)


class RequestRefused(HTTPException):
    """A request the edge refuses while its body is read (413 or 422).

    An ``HTTPException``: raised from ``receive()`` inside a FastAPI route, the
    route answers it with its status and message like any other.
    """


def _refusal(where: str, problem: str, value: object, loc: list[str]) -> RequestRefused:
    detail = f"Field {where}: {problem}. Got {quote(value, 80)}. Nothing was changed."
    refused = RequestRefused(422, detail)
    refused.loc = loc  # type: ignore[attr-defined]
    return refused


def _json_body(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bool, int | None]:
    """(JSON body?, form body?, Content-Length) from the request headers, as FastAPI decides."""
    content_type, length = b"", None
    for key, value in headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    media = content_type.partition(b";")[0].strip().lower()
    is_json = (
        not media
        or media == b"application/json"
        or (media.startswith(b"application/") and media.endswith(b"+json"))
    )
    return is_json, media == b"application/x-www-form-urlencoded", length


class _Body:
    """The request's ``receive``, counting bytes and checking the body at its end."""

    def __init__(self, edge: InputEdge, scope: Any, receive: Any) -> None:
        self.edge = edge
        self.scope = scope
        self.inner = receive
        self.size = 0
        self.chunks: list[bytes] = []
        self.started = False
        self.is_json, self.is_form, self.length = _json_body(scope["headers"])

    def _limit(self) -> tuple[int, str]:
        own = self.scope.get(BODY_LIMIT_KEY)
        return own if own is not None else (self.edge.max_body_bytes, _BODY_SETTING)

    def _too_large(self, size: str) -> RequestRefused:
        limit, source = self._limit()
        return RequestRefused(
            413,
            f"The request body is {size}, over the limit of {limit} bytes (from {source}). "
            "Send less per request; nothing was read further or changed.",
        )

    async def receive(self) -> Any:
        if not self.started:
            self.started = True
            if self.length is not None and self.length > self._limit()[0]:
                raise self._too_large(f"{self.length} bytes (its Content-Length)")
        message = await self.inner()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self._limit()[0]:
            raise self._too_large(f"more than {self.size - len(chunk)} bytes")
        if self.is_json or self.is_form:
            self.chunks.append(chunk)
            if not message.get("more_body", False):
                body = b"".join(self.chunks)
                self.chunks = []
                self._check(body)
        return message

    def _check(self, body: bytes) -> None:
        if self.is_form:
            if b"%00" in body or b"\x00" in body:
                raise _refusal("form body", text_problem("\x00") or "", body[:80], ["body"])
            return
        if not body:
            return
        depth = self.edge.max_json_depth
        try:
            data = json.loads(body)
        except RecursionError:
            raise RequestRefused(
                422,
                f"The JSON body is nested deeper than {depth} levels of lists and objects "
                "(the setting INLOOP_MAX_JSON_DEPTH). Send flatter data.",
            ) from None
        except ValueError:
            return  # not JSON: the route says what it expected
        found = None
        if risky(body, depth):
            found = find_unstorable(data, max_depth=depth, numbers=True)
        if found is not None:
            where = repr(found.where) if found.path else "(the whole body)"
            problem = found.problem
            if problem.startswith("is nested deeper"):
                problem += " (the setting INLOOP_MAX_JSON_DEPTH); send flatter data"
            raise _refusal(where, problem, found.value, ["body", *map(str, found.path)])
        self.scope[JSON_KEY] = data


class InputEdge:
    """ASGI middleware that checks size, text and nesting of every request (see the module)."""

    def __init__(self, app: Any, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _check_url(scope)
        if refused is not None:
            await _answer(refused, scope, receive, send)
            return
        body = _Body(self, scope, receive)
        try:
            await self.app(scope, body.receive, send)
        except RequestRefused as exc:
            # Raised while the body was read (by the serving fast path: a route answers
            # its own), so before any answer began.
            await _answer(exc, scope, receive, send)


async def _answer(exc: RequestRefused, scope: Any, receive: Any, send: Any) -> None:
    content: dict[str, Any] = {"detail": exc.detail}
    loc = getattr(exc, "loc", None)
    if loc is not None:
        content["errors"] = [{"loc": loc, "msg": exc.detail, "type": "value_error"}]
    await JSONResponse(content, status_code=exc.status_code)(scope, receive, send)


def _check_url(scope: Any) -> RequestRefused | None:
    """A 422 for a path or query parameter holding text that cannot be stored, else None."""
    path: str = scope["path"]
    problem = text_problem(path)
    if problem is not None:
        name, value = _path_parameter(scope)
        where = "the path" if name is None else f"path parameter {name!r}"
        return _refusal(where, problem, path if value is None else value, ["path", name or ""])
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            for text in (key, value):
                problem = text_problem(text)
                if problem is not None:
                    return _refusal(f"query parameter {key!r}", problem, value, ["query", key])
    return None


def _path_parameter(scope: Any) -> tuple[str | None, str | None]:
    """The name and value of the path parameter that holds bad text, if a route matches."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        for name, value in child.get("path_params", {}).items():
            if isinstance(value, str) and text_problem(value) is not None:
                return name, value
    return None, None
