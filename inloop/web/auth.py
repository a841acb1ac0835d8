"""Who is calling: users, roles, API tokens, browser sessions and CSRF.

API clients send ``Authorization: Bearer <token>``; pages sign in once with a
token (``POST /login``) and then carry the ``inloop_session`` cookie, plus the
CSRF token (cookie ``inloop_csrf``, echoed in the ``X-CSRF-Token`` header or
the ``csrf_token`` form field) on every request that changes something.
Tokens and session ids are stored as SHA-256 digests, never in clear.

Roles rise in trust: annotator < reviewer < scientist < admin; each may do
what the ones before it may.

>>> from inloop.store import get_engine
>>> engine = get_engine("sqlite://")
>>> token = create_user("doc-ana", "annotator", engine=engine)
>>> authenticate(token, engine=engine)
User(name='doc-ana', role='annotator')
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from inloop.errors import InloopError, quote
from inloop.store.db import begin_write, get_engine
from inloop.web.tables import ROLES, web_sessions, web_tokens, web_users

__all__ = [
    "CSRF_COOKIE",
    "ROLES",
    "SESSION_COOKIE",
    "AuthError",
    "Principal",
    "User",
    "UserExistsError",
    "authenticate",
    "create_session",
    "create_token",
    "create_user",
    "current_user",
    "end_session",
    "ensure_admin",
    "get_user",
    "has_users",
    "hash_secret",
    "optional_user",
    "request_engine",
    "require",
    "router",
    "session_user",
]

SESSION_COOKIE = "inloop_session"
CSRF_COOKIE = "inloop_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: How long a browser session lasts.
SESSION_HOURS = 12
# last_used_at is written at most this often per token: no write on every request.
_TOUCH_SECONDS = 60
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@\-]{0,254}")
_NAME_RULE = "1 to 255 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthError(InloopError, ValueError):
    """A user name or role is invalid; the message says what would be accepted."""


class UserExistsError(InloopError):
    """A user with that name already exists."""


@dataclass(frozen=True)
class User:
    """A signed-in user: the name annotations are recorded under, and the role."""

    name: str
    role: str

    def can(self, role: str) -> bool:
        """Whether this user's role is ``role`` or a more trusted one."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Principal:
    """The user of one request and how they signed in (``csrf_token`` only for sessions)."""

    user: User
    via: str  # "token" or "session"
    csrf_token: str | None = None

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a token or session id is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise AuthError(f"Invalid role {quote(role)}: expected one of {list(ROLES)}.")
    return str(role)


def create_user(
    name: str, role: str, *, created_by: str = "inloop", engine: Engine | None = None
) -> str:
    """Create a user with a first API token and return the token (shown only this once).

    Only the token's SHA-256 digest is stored: a lost token cannot be read back,
    only replaced by a new one (:func:`create_token`).

    >>> from inloop.store import get_engine
    >>> engine = get_engine("sqlite://")
    >>> len(create_user("doc-bo", "reviewer", engine=engine)) > 40
    True
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AuthError(f"Invalid user name {quote(name)}: expected {_NAME_RULE}, such as 'ana'.")
    role = _check_role(role)
    token = secrets.token_urlsafe(32)
    now = _now()
    try:
        with begin_write(_engine(engine)) as conn:
            taken = conn.execute(select(web_users.c.role).where(web_users.c.name == name)).first()
            if taken is not None:
                raise _exists(name)
            conn.execute(
                web_users.insert(),
                {"name": name, "role": role, "created_at": now, "created_by": created_by},
            )
            conn.execute(
                web_tokens.insert(),
                {"user": name, "token_hash": hash_secret(token), "created_at": now},
            )
    except IntegrityError:
        raise _exists(name) from None
    return token


def _exists(name: str) -> UserExistsError:
    return UserExistsError(
        f"A user named {quote(name)} already exists. Choose another name; an admin can give "
        "the existing user a new token."
    )


def create_token(name: str, *, engine: Engine | None = None) -> str:
    """Give an existing user one more API token and return it (shown only this once)."""
    token = secrets.token_urlsafe(32)
    with begin_write(_engine(engine)) as conn:
        if conn.execute(select(web_users.c.name).where(web_users.c.name == name)).first() is None:
            raise AuthError(f"No user {quote(name)}. Create it first with create_user(name, role).")
        conn.execute(
            web_tokens.insert(),
            {"user": name, "token_hash": hash_secret(token), "created_at": _now()},
        )
    return token


def get_user(name: str, *, engine: Engine | None = None) -> User | None:
    """The user named ``name``, or None."""
    with _engine(engine).connect() as conn:
        row = conn.execute(
            select(web_users.c.name, web_users.c.role).where(web_users.c.name == name)
        ).first()
    return None if row is None else User(row.name, row.role)


def authenticate(token: str, *, engine: Engine | None = None) -> User | None:
    """The user whose live API token ``token`` is, or None.

    The token is looked up by its digest, and the digests are compared again in
    constant time.
    """
    if not token:
        return None
    digest = hash_secret(token)
    engine = _engine(engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(
                web_tokens.c.token_id,
                web_tokens.c.token_hash,
                web_tokens.c.last_used_at,
                web_users.c.name,
                web_users.c.role,
            )
            .join(web_users, web_users.c.name == web_tokens.c.user)
            .where(web_tokens.c.token_hash == digest, web_tokens.c.revoked_at.is_(None))
        ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = _now()
    if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=_TOUCH_SECONDS):
        with begin_write(engine) as conn:
            conn.execute(
                update(web_tokens)
                .where(web_tokens.c.token_id == row.token_id)
                .values(last_used_at=now)
            )
    return User(row.name, row.role)


def has_users(*, engine: Engine | None = None) -> bool:
    """Whether the database has any user yet."""
    with _engine(engine).connect() as conn:
        return conn.execute(select(web_users.c.name).limit(1)).first() is not None


def ensure_admin(*, engine: Engine | None = None) -> str | None:
    """On a database without users, create ``admin`` (role admin) and return its token.

    Returns None when any user exists already (the token was printed before).
    """
    engine = _engine(engine)
    if has_users(engine=engine):
        return None
    try:
        return create_user("admin", "admin", created_by="inloop server", engine=engine)
    except UserExistsError:
        return None  # another process made it first


def create_session(user: User, *, engine: Engine | None = None) -> tuple[str, str]:
    """Open a browser session for ``user``; returns (session cookie value, CSRF token)."""
    session = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = _now()
    with begin_write(_engine(engine)) as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
        conn.execute(
            web_sessions.insert(),
            {
                "session_id": hash_secret(session),
                "user": user.name,
                "csrf_token": csrf,
                "created_at": now,
                "expires_at": now + timedelta(hours=SESSION_HOURS),
            },
        )
    return session, csrf


def session_user(session: str, *, engine: Engine | None = None) -> tuple[User, str] | None:
    """The user and CSRF token of a live session cookie, or None."""
    if not session:
        return None
    with _engine(engine).connect() as conn:
        row = conn.execute(
            select(web_users.c.name, web_users.c.role, web_sessions.c.csrf_token)
            .join(web_users, web_users.c.name == web_sessions.c.user)
            .where(
                web_sessions.c.session_id == hash_secret(session),
                web_sessions.c.expires_at > _now(),
            )
        ).first()
    return None if row is None else (User(row.name, row.role), row.csrf_token)


def end_session(session: str, *, engine: Engine | None = None) -> None:
    """Close a browser session (logging out); unknown sessions are ignored."""
    with begin_write(_engine(engine)) as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.session_id == hash_secret(session)))


# --- FastAPI dependencies -------------------------------------------------------------------


def request_engine(request: Request) -> Engine:
    """The app's engine (``create_app(engine=...)``), for routes and dependencies."""
    engine: Engine = request.app.state.engine
    return engine


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


async def _check_csrf(request: Request, expected: str) -> None:
    if request.method in _SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token")
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        what = "is missing" if not given else "does not match this session"
        raise HTTPException(
            403,
            f"The CSRF token {what}: a request signed in by the session cookie that changes "
            f"something must send the header {CSRF_HEADER} (or the form field 'csrf_token') "
            f"with the value of the cookie {CSRF_COOKIE!r}. API clients send "
            "'Authorization: Bearer <token>' instead.",
        )


async def optional_user(request: Request) -> Principal | None:
    """The caller, or None when they send no credentials; bad credentials get 401.

    Bearer tokens win over the session cookie; a session-signed request that
    changes something must carry the CSRF token (else 403).
    """
    engine = request_engine(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(
                "The Authorization header must be 'Bearer <token>'. Got a header of scheme "
                f"{scheme!r}. Ask an admin for a token (POST /api/users)."
            )
        from starlette.concurrency import run_in_threadpool

        user = await run_in_threadpool(authenticate, token.strip(), engine=engine)
        if user is None:
            raise _unauthorized(
                "The API token is not valid (unknown or revoked). Ask an admin for a new one."
            )
        return Principal(user, "token")
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        from starlette.concurrency import run_in_threadpool

        found = await run_in_threadpool(session_user, session, engine=engine)
        if found is None:
            raise _unauthorized(
                "The session has ended (expired or signed out). Sign in again at /login."
            )
        user, csrf = found
        await _check_csrf(request, csrf)
        return Principal(user, "session", csrf)
    return None


async def current_user(
    principal: Annotated[Principal | None, Depends(optional_user)],
) -> Principal:
    """The signed-in caller; 401 when the request carries no token and no session."""
    if principal is None:
        raise _unauthorized(
            "Not signed in: send 'Authorization: Bearer <token>' or sign in at /login. "
            "An admin creates tokens with POST /api/users."
        )
    return principal


def require(role: str) -> Callable[..., object]:
    """A dependency admitting users whose role is ``role`` or higher (else 403).

    >>> dependency = require("scientist")
    """
    _check_role(role)

    async def dependency(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
        if not principal.user.can(role):
            higher = list(ROLES[ROLES.index(role) :])
            raise HTTPException(
                403,
                f"This needs the role {quote(role)} or higher ({', '.join(higher)}); user "
                f"{principal.name!r} has the role {principal.role!r}. Ask an admin to change it.",
            )
        return principal

    return dependency


# --- sign in and out ------------------------------------------------------------------------

router = APIRouter()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.post("/login", include_in_schema=False)
def login(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> Response:
    """Sign in with an API token: sets the session and CSRF cookies, then goes to ``next``.

    A wrong token goes back to ``/login?error=token`` (303).
    """
    engine = request_engine(request)
    user = authenticate(token.strip(), engine=engine)
    if user is None:
        return RedirectResponse("/login?error=token", status_code=303)
    session, csrf = create_session(user, engine=engine)
    # Only paths on this site: "//host" and "/\\host" would send the user elsewhere.
    target = next if next.startswith("/") and next[1:2] not in ("/", "\\") else "/"
    response = RedirectResponse(target, status_code=303)
    max_age = SESSION_HOURS * 3600
    secure = _secure(request)
    response.set_cookie(
        SESSION_COOKIE, session, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax", secure=secure
    )
    return response


@router.post("/logout", include_in_schema=False)
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
