"""Who runs a command: the inloop user that changes are recorded under, not the OS login.

Commands that change what is served (``inloop serve register``, ``create``,
``set``, ``promote``, ``rollback``) and review decisions (``inloop label
decide``) act as an inloop user: the owner of ``--token`` (or
``INLOOP_TOKEN``), else the user named like the login (``INLOOP_USER`` when
set, else the OS login). While the database has no users at all (no ``inloop
server`` has started yet), the login name is trusted as an admin.

The CLI writes to the database itself, so this check keeps honest people from
changes their role does not allow; it is not a security boundary (whoever can
reach the database can write its tables). The boundary is the server's API,
which takes tokens only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from inloop.web.auth import User

__all__ = ["CREATE_USER", "TOKEN_OPTION", "acting_user"]

#: The command an admin runs to give a login name an inloop user.
CREATE_USER = "inloop users create {name} --role {role}"

TOKEN_OPTION = typer.Option(
    None, "--token", help="Your API token (default: INLOOP_TOKEN; else your login name's user)."
)


def _roles_from(role: str) -> str:
    from inloop.web.auth import ROLES

    allowed = list(ROLES[ROLES.index(role) :])
    return allowed[0] if len(allowed) == 1 else ", ".join(allowed[:-1]) + " or " + allowed[-1]


def acting_user(token: str | None, action: str, role: str = "scientist") -> User:
    """The inloop user a command acts as, who must have ``role`` or a more trusted one.

    ``action`` names what is being done, for the messages (``"promotion"``).
    Raises :class:`~inloop.web.auth.AuthError` saying how to get a user or a
    token when there is none, and which role is missing.
    """
    from inloop.flow.user import get_username
    from inloop.store.db import get_engine
    from inloop.web.auth import AuthError, User, authenticate, get_user, has_users

    engine = get_engine()
    roles = _roles_from(role)
    token = token or os.environ.get("INLOOP_TOKEN")
    if token:
        user = authenticate(token, engine=engine)
        if user is None:
            raise AuthError(
                "The API token (--token or INLOOP_TOKEN) is not valid: unknown or revoked. "
                "Ask an admin for a new one."
            )
    else:
        name = get_username()
        if not has_users(engine=engine):
            return User(name, "admin")
        found = get_user(name, engine=engine)
        if found is None:
            raise AuthError(
                f"{action.capitalize()} needs an inloop user with the {roles} role, and there "
                f"is no user named {name!r} (your login name; INLOOP_USER overrides it). An "
                f"admin creates one with `{CREATE_USER.format(name=name, role=role)}`; or pass "
                "--token (or set INLOOP_TOKEN) with your API token."
            )
        user = found
    if not user.can(role):
        raise AuthError(
            f"{action.capitalize()} needs the {roles} role; user {user.name!r} has the role "
            f"{user.role!r}. Ask an admin to change it."
        )
    return user
