"""Policies read from YAML and JSON files, and changes to a few fields of a service's policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from inloop.serve import (
    MajorityClass,
    PolicyError,
    create_service,
    current_policy,
    policy_history,
    promote,
    read_policy,
    register,
    set_policy,
    update_policy,
)

YAML = """\
champion: digits@2
challengers: [digits@3]
canary: digits@1
fallback: base@1
schedule: {deadline_ms: 80}
review: {project: digits-review, margin_threshold: 0.2}
actions:
  - name: alert
    url: https://example.org/hook
    when: {label: 7}
"""

JSON = """{
  "champion": "digits@2", "challengers": ["digits@3"], "canary": "digits@1",
  "fallback": "base@1", "schedule": {"deadline_ms": 80},
  "review": {"project": "digits-review", "margin_threshold": 0.2},
  "actions": [{"name": "alert", "url": "https://example.org/hook", "when": {"label": 7}}]
}"""


def test_yaml_and_json_files_read_as_the_same_policy(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(YAML)
    (tmp_path / "policy.json").write_text(JSON)
    from_yaml = read_policy(tmp_path / "policy.yaml")
    assert from_yaml == read_policy(str(tmp_path / "policy.json"))
    assert from_yaml.champion == "digits@2" and from_yaml.challengers == ("digits@3",)
    assert [s.by_ms for s in from_yaml.schedule.steps] == [32, 80]
    assert from_yaml.actions[0].when.label == 7


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("policy.txt", YAML, [".yaml or .yml (YAML) and .json (JSON)", "policy.txt"]),
        ("policy.yaml", "champion: [digits@2\n", ["not valid YAML: line 2", "policy.yaml"]),
        ("policy.json", '{"champion": }', ["not valid JSON: line 1, column 14", "policy.json"]),
        ("policy.yaml", "- digits@2\n", ["must hold a mapping", "Got list"]),
        ("policy.yaml", "", ["must hold a mapping", "Got NoneType"]),
        (
            "policy.yaml",
            "champion: digits\nfallback: {label: 0}\n",
            ["policy.yaml", "champion: must be a registered model version 'name@N'", "'digits'"],
        ),
        (
            "policy.yaml",
            "champion: digits@2\nfallback: {label: 0}\nschedule: {deadline: 80}\n",
            ["policy.yaml", "schedule.deadline: Extra inputs are not permitted"],
        ),
        ("policy.yaml", "fallback: {label: 0}\n", ["policy.yaml", "champion: is required"]),
    ],
)
def test_a_bad_policy_file_names_the_file_the_field_and_what_is_accepted(
    tmp_path: Path, name: str, text: str, expected: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        read_policy(path)
    for part in expected:
        assert part in str(caught.value)


def test_a_missing_policy_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"No policy file .*nope\.yaml.*\.yaml or \.json"):
        read_policy(tmp_path / "nope.yaml")


@pytest.fixture
def service(db_url: str) -> list[str]:
    refs = [register(MajorityClass(["a", "b"], [n, 1]), name="m").ref for n in (1, 2, 3)]
    refs.append(register(MajorityClass(["a", "b"], [1, 1]), name="base").ref)
    create_service(
        "svc", {"champion": refs[0], "fallback": {"label": "a"}}, created_by="ana", reason="launch"
    )
    return refs


def test_update_changes_only_the_named_fields_as_a_revision(service: list[str]) -> None:
    rev = update_policy(
        "svc",
        {"canary": service[1], "challengers": [service[2]], "fallback": service[3]},
        by="bo",
        reason="watch the old model",
    )
    assert (rev.revision, rev.action, rev.created_by, rev.reason) == (
        2,
        "set",
        "bo",
        "watch the old model",
    )
    policy = rev.policy
    assert (policy.champion, policy.canary, policy.challengers, policy.fallback) == (
        service[0],
        service[1],
        (service[2],),
        service[3],
    )
    removed = update_policy("svc", {"canary": None}, by="bo", reason="enough")
    assert removed.policy.canary is None and removed.policy.challengers == (service[2],)
    assert [r.revision for r in policy_history("svc")] == [1, 2, 3]


def test_a_new_deadline_moves_default_steps_and_keeps_hand_set_ones(service: list[str]) -> None:
    rev = update_policy("svc", {"schedule": {"deadline_ms": 100}}, by="bo", reason="slower")
    assert [(s.model, s.by_ms) for s in rev.policy.schedule.steps] == [
        ("champion", 40),
        ("best", 100),
    ]
    steps = [{"model": "champion", "by_ms": 10}, {"model": "best", "by_ms": 30}]
    update_policy("svc", {"schedule": {"deadline_ms": 60, "steps": steps}}, by="bo", reason="x")
    kept = update_policy("svc", {"schedule": {"deadline_ms": 90}}, by="bo", reason="y").policy
    assert kept.schedule.deadline_ms == 90
    assert [s.by_ms for s in kept.schedule.steps] == [10, 30]
    with pytest.raises(PolicyError, match=r"by_ms must be <= deadline_ms \(20\)"):
        update_policy("svc", {"schedule": {"deadline_ms": 20}}, by="bo", reason="z")
    assert current_policy("svc").revision == 4


def test_a_bad_update_changes_nothing(service: list[str]) -> None:
    with pytest.raises(PolicyError, match=r"cannot change 'canry': not a policy field.*canary"):
        update_policy("svc", {"canry": service[1]}, by="bo", reason="x")
    with pytest.raises(PolicyError, match="needs the fields to change"):
        update_policy("svc", {}, by="bo", reason="x")
    with pytest.raises(PolicyError, match="leaves the policy of 'svc' as it is"):
        update_policy("svc", {"canary": None}, by="bo", reason="x")
    with pytest.raises(PolicyError, match="not a registered model version"):
        update_policy("svc", {"canary": "m@9"}, by="bo", reason="x")
    with pytest.raises(PolicyError, match="cannot also be a challenger"):
        update_policy("svc", {"challengers": [service[0]]}, by="bo", reason="x")
    with pytest.raises(PolicyError, match="'reason' of set_policy is required"):
        update_policy("svc", {"canary": service[1]}, by="bo", reason=" ")
    assert current_policy("svc").revision == 1


def test_a_change_built_on_an_old_revision_does_not_undo_a_promotion(
    service: list[str],
) -> None:
    read = current_policy("svc")
    promote("svc", service[1], by="bo", reason="better")
    stale = read.policy.model_copy(update={"canary": service[2]})
    with pytest.raises(PolicyError, match="no longer at revision 1"):
        set_policy("svc", stale, by="cy", reason="canary", if_revision=read.revision)
    assert current_policy("svc").policy.champion == service[1]
    # update_policy applies its change on top of whatever is current.
    rev = update_policy("svc", {"canary": service[2]}, by="cy", reason="canary")
    assert (rev.policy.champion, rev.policy.canary) == (service[1], service[2])
