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

__all__ = ["TOKEN_OPTION", "acting_user"]

TOKEN_OPTION = typer.Option(
    None, "--token", help="Your API token (default: INLOOP_TOKEN; else your login name's user)."
)


def acting_user(token: str | None, action: str, role: str = "scientist") -> User:
    """The inloop user a command acts as, who must have ``role`` or a more trusted one.

    ``action`` names what is being done, for the messages (``"promotion"``).
    Raises :class:`~inloop.web.auth.AuthError` saying how to get a user or a
    token when there is none, and which role is missing; a disabled user is
    refused like a missing one (see :func:`inloop.web.auth.command_user`).
    """
    from inloop.flow.user import get_username
    from inloop.store.db import get_engine
    from inloop.web.auth import command_user

    return command_user(
        token or os.environ.get("INLOOP_TOKEN"),
        get_username(),
        role=role,
        doing=action,
        engine=get_engine(),
    )
