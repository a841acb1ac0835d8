"""The ``inloop users`` commands: users, their roles and their API tokens.

Registered on the root command as ``inloop users``::

    inloop users list
    inloop users create ana --role annotator       # prints ana's first token, once
    inloop users role ana reviewer
    inloop users disable ana                       # her tokens stop, her sessions end
    inloop users enable ana
    inloop users tokens ana                        # names and dates, never the secrets
    inloop users token-create ana --name laptop    # prints the new token, once
    inloop users token-revoke ana laptop           # its sessions end at once
    inloop users token-rotate admin                # a new admin token; the old one ends
    inloop users history ana                       # who changed what, when

Every command needs the admin role: by ``--token`` (or ``INLOOP_TOKEN``), else
the inloop user named like your login. While the database has no users yet,
your login counts as an admin. The commands write to the database directly;
a running server sees a revocation within a second.

A new token is printed alone on standard output (the words around it go to
standard error), so ``TOKEN=$(inloop users token-create ana --name ci)`` works.
"""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from inloop.web.auth import User

app = typer.Typer(
    help="Users, roles and API tokens (admin): create, disable, issue and revoke tokens.",
    no_args_is_help=True,
)

_TOKEN = typer.Option(
    None,
    "--token",
    help="Your API token (default: INLOOP_TOKEN; else the user named like your login).",
)
_ROLES = "annotator, reviewer, scientist or admin"


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports this module to register ``app``."""
    from inloop.cli import main

    return main


def _admin(token: str | None) -> User:
    """The admin running the command (see :func:`inloop.cli.identity.acting_user`)."""
    from inloop.cli.identity import acting_user

    return acting_user(token, "managing users", role="admin")


def _when(value: datetime | None) -> str:
    return "" if value is None else _cli()._format_time(value)


def _say(message: str) -> None:
    _cli()._stderr().print(escape(message), soft_wrap=True)


def _print_secret(token: str, what: str) -> None:
    _say(f"{what} Its API token, shown only this once (stored hashed):")
    typer.echo(token)


@app.command("list")
def list_cmd(token: str | None = _TOKEN) -> None:
    """List the users: role, projects, created, disabled."""
    from inloop.store.db import get_engine
    from inloop.web.access import list_users

    with _cli().user_errors():
        _admin(token)
        users = list_users(engine=get_engine())
    table = Table("user", "role", "status", "projects", "created")
    for user in users:
        status = "enabled" if user.disabled_at is None else f"disabled {_when(user.disabled_at)}"
        table.add_row(
            user.name, user.role, status, ", ".join(user.projects), _when(user.created_at)
        )
    _cli()._stdout().print(table)


@app.command("create")
def create_cmd(
    name: str = typer.Argument(..., help="The new user's name, e.g. ana."),
    role: str = typer.Option(..., "--role", help=f"The role: {_ROLES}."),
    token_name: str = typer.Option("default", "--token-name", help="Name of the first token."),
    token: str | None = _TOKEN,
) -> None:
    """Create a user and print their first API token."""
    from inloop.web.auth import create_user

    with _cli().user_errors():
        admin = _admin(token)
        secret = create_user(name, role, created_by=admin.name, token_name=token_name)
    _print_secret(secret, f"Created user {name!r} (role {role}) with token {token_name!r}.")


@app.command("role")
def role_cmd(
    name: str = typer.Argument(..., help="The user."),
    role: str = typer.Argument(..., help=f"The new role: {_ROLES}."),
    token: str | None = _TOKEN,
) -> None:
    """Change a user's role (the last admin stays one)."""
    from inloop.web.auth import change_role

    with _cli().user_errors():
        admin = _admin(token)
        old = change_role(name, role, by=admin.name)
    _say(f"User {name!r}: role {old} -> {role}.")


@app.command("disable")
def disable_cmd(
    name: str = typer.Argument(..., help="The user."), token: str | None = _TOKEN
) -> None:
    """Disable a user: their tokens stop working and their browser sessions end."""
    from inloop.web.auth import disable_user

    with _cli().user_errors():
        admin = _admin(token)
        disable_user(name, by=admin.name)
    _say(
        f"Disabled user {name!r}: their sessions ended; their tokens stop working at once "
        "(on the serving routes of a running server within a second)."
    )


@app.command("enable")
def enable_cmd(
    name: str = typer.Argument(..., help="The user."), token: str | None = _TOKEN
) -> None:
    """Let a disabled user sign in again with their live tokens."""
    from inloop.web.auth import enable_user

    with _cli().user_errors():
        admin = _admin(token)
        enable_user(name, by=admin.name)
    _say(f"Enabled user {name!r}.")


@app.command("tokens")
def tokens_cmd(
    name: str = typer.Argument(..., help="The user."), token: str | None = _TOKEN
) -> None:
    """List a user's tokens: name, created, last used, revoked (never the secrets)."""
    from inloop.web.auth import list_tokens

    with _cli().user_errors():
        _admin(token)
        tokens = list_tokens(name)
    table = Table("token", "created", "last used", "revoked", title=f"Tokens of {name}")
    for info in tokens:
        table.add_row(
            info.name, _when(info.created_at), _when(info.last_used_at), _when(info.revoked_at)
        )
    _cli()._stdout().print(table)


@app.command("token-create")
def token_create_cmd(
    name: str = typer.Argument(..., help="The user."),
    token_name: str | None = typer.Option(
        None, "--name", help="The token's name, e.g. laptop (default: token-<n>)."
    ),
    token: str | None = _TOKEN,
) -> None:
    """Issue one more named API token to a user and print it."""
    from inloop.web.auth import issue_token

    with _cli().user_errors():
        admin = _admin(token)
        info, secret = issue_token(name, token_name, by=admin.name)
    _print_secret(secret, f"New token {info.name!r} of user {name!r}.")


@app.command("token-revoke")
def token_revoke_cmd(
    name: str = typer.Argument(..., help="The user."),
    token_name: str = typer.Argument(..., help="The token's name (see `inloop users tokens`)."),
    token: str | None = _TOKEN,
) -> None:
    """Revoke one of a user's tokens; the sessions opened with it end at once."""
    from inloop.web.auth import revoke_token

    with _cli().user_errors():
        admin = _admin(token)
        revoke_token(name, token_name, by=admin.name)
    _say(
        f"Revoked token {token_name!r} of user {name!r}; its sessions ended (a running "
        "server's serving routes refuse it within a second)."
    )


@app.command("token-rotate")
def token_rotate_cmd(
    name: str = typer.Argument(..., help="The user, e.g. admin."),
    token_name: str | None = typer.Argument(
        None, help="The token to replace (default: the user's only live token)."
    ),
    token: str | None = _TOKEN,
) -> None:
    """Replace a token with a new one of the same name; the old one ends at once."""
    from inloop.web.auth import rotate_token

    with _cli().user_errors():
        admin = _admin(token)
        secret = rotate_token(name, token_name, by=admin.name)
    which = f"{token_name!r}" if token_name else "the only token"
    _print_secret(secret, f"Rotated {which} of user {name!r}: the old token no longer works.")


@app.command("history")
def history_cmd(
    name: str | None = typer.Argument(None, help="Only this user's events."),
    limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many, newest."),
    token: str | None = _TOKEN,
) -> None:
    """Who created, disabled, enabled or changed which user or token, and when."""
    from inloop.web.auth import user_events

    with _cli().user_errors():
        _admin(token)
        events = user_events(name, limit=limit)
    table = Table("when", "by", "action", "user", "token", "detail")
    for event in events:
        table.add_row(
            _when(event.at),
            event.actor,
            event.action,
            event.user,
            event.token_name or "",
            event.detail or "",
        )
    if not events:
        _say("No user changes recorded yet." if name is None else f"No changes to {name!r} yet.")
        return
    _cli()._stdout().print(table)
