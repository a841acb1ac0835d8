"""Who is calling: users, roles, API tokens, browser sessions and CSRF.

API clients send ``Authorization: Bearer <token>``; pages sign in once with a
token (``POST /login``, :mod:`inloop.web.signin`) and then carry the
``inloop_session`` cookie, plus the CSRF token (cookie ``inloop_csrf``, echoed
in the ``X-CSRF-Token`` header or the ``csrf_token`` form field) on every
request that changes something. Tokens and session ids are stored as SHA-256
digests, never in clear.

Roles rise in trust: annotator < reviewer < scientist < admin; each may do
what the ones before it may.

Users and tokens have a life cycle: a user holds several named tokens
(:func:`create_token`, :func:`list_tokens`), each revocable
(:func:`revoke_token`) or replaced under its name (:func:`rotate_token`); a
user can be disabled and enabled again (:func:`disable_user`). Revoking a
token ends the sessions opened with it, disabling a user ends all of theirs,
at once. Every such change is recorded with who and when
(:func:`user_events`). ``inloop users`` and ``/api/users`` call these.

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
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from inloop.errors import InloopError, quote
from inloop.store.db import begin_write, get_engine
from inloop.web.tables import ROLES, web_sessions, web_tokens, web_user_events, web_users

__all__ = [
    "CSRF_COOKIE",
    "ROLES",
    "SESSION_COOKIE",
    "AuthError",
    "LastAdminError",
    "NoSuchTokenError",
    "NoSuchUserError",
    "Principal",
    "TokenExistsError",
    "TokenInfo",
    "User",
    "UserEvent",
    "UserExistsError",
    "access_version",
    "authenticate",
    "change_role",
    "command_user",
    "create_session",
    "create_token",
    "create_user",
    "current_user",
    "disable_user",
    "enable_user",
    "end_session",
    "ensure_admin",
    "get_user",
    "has_users",
    "hash_secret",
    "issue_token",
    "list_tokens",
    "optional_user",
    "request_engine",
    "require",
    "revoke_token",
    "rotate_token",
    "session_user",
    "sign_in",
    "user_events",
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
    """A user name, role or token name is invalid; the message says what would be accepted."""


class UserExistsError(InloopError):
    """A user with that name already exists."""


class NoSuchUserError(AuthError, LookupError):
    """No user has the name given (answered as 404)."""


class TokenExistsError(InloopError):
    """The user already has a live token of that name (answered as 409)."""


class NoSuchTokenError(AuthError, LookupError):
    """The user has no live token of the name given (answered as 404)."""


class LastAdminError(InloopError):
    """The change would leave no enabled admin (answered as 409)."""


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


@dataclass(frozen=True)
class TokenInfo:
    """One API token as admins see it: its name and dates, never the secret."""

    token_id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        """Whether the token still signs in (not revoked; its user may still be disabled)."""
        return self.revoked_at is None


@dataclass(frozen=True)
class UserEvent:
    """One change to a user or their tokens: who did what, when (``web_user_events``)."""

    event_id: int
    at: datetime
    actor: str
    action: str
    user: str
    token_name: str | None
    detail: str | None


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


def _check_name(name: object, what: str, example: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AuthError(
            f"Invalid {what} {quote(name)}: expected {_NAME_RULE}, such as {example!r}."
        )
    return name


def _record(
    conn: Connection,
    actor: str,
    action: str,
    user: str,
    token_name: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one event to ``web_user_events``, in the caller's transaction."""
    conn.execute(
        web_user_events.insert(),
        {
            "at": _now(),
            "actor": actor,
            "action": action,
            "user": user,
            "token_name": token_name,
            "detail": detail,
        },
    )


def _no_user(name: str) -> NoSuchUserError:
    return NoSuchUserError(
        f"No user {name!r:.200}. `inloop users list` (or GET /api/users) lists the users; an "
        "admin creates one with `inloop users create NAME --role ROLE` (POST /api/users)."
    )


def _user_row(conn: Connection, name: str) -> Any:
    row = conn.execute(
        select(web_users.c.name, web_users.c.role, web_users.c.disabled_at).where(
            web_users.c.name == name
        )
    ).first()
    if row is None:
        raise _no_user(name)
    return row


def create_user(
    name: str,
    role: str,
    *,
    created_by: str = "inloop",
    token_name: str = "default",
    engine: Engine | None = None,
) -> str:
    """Create a user with a first API token and return the token (shown only this once).

    Only the token's SHA-256 digest is stored: a lost token cannot be read back,
    only replaced by a new one (:func:`create_token`, :func:`rotate_token`).

    >>> from inloop.store import get_engine
    >>> engine = get_engine("sqlite://")
    >>> len(create_user("doc-bo", "reviewer", engine=engine)) > 40
    True
    """
    _check_name(name, "user name", "ana")
    role = _check_role(role)
    _check_name(token_name, "token name", "laptop")
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
            _insert_token(conn, name, token_name, token)
            _record(conn, created_by, "create", name, token_name, f"role {role}")
    except IntegrityError:
        raise _exists(name) from None
    return token


def _exists(name: str) -> UserExistsError:
    return UserExistsError(
        f"A user named {quote(name)} already exists. Choose another name; an admin can give "
        "the existing user a new token (`inloop users token-create NAME --name NAME`)."
    )


def _insert_token(conn: Connection, user: str, name: str, token: str) -> None:
    conn.execute(
        web_tokens.insert(),
        {"user": user, "name": name, "token_hash": hash_secret(token), "created_at": _now()},
    )


def _live_names(conn: Connection, user: str) -> list[str]:
    return list(
        conn.execute(
            select(web_tokens.c.name)
            .where(web_tokens.c.user == user, web_tokens.c.revoked_at.is_(None))
            .order_by(web_tokens.c.token_id)
        ).scalars()
    )


def create_token(
    user: str, name: str | None = None, *, by: str = "inloop", engine: Engine | None = None
) -> str:
    """Give ``user`` one more API token named ``name`` and return it (shown only this once).

    Names are unique among the user's live tokens (default: ``token-<n>``, the
    first free one); a revoked token's name may be used again.

    >>> from inloop.store import get_engine
    >>> engine = get_engine("sqlite://")
    >>> _ = create_user("doc-cy", "annotator", engine=engine)
    >>> _ = create_token("doc-cy", "laptop", by="doc", engine=engine)
    >>> [t.name for t in list_tokens("doc-cy", engine=engine)]
    ['default', 'laptop']
    """
    return issue_token(user, name, by=by, engine=engine)[1]


def issue_token(
    user: str, name: str | None = None, *, by: str = "inloop", engine: Engine | None = None
) -> tuple[TokenInfo, str]:
    """:func:`create_token`, returning the new token's record with the secret."""
    if name is not None:
        _check_name(name, "token name", "laptop")
    token = secrets.token_urlsafe(32)
    engine = _engine(engine)
    try:
        with begin_write(engine) as conn:
            _user_row(conn, user)
            live = _live_names(conn, user)
            if name is None:
                free = (f"token-{n}" for n in range(1, len(live) + 2))
                name = next(n for n in free if n not in live)
            elif name in live:
                raise _token_exists(user, name)
            _insert_token(conn, user, name, token)
            _record(conn, by, "token-create", user, name)
    except IntegrityError:
        raise _token_exists(user, name or "") from None  # made at the same moment elsewhere
    [info] = [t for t in list_tokens(user, engine=engine) if t.live and t.name == name]
    return info, token


def _token_exists(user: str, name: str) -> TokenExistsError:
    return TokenExistsError(
        f"User {user!r} already has a live token named {name!r}. Choose another name, or "
        f"revoke it first (`inloop users token-revoke {user} {name}`)."
    )


def list_tokens(user: str, *, engine: Engine | None = None) -> list[TokenInfo]:
    """Every token of ``user``, oldest first, live and revoked: names and dates, no secrets."""
    with _engine(engine).connect() as conn:
        _user_row(conn, user)
        rows = conn.execute(
            select(
                web_tokens.c.token_id,
                web_tokens.c.user,
                web_tokens.c.name,
                web_tokens.c.created_at,
                web_tokens.c.last_used_at,
                web_tokens.c.revoked_at,
            )
            .where(web_tokens.c.user == user)
            .order_by(web_tokens.c.token_id)
        ).all()
    return [TokenInfo(*row) for row in rows]


def _revoke(conn: Connection, user: str, name: str) -> int:
    """Revoke ``user``'s live token ``name`` and end its sessions; returns its id."""
    row = conn.execute(
        select(web_tokens.c.token_id).where(
            web_tokens.c.user == user,
            web_tokens.c.name == name,
            web_tokens.c.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        live = _live_names(conn, user)
        raise NoSuchTokenError(
            f"User {user!r} has no live token named {name!r:.200}. Live tokens: "
            f"{', '.join(map(repr, live)) or 'none'} (`inloop users tokens {user}`)."
        )
    conn.execute(
        update(web_tokens).where(web_tokens.c.token_id == row.token_id).values(revoked_at=_now())
    )
    conn.execute(delete(web_sessions).where(web_sessions.c.token_id == row.token_id))
    return int(row.token_id)


def revoke_token(user: str, name: str, *, by: str, engine: Engine | None = None) -> TokenInfo:
    """End ``user``'s live token ``name`` and every browser session opened with it, at once.

    Servers that cache tokens for predictions drop it within
    ``inloop.web.serving.ACCESS_CHECK_SECONDS`` (at once in the server that revoked it).
    """
    with begin_write(_engine(engine)) as conn:
        _user_row(conn, user)
        token_id = _revoke(conn, user, name)
        _record(conn, by, "token-revoke", user, name)
    [info] = [t for t in list_tokens(user, engine=engine) if t.token_id == token_id]
    return info


def rotate_token(
    user: str, name: str | None = None, *, by: str, engine: Engine | None = None
) -> str:
    """Revoke ``user``'s live token ``name`` and issue a new one of that name; returns it.

    Without ``name`` the user must have exactly one live token. The old token's
    sessions end at once. ``rotate_token("admin")`` replaces the admin token
    that the first ``inloop server`` printed.
    """
    token = secrets.token_urlsafe(32)
    with begin_write(_engine(engine)) as conn:
        _user_row(conn, user)
        if name is None:
            live = _live_names(conn, user)
            if len(live) != 1:
                raise AuthError(
                    f"User {quote(user)} has {len(live)} live tokens "
                    f"({', '.join(map(repr, live))}): name the one to rotate."
                    if live
                    else f"User {quote(user)} has no live token to rotate. Make one with "
                    f"`inloop users token-create {user} --name NAME`."
                )
            [name] = live
        _revoke(conn, user, name)
        _insert_token(conn, user, name, token)
        _record(conn, by, "token-rotate", user, name)
    return token


def _enabled_admins(conn: Connection) -> list[str]:
    # Locked on PostgreSQL while counting, so two admins stepping down at once cannot
    # leave none (SQLite's write lock does the same there).
    return list(
        conn.execute(
            select(web_users.c.name)
            .where(web_users.c.role == "admin", web_users.c.disabled_at.is_(None))
            .with_for_update()
        ).scalars()
    )


def _last_admin(name: str, doing: str) -> LastAdminError:
    return LastAdminError(
        f"User {name!r} is the last admin not disabled: {doing} would leave nobody to manage "
        "users. Make another user admin first (`inloop users role NAME admin`)."
    )


def change_role(name: str, role: str, *, by: str, engine: Engine | None = None) -> str:
    """Give user ``name`` the role ``role``; returns the old role. The last admin stays one.

    The new role holds for the user's next request, by token or session alike.
    """
    role = _check_role(role)
    with begin_write(_engine(engine)) as conn:
        old = str(_user_row(conn, name).role)
        if old == "admin" and role != "admin" and _enabled_admins(conn) == [name]:
            raise _last_admin(name, f"giving them the role {role!r}")
        if old != role:
            conn.execute(update(web_users).where(web_users.c.name == name).values(role=role))
            _record(conn, by, "role", name, detail=f"{old} -> {role}")
    return old


def disable_user(name: str, *, by: str, engine: Engine | None = None) -> None:
    """Stop ``name`` from signing in: their tokens stop working and their sessions end at once.

    Their labels and history stay; :func:`enable_user` lets them in again with
    the tokens they had (revoke those separately). The last enabled admin
    cannot be disabled. Disabling a disabled user changes nothing.
    """
    with begin_write(_engine(engine)) as conn:
        row = _user_row(conn, name)
        if row.disabled_at is not None:
            return
        if row.role == "admin" and _enabled_admins(conn) == [name]:
            raise _last_admin(name, "disabling them")
        conn.execute(update(web_users).where(web_users.c.name == name).values(disabled_at=_now()))
        conn.execute(delete(web_sessions).where(web_sessions.c.user == name))
        _record(conn, by, "disable", name)


def enable_user(name: str, *, by: str, engine: Engine | None = None) -> None:
    """Let a disabled user sign in again with their live tokens (no-op if enabled)."""
    with begin_write(_engine(engine)) as conn:
        if _user_row(conn, name).disabled_at is None:
            return
        conn.execute(update(web_users).where(web_users.c.name == name).values(disabled_at=None))
        _record(conn, by, "enable", name)


def user_events(
    user: str | None = None, *, limit: int = 100, engine: Engine | None = None
) -> list[UserEvent]:
    """The newest ``limit`` user-administration events (of ``user`` if given), oldest first."""
    query = select(web_user_events).order_by(web_user_events.c.event_id.desc()).limit(limit)
    if user is not None:
        query = query.where(web_user_events.c.user == user)
    with _engine(engine).connect() as conn:
        rows = conn.execute(query).all()
    return [UserEvent(*row) for row in reversed(rows)]


def access_version(*, engine: Engine | None = None) -> int:
    """A number that rises with every change to users and tokens (0 before any).

    Caches of tokens compare it to drop what they hold when anything changed.
    It counts the events rather than taking the newest id: on PostgreSQL ids
    are handed out before commit, so a change can commit after one with a
    higher id and leave the newest id unchanged. The table holds one row per
    admin action, so counting stays cheap enough to do every second.
    """
    with _engine(engine).connect() as conn:
        found = conn.execute(select(func.count()).select_from(web_user_events)).scalar()
    return int(found or 0)


def get_user(name: str, *, engine: Engine | None = None) -> User | None:
    """The user named ``name``, or None (disabled users too: see :func:`authenticate`)."""
    with _engine(engine).connect() as conn:
        row = conn.execute(
            select(web_users.c.name, web_users.c.role).where(web_users.c.name == name)
        ).first()
    return None if row is None else User(row.name, row.role)


def _authenticate(token: str, engine: Engine) -> tuple[User, int] | None:
    """The enabled user of the live token ``token`` and the token's id, or None."""
    if not token:
        return None
    digest = hash_secret(token)
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
            .where(
                web_tokens.c.token_hash == digest,
                web_tokens.c.revoked_at.is_(None),
                web_users.c.disabled_at.is_(None),
            )
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
    return User(row.name, row.role), int(row.token_id)


def authenticate(token: str, *, engine: Engine | None = None) -> User | None:
    """The user whose live API token ``token`` is, or None (also for a disabled user).

    The token is looked up by its digest, and the digests are compared again in
    constant time.
    """
    found = _authenticate(token, _engine(engine))
    return None if found is None else found[0]


def command_user(
    token: str | None, login: str, *, role: str, doing: str, engine: Engine | None = None
) -> User:
    """Who runs a command that writes to the database directly, if their role allows ``doing``.

    The user of ``token`` (``--token``/``INLOOP_TOKEN``) if given, else the user
    named ``login`` (the OS login). While the database has no users at all
    (no ``inloop server`` has started yet), ``login`` is trusted as an admin.
    This keeps honest people from changes their role does not allow; it is
    not a security boundary: whoever can reach the database can write it.
    """
    engine = _engine(engine)
    if token:
        user = authenticate(token, engine=engine)
        if user is None:
            raise AuthError(
                "The API token (--token or INLOOP_TOKEN) is not valid: unknown, revoked, or "
                "its user is disabled. Ask an admin for a new one."
            )
    elif not has_users(engine=engine):
        return User(login, "admin")
    else:
        with engine.connect() as conn:
            row = conn.execute(
                select(web_users.c.name, web_users.c.role, web_users.c.disabled_at).where(
                    web_users.c.name == login
                )
            ).first()
        if row is None or row.disabled_at is not None:
            why = "there is no user" if row is None else "the user is disabled:"
            raise AuthError(
                f"{doing.capitalize()} needs the role {role!r} or higher, and {why} named "
                f"{login!r} (your login name; INLOOP_USER overrides it). Pass --token (or set "
                "INLOOP_TOKEN) with your API token, or ask an admin to run `inloop users create "
                f"{login} --role {role}`."
            )
        user = User(row.name, row.role)
    if not user.can(role):
        raise AuthError(
            f"{doing.capitalize()} needs the role {role!r} or higher; user {user.name!r} has "
            f"the role {user.role!r}. Ask an admin to change it."
        )
    return user


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


def create_session(user: User, token_id: int, *, engine: Engine | None = None) -> tuple[str, str]:
    """Open a browser session for ``user``, signed in with token ``token_id``.

    Returns (session cookie value, CSRF token). Revoking the token ends the session.
    """
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
                "token_id": token_id,
                "csrf_token": csrf,
                "created_at": now,
                "expires_at": now + timedelta(hours=SESSION_HOURS),
            },
        )
    return session, csrf


def sign_in(token: str, *, engine: Engine | None = None) -> tuple[User, str, str] | None:
    """Open a browser session with an API token: (user, session cookie value, CSRF token).

    None when the token is not live or its user is disabled.
    """
    engine = _engine(engine)
    found = _authenticate(token, engine)
    if found is None:
        return None
    user, token_id = found
    return (user, *create_session(user, token_id, engine=engine))


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
                web_users.c.disabled_at.is_(None),
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
                "The API token is not valid (unknown or revoked, or its user is disabled). Ask "
                "an admin for a new one."
            )
        return Principal(user, "token")
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        from starlette.concurrency import run_in_threadpool

        found = await run_in_threadpool(session_user, session, engine=engine)
        if found is None:
            raise _unauthorized(
                "The session has ended (expired, signed out, its token revoked or its user "
                "disabled). Sign in again at /login."
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
