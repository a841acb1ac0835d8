"""Security headers on the web app's answers: what a browser may load, frame and send.

Every answer outside the serving routes (``/v1``, machine clients on the hot
path) carries:

- ``Content-Security-Policy``: scripts, styles, fetches and form posts only
  from this site; images also from elsewhere (an item's image may live on
  another host); no plugins, no ``<base>``, and no framing by any site
  (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for old
  browsers). The pages keep to it: their scripts and styles are files under
  ``/static``, and their data is a JSON block, not a script. The API docs
  (``/docs``, ``/redoc``) load FastAPI's scripts from a CDN, so they get only
  the framing rule.
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``
  (addresses of pages, which name projects, do not leave the site).

>>> dict(HEADERS)[b"x-content-type-options"]
b'nosniff'
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "HEADERS", "SecurityHeaders"]

#: The Content-Security-Policy of every page and API answer.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https: "
    "http:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
#: The headers added to every answer outside ``/v1`` and the API docs.
HEADERS = ((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()), *_COMMON)
_DOCS_HEADERS = ((b"content-security-policy", b"frame-ancestors 'none'"), *_COMMON)
_DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_SERVING = "/v1/"


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` to answers (a header already set is kept)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_SERVING):
            await self.app(scope, receive, send)
            return
        added = _DOCS_HEADERS if path in _DOCS_PATHS else HEADERS

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in added if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
