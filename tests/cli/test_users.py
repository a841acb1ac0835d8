"""``inloop users``: users, roles and tokens from the command line, on the test's database."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from inloop.web.auth import authenticate, list_tokens, user_events


def _runner(login: str = "ana", **env: str) -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": login, **env})


def _invoke(args: list[str], login: str = "ana", **env: str) -> tuple[int, str, str]:
    from inloop.cli.main import app

    result = _runner(login, **env).invoke(app, ["users", *args])
    return result.exit_code, result.stdout, result.stderr


def test_users_and_tokens_from_the_command_line(db_url: str) -> None:
    # No users yet: the login (INLOOP_USER) is trusted, as when the database is new.
    code, out, err = _invoke(["create", "root", "--role", "admin"])
    assert code == 0, err
    root = out.strip()
    assert len(root) > 40 and "\n" not in root, "the token alone on stdout"
    assert "shown only this once" in err and "'root'" in err

    # Now there are users, and 'ana' is none of them.
    code, _out, err = _invoke(["create", "bob", "--role", "annotator"])
    assert code == 1
    assert "no user named 'ana'" in err and "--token" in err and "inloop users create ana" in err
    code, out, err = _invoke(["create", "bob", "--role", "annotator", "--token", root])
    assert code == 0, err
    bob = out.strip()
    code, out, err = _invoke(["token-create", "bob", "--name", "laptop"], INLOOP_TOKEN=root)
    assert code == 0, err
    laptop = out.strip()
    assert authenticate(laptop) is not None and "'laptop'" in err

    code, out, _err = _invoke(["tokens", "bob"], login="root")
    assert code == 0 and "default" in out and "laptop" in out
    assert bob not in out and laptop not in out, "never the secrets"
    code, out, _err = _invoke(["list"], login="root")
    assert "bob" in out and "annotator" in out and "enabled" in out

    # A non-admin may not manage users.
    code, _out, err = _invoke(["list", "--token", bob])
    assert code == 1 and "needs the role 'admin' or higher; user 'bob'" in err

    assert _invoke(["token-revoke", "bob", "laptop"], login="root")[0] == 0
    assert authenticate(laptop) is None and authenticate(bob) is not None
    code, _out, err = _invoke(["token-revoke", "bob", "laptop"], login="root")
    assert code == 1 and "no live token named 'laptop'" in err and "'default'" in err

    code, out, err = _invoke(["token-rotate", "bob"], login="root")
    assert code == 0, err
    new = out.strip()
    assert authenticate(bob) is None and authenticate(new) is not None
    assert [(t.name, t.live) for t in list_tokens("bob")][-1] == ("default", True)

    assert _invoke(["role", "bob", "reviewer"], login="root")[0] == 0
    assert _invoke(["disable", "bob"], login="root")[0] == 0
    assert authenticate(new) is None
    code, out, _err = _invoke(["list"], login="root")
    assert "disabled" in out
    assert _invoke(["enable", "bob"], login="root")[0] == 0
    assert authenticate(new) is not None

    code, out, _err = _invoke(["history", "bob"], login="root")
    assert code == 0
    for action in ("create", "token-create", "token-revoke", "token-rotate", "role", "disable"):
        assert action in out
    assert {e.actor for e in user_events("bob")} == {"root"}


def test_user_errors_are_one_line(db_url: str) -> None:
    assert _invoke(["create", "root", "--role", "admin"])[0] == 0
    code, _out, err = _invoke(["disable", "zed"], login="root")
    assert code == 1 and "No user 'zed'" in err and "Traceback" not in err
    code, _out, err = _invoke(["disable", "root"], login="root")
    assert code == 1 and "last admin" in err
    code, _out, err = _invoke(["create", "x", "--role", "boss"], login="root")
    assert code == 1 and "Invalid role 'boss'" in err
    code, _out, err = _invoke(["list", "--token", "nope"])
    assert code == 1 and "not valid" in err


@pytest.mark.parametrize("command", ["list", "create", "disable", "tokens", "token-rotate"])
def test_every_command_has_help(command: str) -> None:
    from inloop.cli.main import app

    result = _runner().invoke(app, ["users", command, "--help"])
    assert result.exit_code == 0 and "--token" in result.stdout
