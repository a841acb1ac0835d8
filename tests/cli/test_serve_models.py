"""``inloop serve register|models|versions`` on a real flow run's artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inloop import Flow, Runner
from inloop.cli.main import app
from inloop.serve import get_version, list_models, load
from inloop.web.auth import create_user

FLOW = """
from sklearn.dummy import DummyClassifier

from inloop import FlowSpec, step


class DigitsFlow(FlowSpec):
    @step
    def start(self):
        self.X_train = [[0.0], [1.0], [2.0], [3.0]]
        self.y_train = [0, 1, 1, 1]
        self.strategies = ["most_frequent", "prior"]
        self.next(self.train, foreach="strategies")

    @step
    def train(self):
        self.model = DummyClassifier(strategy=self.input).fit(self.X_train, self.y_train)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.best_model = inputs[0].model
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "INLOOP_USER": "ana"})


@pytest.fixture
def run(db_url: str, tmp_path: Path) -> str:
    """The pathspec of a finished DigitsFlow run (made under another user's namespace)."""
    flow_file = tmp_path / "digits_flow.py"
    flow_file.write_text(FLOW)
    assert Runner(flow_file, show_output=False, max_workers=1).run().status == "successful"
    latest = Flow("DigitsFlow").latest_run
    assert latest is not None
    return latest.pathspec


def test_register_from_artifacts_and_list_them(runner: CliRunner, run: str) -> None:
    train = Flow("DigitsFlow")[run.split("/")[1]]["train"].tasks()[0].pathspec
    out = runner.invoke(
        app,
        [
            *("serve", "register", f"{train}/model", "--name", "digits"),
            *("--metric", "accuracy=0.75", "--metric", "data=v2", "--note", "first try"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"Registered digits@1 (sklearn) from {train}/model by ana." in out.output
    first = get_version("digits", 1)
    assert (first.task_pathspec, first.artifact_name, first.run_pathspec) == (train, "model", run)
    assert first.metrics == {"accuracy": 0.75, "data": "v2"} and first.note == "first try"
    assert first.registered_by == "ana"

    # A step of one task may leave the task id out.
    out = runner.invoke(app, ["serve", "register", f"{run}/join/best_model", "--name", "digits"])
    assert out.exit_code == 0, out.output
    assert get_version("digits", 2).task_pathspec.startswith(f"{run}/join/")

    out = runner.invoke(
        app,
        [
            *("serve", "register", "--name", "digits-baseline"),
            *("--majority-class-from", f"{run}/start/1/y_train"),
        ],
    )
    assert out.exit_code == 0, out.output
    baseline = get_version("digits-baseline")
    assert (
        baseline.kind == "heuristic" and baseline.note == f"majority class of {run}/start/1/y_train"
    )
    assert load("digits-baseline").predict(np.zeros((2, 1))).tolist() == [1, 1]

    listed = runner.invoke(app, ["serve", "models"])
    assert "digits-baseline" in listed.output and "heuristic" in listed.output
    assert [m["name"] for m in json.loads(runner.invoke(app, ["serve", "models", "--json"]).output)]
    versions = json.loads(runner.invoke(app, ["serve", "versions", "digits", "--json"]).output)
    assert [(v["ref"], v["registered_by"]) for v in versions] == [
        ("digits@1", "ana"),
        ("digits@2", "ana"),
    ]
    table = runner.invoke(app, ["serve", "versions", "digits"]).output
    assert f"{train}/model" in table and "accuracy=0.75" in table and "first try" in table


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "m"], "PATHSPEC) or --majority-class-from LABELS_PATHSPEC, one of the two"),
        (["{run}/start/1/y_train", "--majority-class-from", "{run}/start/1/y_train"], "Got both"),
        (["{run}/train/model"], "has 2 tasks"),
        (["{run}/train"], "takes an artifact Flow/run/step/task/name"),
        (["{run}/start/1/X_train", "--metric", "accuracy"], "--metric takes NAME=VALUE"),
        (["{run}/start/1/X_train", "--metric", "a=1", "--metric", "a=2"], "given twice"),
        (["{run}/start/1/nope"], "nope"),
        (["{run}/start/1/X_train", "--name", "bad name"], "The 'name' of a model must be"),
    ],
)
def test_register_errors_are_one_line_and_register_nothing(
    runner: CliRunner, run: str, args: list[str], expected: str
) -> None:
    args = [a.format(run=run) for a in args]
    if "--name" not in args:
        args += ["--name", "m"]
    out = runner.invoke(app, ["serve", "register", *args])
    assert out.exit_code == 1, out.output
    assert expected in out.output and "Traceback" not in out.output
    assert list_models() == []


def test_registering_records_the_inloop_user_not_the_login(runner: CliRunner, run: str) -> None:
    create_user("admin", "admin")
    target = [*("serve", "register", f"{run}/join/best_model", "--name", "digits")]
    out = runner.invoke(app, target)  # login 'ana' has no inloop user
    assert out.exit_code == 1
    assert "no user named 'ana'" in out.output
    assert "inloop users create ana --role scientist" in out.output
    assert list_models() == []
    sci = create_user("sci", "scientist")
    out = runner.invoke(app, target, env={"INLOOP_TOKEN": sci})
    assert out.exit_code == 0, out.output
    assert "by sci." in out.output and get_version("digits").registered_by == "sci"
    annotator = create_user("ana", "annotator")
    out = runner.invoke(app, [*target, "--token", annotator])
    assert out.exit_code == 1 and "has the role 'annotator'" in out.output
