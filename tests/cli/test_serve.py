"""``inloop serve list|show|promote|rollback`` on the database of the test's INLOOP_HOME."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from inloop.cli.main import app
from inloop.serve import MajorityClass, create_service, current_policy, register
from inloop.web.auth import create_user


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": "ana"})


@pytest.fixture
def service(db_url: str) -> list[str]:
    refs = [register(MajorityClass(["a", "b"], [n, 1]), name="m").ref for n in (1, 2, 3)]
    create_service(
        "svc", {"champion": refs[0], "fallback": {"label": "a"}}, created_by="ana", reason="launch"
    )
    return refs


def test_promote_rollback_list_and_show(runner: CliRunner, service: list[str]) -> None:
    out = runner.invoke(app, ["serve", "promote", "svc", service[1], "--reason", "better F1"])
    assert out.exit_code == 0, out.output
    assert "revision 2 by ana" in out.output and f"champion {service[1]}" in out.output
    assert current_policy("svc").policy.champion == service[1]

    out = runner.invoke(app, ["serve", "rollback", "svc", "--reason", "p99 regressed"])
    assert out.exit_code == 0, out.output
    assert "rolled back to revision 1" in out.output
    assert current_policy("svc").policy.champion == service[0]

    out = runner.invoke(app, ["serve", "rollback", "svc", "--to", "2", "--reason", "again"])
    assert out.exit_code == 0 and current_policy("svc").policy.champion == service[1]

    listed = runner.invoke(app, ["serve", "list"])
    assert "svc" in listed.output and service[1] in listed.output and " 4 " in listed.output
    shown = runner.invoke(app, ["serve", "show", "svc", "--json"])
    history = json.loads(shown.output)
    assert [(r["action"], r["created_by"], r["reason"]) for r in history] == [
        ("create", "ana", "launch"),
        ("promote", "ana", "better F1"),
        ("rollback", "ana", "p99 regressed"),
        ("rollback", "ana", "again"),
    ]
    assert history[3]["restored_revision"] == 2
    table = runner.invoke(app, ["serve", "show", "svc"])
    assert "rollback to 2" in table.output and "p99 regressed" in table.output


def test_promotion_needs_a_scientist_once_there_are_users(
    runner: CliRunner, service: list[str]
) -> None:
    create_user("admin", "admin")
    out = runner.invoke(app, ["serve", "promote", "svc", service[1], "--reason", "x"])
    assert out.exit_code == 1 and "no user named 'ana'" in out.output
    assert "`inloop users create ana --role scientist`" in out.output
    annotator = create_user("ana", "annotator")
    out = runner.invoke(app, ["serve", "promote", "svc", service[1], "--reason", "x"])
    assert out.exit_code == 1 and "has the role 'annotator'" in out.output
    out = runner.invoke(
        app, ["serve", "promote", "svc", service[1], "--reason", "x", "--token", "nope"]
    )
    assert out.exit_code == 1 and "not valid" in out.output
    sci = create_user("sci", "scientist")
    out = runner.invoke(
        app, ["serve", "promote", "svc", service[1], "--reason", "x"], env={"INLOOP_TOKEN": sci}
    )
    assert out.exit_code == 0 and "by sci" in out.output
    assert current_policy("svc").created_by == "sci"
    assert annotator  # the annotator's token exists but does not help
    assert current_policy("svc").revision == 2  # the refused attempts changed nothing


def test_user_errors_are_one_line(runner: CliRunner, service: list[str]) -> None:
    out = runner.invoke(app, ["serve", "promote", "svc", "m", "--reason", "x"])
    assert out.exit_code == 1 and "name@N" in out.output
    out = runner.invoke(app, ["serve", "promote", "nope", service[1], "--reason", "x"])
    assert out.exit_code == 1 and "No service 'nope'" in out.output
    out = runner.invoke(app, ["serve", "rollback", "svc", "--reason", "x"])
    assert out.exit_code == 1 and "no earlier revision" in out.output
    out = runner.invoke(app, ["serve", "promote", "svc", service[0], "--reason", "x"])
    assert out.exit_code == 1 and "already the champion" in out.output
    assert "Traceback" not in out.output


def test_show_masks_webhook_secrets(runner: CliRunner, service: list[str]) -> None:
    from inloop.serve import set_policy

    hook = {
        "name": "ops",
        "url": "https://hooks.example.com/T1/s3cr3t?k=v",
        "headers": {"X-Key": "k3y"},
    }
    set_policy(
        "svc",
        {"champion": service[0], "fallback": {"label": "a"}, "actions": [hook]},
        by="ana",
        reason="alerts",
    )
    for args in (["serve", "show", "svc", "--json"], ["serve", "show", "svc"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        assert "s3cr3t" not in out.output and "k3y" not in out.output
    (action,) = json.loads(runner.invoke(app, ["serve", "show", "svc", "--json"]).output)[1][
        "policy"
    ]["actions"]
    assert action["url"] == "https://hooks.example.com/***" and action["headers"] == {
        "X-Key": "***"
    }


INLOOP = [sys.executable, "-c", "from inloop.cli.main import main; main()"]


def test_an_os_login_without_an_inloop_user_is_told_how_to_get_one(service: list[str]) -> None:
    create_user("admin", "admin")
    env = {k: v for k, v in os.environ.items() if k not in ("INLOOP_USER", "USERNAME")}
    done = subprocess.run(
        [*INLOOP, "serve", "promote", "svc", service[1], "--reason", "better"],
        env={**env, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    login = getpass.getuser()
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()  # one red line, not folded at 80 columns
    assert f"there is no user named {login!r} (your login name" in line
    assert f"`inloop users create {login} --role scientist`" in line
    assert "--token (or set INLOOP_TOKEN)" in line
    assert current_policy("svc").revision == 1
