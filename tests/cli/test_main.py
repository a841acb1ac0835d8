"""The ``inloop`` command, driven through Typer's CliRunner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from inloop import __version__
from inloop.cli.main import app, format_duration, main
from inloop.flow.client import default_namespace
from inloop.store.artifacts import open_artifact_store
from inloop.store.runs import RunStore, TaskRecord

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _as_ana(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("INLOOP_USER", raising=False)
    monkeypatch.setenv("USERNAME", "ana")
    default_namespace()
    yield
    default_namespace()


@pytest.fixture
def runner() -> CliRunner:
    # Wide, so Rich does not fold the table's columns.
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def make_run(
    flow: str = "TrainFlow",
    *,
    user: str = "ana",
    tags: tuple[str, ...] = (),
    status: str | None = "succeeded",
    logs: dict[int, tuple[bytes | None, bytes | None]] | None = None,
) -> int:
    """A run with one `start` task and a `train` step of tasks 2 and 3, with captured logs."""
    runs, blobs = RunStore(), open_artifact_store()
    rid = runs.create_run(flow, user, tags=tags, system_tags=[f"user:{user}"]).run_id
    logs = logs or {
        1: (b"starting\n", None),
        2: (b"train [0] done\n", b"warn 0\n"),
        3: (b"train [1] done", None),  # no trailing newline
    }
    records = []
    for task_id, step in ((1, "start"), (2, "train"), (3, "train")):
        out, err = logs.get(task_id, (None, None))
        records.append(
            TaskRecord(
                run_id=rid,
                task_id=task_id,
                step_name=step,
                status="succeeded",
                attempt=0,
                foreach_stack=[],
                input_task_ids=[],
                transition=None,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=2),
                stdout_key=None if out is None else blobs.put_bytes(out).key,
                stderr_key=None if err is None else blobs.put_bytes(err).key,
            )
        )
    runs.write_tasks(records, [])
    if status is not None:
        runs.finish_run(rid, status)
    return rid


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"inloop {__version__}"


def test_main_entry_point(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(sys, "argv", ["inloop", "--version"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"inloop {__version__}"


def test_help_lists_commands(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "runs" in result.output and "logs" in result.output


# -- runs ----------------------------------------------------------------------------------


def test_runs_table_shows_my_runs(runner: CliRunner) -> None:
    first = make_run(tags=("baseline",))
    make_run(user="bob")
    failed = make_run("ScoreFlow", status="failed")
    running = make_run(status=None)

    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    out = result.output
    for column in ("pathspec", "status", "user", "tags", "started", "duration"):
        assert column in out
    assert f"TrainFlow/{first}" in out and "baseline" in out
    assert f"ScoreFlow/{failed}" in out and "failed" in out
    assert f"TrainFlow/{running}" in out and "(running)" in out
    assert "bob" not in out
    # Newest first.
    assert out.index(f"TrainFlow/{running}") < out.index(f"TrainFlow/{first}")
    assert "user:ana" in out  # the title names the namespace


def test_runs_of_one_flow_and_tag(runner: CliRunner) -> None:
    tagged = make_run(tags=("baseline",))
    other = make_run()
    score = make_run("ScoreFlow", tags=("baseline",))
    result = runner.invoke(app, ["runs", "TrainFlow"])
    assert result.exit_code == 0, result.output
    assert f"TrainFlow/{tagged}" in result.output and f"TrainFlow/{other}" in result.output
    assert f"ScoreFlow/{score}" not in result.output

    result = runner.invoke(app, ["runs", "--tag", "baseline"])
    assert f"TrainFlow/{tagged}" in result.output and f"ScoreFlow/{score}" in result.output
    assert f"TrainFlow/{other}" not in result.output


def test_runs_namespace_all_and_limit(runner: CliRunner) -> None:
    mine = make_run()
    bobs = make_run(user="bob")
    result = runner.invoke(app, ["runs", "--namespace", "user:bob"])
    assert f"TrainFlow/{bobs}" in result.output and f"TrainFlow/{mine}" not in result.output
    result = runner.invoke(app, ["runs", "--all"])
    assert f"TrainFlow/{bobs}" in result.output and f"TrainFlow/{mine}" in result.output
    assert "all namespaces" in result.output
    result = runner.invoke(app, ["runs", "--all", "--limit", "1"])
    assert f"TrainFlow/{bobs}" in result.output and f"TrainFlow/{mine}" not in result.output


def test_runs_when_none_match(runner: CliRunner) -> None:
    make_run(user="bob")
    result = runner.invoke(app, ["runs", "TrainFlow"])
    assert result.exit_code == 0
    assert "No runs of TrainFlow in namespace user:ana" in result.output
    assert "--all" in result.output


def test_runs_of_an_unknown_flow_is_one_red_line(runner: CliRunner) -> None:
    make_run()
    result = runner.invoke(app, ["runs", "TrainFlw"])
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "Did you mean 'TrainFlow'?" in result.output
    assert "Traceback" not in result.output


def test_runs_namespace_and_all_conflict(runner: CliRunner) -> None:
    result = runner.invoke(app, ["runs", "--all", "--namespace", "user:bob"])
    assert result.exit_code == 1
    assert "--all" in result.output and "Traceback" not in result.output


def test_runs_limit_must_be_positive(runner: CliRunner) -> None:
    result = runner.invoke(app, ["runs", "--limit", "0"])
    assert result.exit_code == 2  # a usage error, reported by click


# -- logs ----------------------------------------------------------------------------------


def test_logs_of_one_task(runner: CliRunner) -> None:
    rid = make_run()
    result = runner.invoke(app, ["logs", f"TrainFlow/{rid}/train/2"])
    assert result.exit_code == 0, result.output
    # Printed as is: brackets are not taken for Rich markup.
    assert result.stdout == "train [0] done\n"
    result = runner.invoke(app, ["logs", f"TrainFlow/{rid}/train/2", "--stderr"])
    assert result.stdout == "warn 0\n"


def test_logs_of_a_step_put_each_task_under_its_pathspec(runner: CliRunner) -> None:
    rid = make_run()
    result = runner.invoke(app, ["logs", f"TrainFlow/{rid}/train"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"--- TrainFlow/{rid}/train/2 ---\ntrain [0] done\n"
        f"--- TrainFlow/{rid}/train/3 ---\ntrain [1] done\n"
    )


def test_logs_say_when_nothing_was_captured(runner: CliRunner) -> None:
    rid = make_run()
    result = runner.invoke(app, ["logs", f"TrainFlow/{rid}/start/1", "--stderr"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"no stderr captured for TrainFlow/{rid}/start/1" in result.stderr


def test_logs_of_another_users_run(runner: CliRunner) -> None:
    rid = make_run(user="bob")
    result = runner.invoke(app, ["logs", f"TrainFlow/{rid}/start/1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "starting\n"


@pytest.mark.parametrize(
    ("pathspec", "message"),
    [
        ("TrainFlow/1", "FLOW/RUN/STEP"),
        ("TrainFlow/1/a/b/c", "FLOW/RUN/STEP"),
        ("TrainFlow//start", "FLOW/RUN/STEP"),
        ("TrainFlow/99/start", "No run TrainFlow/99"),
        ("TrainFlow/{rid}/nope", "no step 'nope'"),
        ("TrainFlow/{rid}/train/1", "no task '1'"),
    ],
)
def test_logs_errors_are_one_red_line(runner: CliRunner, pathspec: str, message: str) -> None:
    rid = make_run()
    result = runner.invoke(app, ["logs", pathspec.format(rid=rid)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error:")
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4s"), (12, "12.0s"), (184, "3m 04s"), (7500, "2h 05m"), (-1, "0.0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (["--version"], 0, "stdout", f"inloop {__version__}"),
        (["label", "status", "no-such-project"], 1, "stderr", "Error:"),
    ],
)
def test_console_script_exits_quickly_with_its_output_and_code(
    args: list[str], code: int, stream: str, text: str
) -> None:
    # run() ends the process with os._exit: the output must be flushed first.
    import subprocess

    probe = f"import sys; sys.argv = ['inloop', *{args!r}]; from inloop.cli.main import run; run()"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == code, proc.stderr
    assert text in getattr(proc, stream)
