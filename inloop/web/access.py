"""Who may work in which labeling project, and user administration.

Annotators and reviewers see and work only in the projects they are members of;
scientists and admins see every project. A project a caller may not see is
answered exactly like a project that does not exist (404, same message), so
project names do not leak to people outside them.

Routes (included under ``/api`` by :mod:`inloop.web.api`; the user and token
functions they call are in :mod:`inloop.web.auth`):

- ``GET /api/users`` (admin): every user with their role, projects and whether disabled
- ``PATCH /api/users/{name}`` (admin) ``{"role"}``: the last admin cannot be demoted (409)
- ``POST /api/users/{name}/disable`` and ``/enable`` (admin): a disabled user's
  tokens stop working and their sessions end at once
- ``GET /api/users/{name}/tokens`` (admin): names and dates, never the secrets
- ``POST /api/users/{name}/tokens`` (admin) ``{"name"}``: a new token, shown once
- ``DELETE /api/users/{name}/tokens/{token}`` (admin): revoke it; its sessions end
- ``POST /api/users/{name}/tokens/{token}/rotate`` (admin): revoke it and issue a new
  one of the same name
- ``GET /api/user-events?user=`` (admin): who changed which user or token, when
- ``POST /api/projects/{name}/members`` (scientist+) ``{"user"}``
- ``DELETE /api/projects/{name}/members/{user}`` (scientist+)

>>> from inloop.store import get_engine
>>> from inloop.label import create_project
>>> from inloop.web.auth import create_user
>>> engine = get_engine("sqlite://")
>>> _ = create_project("access-doc", ["a", "b"], engine=engine)
>>> _ = create_user("doc-ann", "annotator", engine=engine)
>>> is_member("access-doc", "doc-ann", engine=engine)
False
>>> _ = add_member("access-doc", "doc-ann", added_by="doc", engine=engine)
>>> is_member("access-doc", "doc-ann", engine=engine)
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from inloop.errors import InloopError, quote
from inloop.label.projects import Project, get_project, list_projects
from inloop.label.tables import label_projects
from inloop.store.db import begin_write
from inloop.web.auth import (
    LastAdminError,
    NoSuchUserError,
    Principal,
    TokenInfo,
    User,
    UserEvent,
    change_role,
    disable_user,
    enable_user,
    get_user,
    issue_token,
    list_tokens,
    request_engine,
    require,
    revoke_token,
    rotate_token,
    user_events,
)
from inloop.web.tables import ROLES, web_project_members, web_users

__all__ = [
    "AccessError",
    "LastAdminError",
    "MemberRequest",
    "Membership",
    "NoSuchUserError",
    "RoleRequest",
    "TokenRequest",
    "UserInfo",
    "add_member",
    "can_see_all",
    "is_member",
    "list_users",
    "may_see",
    "not_visible",
    "remove_member",
    "require_project_access",
    "router",
    "set_role",
    "user_info",
    "visible_projects",
]

#: The least role that sees every project without being a member.
SEES_ALL = "scientist"


class AccessError(InloopError, ValueError):
    """A membership or role change got a value it cannot accept (answered as 400)."""


# NoSuchUserError (no user or no membership: 404) and LastAdminError (409) come from
# inloop.web.auth, which owns users, and are exported here too.


@dataclass(frozen=True)
class Membership:
    """One user's membership of one project."""

    project: str
    user: str
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class UserInfo:
    """A user as admins see them: role, since when, their projects, and since when disabled."""

    name: str
    role: str
    created_at: datetime
    projects: tuple[str, ...]
    disabled_at: datetime | None = None


def can_see_all(user: User) -> bool:
    """Whether ``user`` sees every project (scientist or admin) without memberships."""
    return user.can(SEES_ALL)


def _project_id(conn: Any, project: str) -> int | None:
    row = conn.execute(
        select(label_projects.c.project_id).where(label_projects.c.name == project)
    ).first()
    return None if row is None else int(row.project_id)


def is_member(project: str, user: str, *, engine: Engine) -> bool:
    """Whether ``user`` is a member of the project named ``project`` (False if either is missing).

    Roles are not considered here: see :func:`can_see_all`.
    """
    with engine.connect() as conn:
        row = conn.execute(
            select(web_project_members.c.user)
            .join(label_projects, label_projects.c.project_id == web_project_members.c.project_id)
            .where(label_projects.c.name == project, web_project_members.c.user == user)
        ).first()
    return row is not None


def _no_user(name: str) -> NoSuchUserError:
    return NoSuchUserError(
        f"No user {quote(name)}. GET /api/users lists the users; an admin creates one with "
        "POST /api/users."
    )


def add_member(
    project: str, user: str, *, added_by: str, engine: Engine
) -> tuple[Membership, bool]:
    """Make ``user`` a member of ``project``; returns the membership and whether it is new.

    Adding a member twice keeps the first membership. A missing project raises
    :class:`~inloop.label.projects.LabelNotFoundError`, a missing user
    :class:`NoSuchUserError`.
    """
    found = get_project(project, engine=engine)  # LabelNotFoundError names the known ones
    for _attempt in range(2):
        try:
            with begin_write(engine) as conn:
                known = select(web_users.c.name).where(web_users.c.name == user)
                if conn.execute(known).first() is None:
                    raise _no_user(user)
                row = conn.execute(
                    select(web_project_members.c.added_at, web_project_members.c.added_by).where(
                        web_project_members.c.project_id == found.project_id,
                        web_project_members.c.user == user,
                    )
                ).first()
                if row is not None:
                    return Membership(found.name, user, row.added_at, row.added_by), False
                now = datetime.now(UTC)
                conn.execute(
                    web_project_members.insert(),
                    {
                        "project_id": found.project_id,
                        "user": user,
                        "added_at": now,
                        "added_by": added_by,
                    },
                )
            return Membership(found.name, user, now, added_by), True
        except IntegrityError:
            continue  # added at the same moment by someone else: read theirs
    raise AccessError(f"Could not add user {quote(user)} to project {quote(project)}; try again.")


def remove_member(project: str, user: str, *, engine: Engine) -> None:
    """End ``user``'s membership of ``project``; :class:`NoSuchUserError` if there is none.

    Their labels stay; leases they hold expire as usual.
    """
    found = get_project(project, engine=engine)
    with begin_write(engine) as conn:
        gone = conn.execute(
            delete(web_project_members).where(
                web_project_members.c.project_id == found.project_id,
                web_project_members.c.user == user,
            )
        ).rowcount
    if not gone:
        raise NoSuchUserError(
            f"User {quote(user)} is not a member of project {found.name!r}, so there is nothing to "
            "remove. GET /api/users lists each user's projects."
        )


def visible_projects(user: User, *, engine: Engine) -> list[Project]:
    """The projects ``user`` may see, by name: all for scientists and admins, else theirs."""
    projects = list_projects(engine=engine)
    if can_see_all(user):
        return projects
    with engine.connect() as conn:
        mine = set(
            conn.execute(
                select(web_project_members.c.project_id).where(
                    web_project_members.c.user == user.name
                )
            ).scalars()
        )
    return [p for p in projects if p.project_id in mine]


def may_see(user: User, project: str, *, engine: Engine) -> bool:
    """Whether ``user`` may see the project named ``project`` (which may not exist)."""
    return can_see_all(user) or is_member(project, user.name, engine=engine)


def not_visible(project: str, user: str) -> str:
    """The 404 message for a project the caller may not see or that does not exist.

    Deliberately the same for both, and without listing other projects, so that
    someone outside a project cannot learn its name.
    """
    return (
        f"No labeling project {quote(project)} among the projects user {quote(user)} may see. "
        "GET /api/projects lists them; a scientist can add you to a project "
        f"(POST /api/projects/{{name}}/members)."
    )


def require_project_access(role: str = "annotator") -> Callable[..., Principal]:
    """A dependency for ``/api/projects/{name}/...`` routes: role ``role`` or higher
    (else 403, checked first and the same for every project) and membership of the
    project unless scientist or admin (else 404, the same answer as for a missing
    project).

    >>> dependency = require_project_access("reviewer")
    """
    role_check = Depends(require(role))

    # A default, not Annotated[...]: string annotations are resolved in the module's
    # globals, where this closure's role check is not.
    def dependency(
        name: str,
        engine: Annotated[Engine, Depends(request_engine)],
        principal: Principal = role_check,
    ) -> Principal:
        if not may_see(principal.user, name, engine=engine):
            # 404, not 403: a project you are not in looks like one that does not exist.
            raise HTTPException(404, not_visible(name, principal.name))
        return principal

    return dependency


def list_users(*, engine: Engine) -> list[UserInfo]:
    """Every user by name, with their role and the projects they are members of."""
    with engine.connect() as conn:
        users = conn.execute(
            select(
                web_users.c.name,
                web_users.c.role,
                web_users.c.created_at,
                web_users.c.disabled_at,
            ).order_by(web_users.c.name)
        ).all()
        rows = conn.execute(
            select(web_project_members.c.user, label_projects.c.name)
            .join(label_projects, label_projects.c.project_id == web_project_members.c.project_id)
            .order_by(label_projects.c.name)
        ).all()
    projects: dict[str, list[str]] = {}
    for user, project in rows:
        projects.setdefault(user, []).append(project)
    return [
        UserInfo(u.name, u.role, u.created_at, tuple(projects.get(u.name, ())), u.disabled_at)
        for u in users
    ]


def user_info(name: str, *, engine: Engine) -> UserInfo:
    """One user as :func:`list_users` shows them; :class:`NoSuchUserError` if missing."""
    for info in list_users(engine=engine):
        if info.name == name:
            return info
    raise _no_user(name)


def set_role(name: str, role: str, *, by: str = "inloop", engine: Engine) -> UserInfo:
    """Give user ``name`` the role ``role`` (recorded as done ``by``); the last admin stays one.

    See :func:`inloop.web.auth.change_role`.
    """
    if role not in ROLES:
        raise AccessError(f"Invalid role {quote(role)}: expected one of {list(ROLES)}.")
    change_role(name, role, by=by, engine=engine)
    return user_info(name, engine=engine)


# --- routes ---------------------------------------------------------------------------------

router = APIRouter(tags=["access"])

DB = Annotated[Engine, Depends(request_engine)]
Admin = Annotated[Principal, Depends(require("admin"))]
Scientist = Annotated[Principal, Depends(require("scientist"))]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleRequest(_Request):
    """``PATCH /api/users/{name}``."""

    role: Literal["annotator", "reviewer", "scientist", "admin"]


class MemberRequest(_Request):
    """``POST /api/projects/{name}/members``."""

    user: str


class TokenRequest(_Request):
    """``POST /api/users/{name}/tokens``: the new token's name (default ``token-<n>``)."""

    name: str | None = Field(default=None, max_length=255, examples=["laptop"])


class UserRow(BaseModel):
    name: str
    role: str
    created_at: datetime
    projects: list[str]
    disabled_at: datetime | None


class TokenRow(BaseModel):
    """A token as admins see it: never the secret."""

    id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(BaseModel):
    """A new token: the secret is shown this once and stored hashed."""

    user: str
    name: str
    token: str


class EventRow(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    user: str
    token_name: str | None
    detail: str | None


class MemberOut(BaseModel):
    project: str
    user: str
    added_at: datetime
    added_by: str


def _user_out(info: UserInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "role": info.role,
        "created_at": info.created_at,
        "projects": list(info.projects),
        "disabled_at": info.disabled_at,
    }


def _token_out(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.token_id,
        "user": info.user,
        "name": info.name,
        "created_at": info.created_at,
        "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at,
    }


def _event_out(event: UserEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "user": event.user,
        "token_name": event.token_name,
        "detail": event.detail,
    }


def _forget_tokens(request: Request) -> None:
    """Drop the serving routes' cached tokens, so a change made here holds at once.

    Other processes see it within ``inloop.web.serving.ACCESS_CHECK_SECONDS``.
    """
    cache = getattr(request.app.state, "serving_tokens", None)
    if cache is not None:
        cache.clear()


@router.get("/users", response_model=list[UserRow])
def get_users(caller: Admin, db: DB) -> list[dict[str, Any]]:
    """Every user with their role and the projects they are members of (admin)."""
    return [_user_out(u) for u in list_users(engine=db)]


@router.patch("/users/{name}", response_model=UserRow)
def patch_user(
    name: str, body: RoleRequest, caller: Admin, db: DB, request: Request
) -> dict[str, Any]:
    """Change a user's role (admin); the last admin cannot be demoted (409)."""
    info = set_role(name, body.role, by=caller.name, engine=db)
    _forget_tokens(request)
    return _user_out(info)


@router.post("/users/{name}/disable", response_model=UserRow)
def post_disable(name: str, caller: Admin, db: DB, request: Request) -> dict[str, Any]:
    """Disable a user (admin): their tokens stop working and their sessions end at once."""
    disable_user(name, by=caller.name, engine=db)
    _forget_tokens(request)
    return _user_out(user_info(name, engine=db))


@router.post("/users/{name}/enable", response_model=UserRow)
def post_enable(name: str, caller: Admin, db: DB) -> dict[str, Any]:
    """Let a disabled user sign in again with their live tokens (admin)."""
    enable_user(name, by=caller.name, engine=db)
    return _user_out(user_info(name, engine=db))


@router.get("/users/{name}/tokens", response_model=list[TokenRow])
def get_tokens(name: str, caller: Admin, db: DB) -> list[dict[str, Any]]:
    """A user's tokens, oldest first, live and revoked: names and dates, never secrets (admin)."""
    return [_token_out(t) for t in list_tokens(name, engine=db)]


@router.post("/users/{name}/tokens", status_code=201, response_model=TokenCreated)
def post_token(name: str, body: TokenRequest, caller: Admin, db: DB) -> dict[str, str]:
    """Issue one more named token to a user (admin); the answer holds it, shown only once."""
    made, token = issue_token(name, body.name, by=caller.name, engine=db)
    return {"user": name, "name": made.name, "token": token}


@router.delete("/users/{name}/tokens/{token}", response_model=TokenRow)
def delete_token(name: str, token: str, caller: Admin, db: DB, request: Request) -> dict[str, Any]:
    """Revoke a user's live token by its name (admin); sessions opened with it end at once."""
    info = revoke_token(name, token, by=caller.name, engine=db)
    _forget_tokens(request)
    return _token_out(info)


@router.post("/users/{name}/tokens/{token}/rotate", status_code=201, response_model=TokenCreated)
def post_rotate(name: str, token: str, caller: Admin, db: DB, request: Request) -> dict[str, str]:
    """Revoke a user's live token and issue a new one of the same name (admin)."""
    secret = rotate_token(name, token, by=caller.name, engine=db)
    _forget_tokens(request)
    return {"user": name, "name": token, "token": secret}


@router.get("/user-events", response_model=list[EventRow])
def get_user_events(
    caller: Admin,
    db: DB,
    user: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    """Who created, disabled, enabled or changed which user or token, and when (admin)."""
    return [_event_out(e) for e in user_events(user, limit=limit, engine=db)]


@router.post("/projects/{name}/members", status_code=201, response_model=MemberOut)
def post_member(
    name: str, body: MemberRequest, caller: Scientist, db: DB, response: Response
) -> dict[str, Any]:
    """Make a user a member of the project (scientist+); 200 if they already are."""
    member, new = add_member(name, body.user, added_by=caller.name, engine=db)
    if not new:
        response.status_code = 200
    return {
        "project": member.project,
        "user": member.user,
        "added_at": member.added_at,
        "added_by": member.added_by,
    }


@router.delete("/projects/{name}/members/{user}", status_code=204)
def delete_member(name: str, user: str, caller: Scientist, db: DB) -> Response:
    """End a user's membership of the project (scientist+); their labels stay."""
    if get_user(user, engine=db) is None:
        raise _no_user(user)
    remove_member(name, user, engine=db)
    return Response(status_code=204)
