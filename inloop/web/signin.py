"""Signing in and out of the pages: the login form, its CSRF check and the attempt limit.

- ``GET /login`` shows the form. It sets the pre-session cookie
  ``inloop_login_csrf`` and puts the same value in the form (a double submit):
  another site, which cannot read this site's cookies, cannot make a browser
  sign in to an account of the attacker's choosing (login CSRF).
- ``POST /login`` turns a token into a session (cookies ``inloop_session`` and
  ``inloop_csrf``, see :mod:`inloop.web.auth`) and goes to ``next``. Failed
  sign-ins are counted per client address (``INLOOP_SIGNIN_LIMIT``) and from
  all addresses together (``INLOOP_SIGNIN_LIMIT_ALL``), in this process; past
  either limit the answer is 429 with ``Retry-After``, before the token is
  looked at.
- ``POST /logout`` ends the session.

Cookies are ``Secure`` when the request came over HTTPS, as a trusted proxy
reports it (``INLOOP_TRUSTED_PROXIES``; see ``inloop server``).

>>> throttle = SignInThrottle("2/minute", "100/minute")
>>> throttle.failed("192.0.2.1"); throttle.failed("192.0.2.1")
>>> throttle.retry_after("192.0.2.1") is not None, throttle.retry_after("192.0.2.2")
(True, None)
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from inloop.web.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_HOURS,
    Principal,
    end_session,
    optional_user,
    request_engine,
    sign_in,
)

__all__ = ["LOGIN_CSRF_COOKIE", "SignInThrottle", "login_form", "router"]

#: The pre-session cookie whose value the login form must send back (``csrf_token``).
LOGIN_CSRF_COOKIE = "inloop_login_csrf"
_FORM_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
_LOGIN_ERRORS = {
    "token": "That token is not valid (unknown or revoked, or its user is disabled). Paste the "
    "whole token, or ask an admin for a new one.",
}

router = APIRouter(include_in_schema=False)


class SignInThrottle:
    """Failed sign-ins per client address and from all addresses together (moving windows).

    ``per_address`` and ``overall`` are limits such as ``"10/minute"``. Kept in
    this process: each server worker counts its own.
    """

    def __init__(self, per_address: str, overall: str) -> None:
        # Imported here: only a server that is asked to sign someone in pays for it.
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._limits = ((parse(per_address), "address"), (parse(overall), "all"))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or None when it may now."""
        waits = []
        for item, scope in self._limits:
            key = address if scope == "address" else ""
            if not self._limiter.test(item, "signin", scope, key):
                reset, _remaining = self._limiter.get_window_stats(item, "signin", scope, key)
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits) if waits else None

    def failed(self, address: str) -> None:
        """Count one failed sign-in from ``address``."""
        for item, scope in self._limits:
            self._limiter.hit(item, "signin", scope, address if scope == "address" else "")


def _throttle(request: Request) -> SignInThrottle:
    """The app's throttle, made on the first sign-in from the settings."""
    found: SignInThrottle | None = getattr(request.app.state, "signin_throttle", None)
    if found is None:
        from inloop.settings import get_settings

        settings = get_settings()
        found = SignInThrottle(settings.signin_limit, settings.signin_limit_all)
        request.app.state.signin_throttle = found
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _local(target: str) -> str:
    # Only paths on this site: "//host" and "/\\host" would send the user elsewhere.
    return target if target.startswith("/") and target[1:2] not in ("/", "\\") else "/"


def login_form(
    request: Request, next_url: str = "/", error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The sign-in page, with its pre-session CSRF token in a cookie and in the form."""
    given = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    form_token = given if _FORM_TOKEN.fullmatch(given) else secrets.token_urlsafe(32)
    response = _TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"next_url": _local(next_url), "error": error, "login_csrf": form_token},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        form_token,
        max_age=SESSION_HOURS * 3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/", error: str | None = None) -> Response:
    """The sign-in form: paste a token; it posts to ``POST /login``."""
    return login_form(request, next, _LOGIN_ERRORS.get(error or "", error and "Sign-in failed."))


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Sign in with an API token: sets the session and CSRF cookies, then goes to ``next``.

    A wrong token goes back to ``/login?error=token`` (303); a form without the
    login CSRF token is answered 403, too many failures 429 (both show the form).
    """
    throttle = _throttle(request)
    address = request.client.host if request.client else ""
    wait = throttle.retry_after(address)
    if wait is not None:
        refused = login_form(
            request,
            next,
            f"Too many failed sign-ins from your address or from everywhere. Try again in "
            f"{wait} seconds.",
            status_code=429,
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return login_form(
            request,
            next,
            "The sign-in form had expired or came from another site, so it was not used. "
            "Sign in again here.",
            status_code=403,
        )
    found = sign_in(token.strip(), engine=request_engine(request))
    if found is None:
        throttle.failed(address)
        target = _local(next)
        again = "" if target == "/" else f"&next={quote(target, safe='/')}"
        return RedirectResponse(f"/login?error=token{again}", status_code=303)
    _user, session, csrf = found
    response = RedirectResponse(_local(next), status_code=303)
    max_age = SESSION_HOURS * 3600
    secure = _secure(request)
    response.set_cookie(
        SESSION_COOKIE, session, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax", secure=secure
    )
    return response


@router.post("/logout")
def logout(
    request: Request, principal: Annotated[Principal | None, Depends(optional_user)]
) -> Response:
    """End the browser session (CSRF-checked) and go to ``/login``."""
    session = request.cookies.get(SESSION_COOKIE)
    if session and principal is not None and principal.via == "session":
        end_session(session, engine=request_engine(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response
