"""``inloop serve create|set``: services from policy files, policy changes as revisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inloop.cli.main import app
from inloop.serve import MajorityClass, current_policy, list_services, policy_history, register
from inloop.web.auth import create_user

POLICY = """\
champion: m@2
challengers: [m@3]
fallback: base@1
schedule: {deadline_ms: 50}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": "ana"})


@pytest.fixture
def policy_file(db_url: str, tmp_path: Path) -> Path:
    for n in (1, 2, 3):
        register(MajorityClass(["a", "b"], [n, 1]), name="m")
    register(MajorityClass(["a", "b"], [1, 1]), name="base")
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_create_from_yaml_or_json(runner: CliRunner, policy_file: Path, tmp_path: Path) -> None:
    out = runner.invoke(
        app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "launch"]
    )
    assert out.exit_code == 0, out.output
    assert "svc: created revision 1 by ana" in out.output and "champion m@2" in out.output
    rev = current_policy("svc")
    assert (rev.created_by, rev.reason, rev.policy.challengers) == ("ana", "launch", ("m@3",))

    as_json = tmp_path / "policy.json"
    as_json.write_text('{"champion": "m@1", "fallback": {"label": "a"}}')
    out = runner.invoke(app, ["serve", "create", "svc2", "--policy", str(as_json), "--reason", "x"])
    assert out.exit_code == 0, out.output
    assert current_policy("svc2").policy.champion == "m@1"

    out = runner.invoke(app, ["serve", "create", "svc", "--policy", str(as_json), "--reason", "x"])
    assert out.exit_code == 1 and "already exists" in out.output


def test_a_bad_policy_file_is_one_line_naming_file_and_field(
    runner: CliRunner, policy_file: Path
) -> None:
    policy_file.write_text("champion: m\nfallback: base@1\n")
    out = runner.invoke(
        app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "x"]
    )
    assert out.exit_code == 1
    assert out.output.startswith("Error: The policy file") and out.output.count("\n") == 1
    assert "policy.yaml" in out.output and "champion: must be a registered model version" in (
        out.output
    )
    policy_file.write_text("champion: m@9\nfallback: base@1\n")
    out = runner.invoke(
        app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "x"]
    )
    assert out.exit_code == 1 and "'m@9' of the policy is not a registered model" in out.output
    assert list_services() == []


def test_set_changes_fields_each_as_a_revision(runner: CliRunner, policy_file: Path) -> None:
    runner.invoke(app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "go"])
    steps = [
        (["--canary", "m@1", "--challengers", "none"], "watch the old model"),
        (["--challengers", "m@3,m@1", "--canary", "none"], "two challengers"),
        (["--deadline", "80"], "slower clients"),
        (["--fallback-label", "0"], "answer 0"),
        (["--fallback-label", "cat", "--no-decoy"], "answer cat"),
        (["--fallback", "base@1", "--decoy"], "the heuristic again"),
    ]
    for options, reason in steps:
        out = runner.invoke(app, ["serve", "set", "svc", *options, "--reason", reason])
        assert out.exit_code == 0, out.output
        assert "svc: changed, now revision" in out.output and f"({reason})" in out.output
    history = policy_history("svc")
    assert [(r.action, r.created_by) for r in history[1:]] == [("set", "ana")] * len(steps)
    policies = [r.policy for r in history[1:]]
    assert (policies[0].canary, policies[0].challengers) == ("m@1", ())
    assert (policies[1].canary, policies[1].challengers) == (None, ("m@3", "m@1"))
    assert [s.by_ms for s in policies[2].schedule.steps] == [32, 80]
    assert policies[3].fallback.model_dump() == {"label": 0}
    assert policies[4].fallback.model_dump() == {"label": "cat"} and not policies[4].decoy
    assert policies[5].fallback == "base@1" and policies[5].decoy
    assert all(p.champion == "m@2" for p in policies)

    policy_file.write_text("champion: m@3\nfallback: {label: b}\n")
    out = runner.invoke(
        app, ["serve", "set", "svc", "--policy", str(policy_file), "--reason", "from file"]
    )
    assert out.exit_code == 0, out.output
    assert current_policy("svc").policy.champion == "m@3"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "Nothing to change"),
        (["--fallback", "base@1", "--fallback-label", "a"], "contradict each other"),
        (["--canary", "m@3"], "neither the champion nor a challenger"),
        (["--canary", "m@9"], "'m@9' of the policy is not a registered model version"),
        (["--fallback", "m@1@"], "fallback"),
        (["--challengers", "m@2"], "cannot also be a challenger"),
        (["--challengers", "m@3"], "leaves the policy of 'svc' as it is"),
        (["--deadline", "80", "--policy", "policy.yaml"], "(here --deadline)"),
    ],
)
def test_a_bad_set_is_one_line_and_changes_nothing(
    runner: CliRunner, policy_file: Path, options: list[str], expected: str
) -> None:
    runner.invoke(app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "go"])
    options = [str(policy_file) if o == "policy.yaml" else o for o in options]
    out = runner.invoke(app, ["serve", "set", "svc", *options, "--reason", "x"])
    assert out.exit_code == 1, out.output
    assert expected in out.output and out.output.count("\n") == 1
    assert current_policy("svc").revision == 1


def test_set_needs_a_reason_and_a_scientist(runner: CliRunner, policy_file: Path) -> None:
    runner.invoke(app, ["serve", "create", "svc", "--policy", str(policy_file), "--reason", "go"])
    out = runner.invoke(app, ["serve", "set", "svc", "--canary", "m@1"])
    assert out.exit_code == 2 and "--reason" in out.output
    create_user("admin", "admin")
    out = runner.invoke(app, ["serve", "set", "svc", "--canary", "m@1", "--reason", "x"])
    assert out.exit_code == 1 and "inloop users create ana --role scientist" in out.output
    token = create_user("rita", "reviewer")
    out = runner.invoke(
        app, ["serve", "set", "svc", "--canary", "m@1", "--reason", "x", "--token", token]
    )
    assert out.exit_code == 1 and "user 'rita' has the role 'reviewer'" in out.output
    assert current_policy("svc").revision == 1
