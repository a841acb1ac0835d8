"""The runtime, end to end: real worker processes, real stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inloop import Flow, Runner, Task, namespace
from inloop.errors import FlowDefinitionError, ParameterError
from inloop.store import RunStore

FLOWS = Path(__file__).parent / "flows"


def run_flow(name: str, **params: object) -> object:
    return Runner(FLOWS / f"{name}.py", show_output=False, max_workers=2).run(**params)


def test_linear_flow_passes_artifacts_and_parameters() -> None:
    result = run_flow("linear_flow", alpha=2.0, label="y")
    run = result.run
    assert result.status == "successful" and run.successful and run.finished
    assert run.data.summary == "y:12.0"
    assert run.data.k == 1
    # An inherited list changed in place is persisted by the step that changed it.
    assert run["start"].task.data.values == [1, 2, 3]
    assert run.data.values == [1, 2, 3, 4]
    assert run["middle"].task.data.pathspec == run["middle"].task.pathspec
    assert run["start"].task.data.seen_run_id == run.id
    assert "hello from start" in run["start"].task.stdout
    assert run.parameters["alpha"] == 2.0


def test_untouched_artifacts_are_passed_by_reference() -> None:
    run = run_flow("linear_flow").run
    start_values = run["start"].task["values"]
    end_seen = run["end"].task["seen_run_id"]
    assert end_seen.sha == run["start"].task["seen_run_id"].sha
    assert run["middle"].task["values"].sha != start_values.sha  # changed in place


def test_branches_join_by_step_name_and_merge() -> None:
    run = run_flow("branch_flow").run
    assert run.data.from_a == 1 and run.data.from_b == 12
    assert run.data.xs == [1, 12]
    assert run.data.shared == "same" and run.data.only_a == "A"
    assert "x" not in run.data


def test_foreach_nested_with_ordered_joins() -> None:
    run = run_flow("foreach_flow", n=4).run
    assert run.data.values == [0, 1, 4, 9]
    assert run.data.indexes == [0, 1, 2, 3]
    assert run.data.all_tags == ["0a", "0b", "1a", "1b", "4a", "4b", "9a", "9b"]
    inner = sorted(run["inner"].tasks(), key=lambda t: t.data.tag)
    assert len(inner) == 8
    assert inner[0].data.stack == [(0, 4, 0), (0, 2, "a")]
    assert sorted(t.index for t in run["square"]) == [0, 1, 2, 3]


def test_missing_required_and_bad_parameter_values_are_rejected() -> None:
    with pytest.raises(ParameterError, match="alpha"):
        run_flow("linear_flow", alpha="not-a-number")
    with pytest.raises(ParameterError, match="nope"):
        run_flow("linear_flow", nope=1)
    assert RunStore().list_runs("LinearFlow") == []  # nothing recorded for bad input


def test_retry_recovers_a_flaky_step() -> None:
    run = run_flow("robust_flow", mode="flaky").run
    assert run.successful
    task = run["work"].task
    assert task.data.attempts_seen == 2 and task.retry_count == 2
    assert task.data.env_value == "set-by-decorator"


def test_catch_stores_the_exception_and_the_flow_goes_on() -> None:
    run = run_flow("robust_flow", mode="crash").run
    assert run.successful
    problem = run["guarded"].task.data.problem
    assert "ValueError" in problem.type and problem.message == "caught me"


def test_timeout_fires_and_catch_handles_it() -> None:
    started = time.monotonic()
    run = run_flow("robust_flow", mode="hang").run
    assert time.monotonic() - started < 20
    assert run.successful
    assert "timed out" in run["guarded"].task.data.problem.message


def test_a_step_that_ignores_its_alarm_is_stopped_by_the_coordinator() -> None:
    started = time.monotonic()
    run = run_flow("robust_flow", mode="stubborn").run
    assert time.monotonic() - started < 25  # 1 s timeout + the coordinator's grace
    assert run.successful
    assert "timed out" in run["guarded"].task.data.problem.message


def test_worker_killed_by_sigkill_is_retried() -> None:
    run = run_flow("robust_flow", mode="killonce").run
    assert run.successful
    assert run["work"].task.retry_count == 1


def test_worker_killed_without_retry_fails_the_run_and_resume_completes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INLOOP_TEST_KILL", "1")
    result = run_flow("robust_flow", mode="kill")
    assert result.status == "failed"
    failed = result.run
    assert not failed.successful and failed.finished
    end = failed["end"].task
    assert not end.successful and "SIGKILL" in (end.exception or "")
    assert failed.data is None
    monkeypatch.delenv("INLOOP_TEST_KILL")
    resumed = Runner(FLOWS / "robust_flow.py", show_output=False).resume(failed.id)
    assert resumed.status == "successful"
    assert resumed.run.parameters["mode"] == "kill"  # the origin's parameters are reused
    tasks = {step.id: step.task for step in resumed.run}
    assert tasks["work"].data.env_value == "set-by-decorator"
    record = RunStore().get_task(int(resumed.run.id), int(tasks["work"].id))
    assert record is not None and record.cloned_from == {
        "run_id": int(failed.id),
        "task_id": int(failed["work"].task.id),
    }


def test_resume_reuses_successful_tasks_and_reruns_the_failed_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = run_flow("failing_flow", width=3)
    assert first.status == "failed"
    origin = first.run
    ok_work = {t.index: t for t in origin["work"] if t.successful}
    assert sorted(ok_work) == [0, 2]
    monkeypatch.setenv("INLOOP_TEST_FIX", "1")
    resumed = Runner(FLOWS / "failing_flow.py", show_output=False).resume()
    run = resumed.run
    assert run.successful and run.origin_run_id == origin.id
    assert run.data.outs == [0, 10, 20]
    store = RunStore()
    by_index = {t.index: t for t in run["work"]}
    for index, old in ok_work.items():
        record = store.get_task(int(run.id), int(by_index[index].id))
        assert record is not None
        assert record.cloned_from == {"run_id": int(origin.id), "task_id": int(old.id)}
        assert by_index[index]["out"].sha == old["out"].sha  # by reference, not copied
    record = store.get_task(int(run.id), int(by_index[1].id))
    assert record is not None and record.cloned_from is None
    assert run.parameters == origin.parameters


def test_resume_from_a_named_step_reruns_it_and_everything_after() -> None:
    origin = run_flow("linear_flow").run
    resumed = Runner(FLOWS / "linear_flow.py", show_output=False).resume(origin.id, "middle")
    store = RunStore()
    cloned = {t.step_name: t.cloned_from is not None for t in store.get_tasks(int(resumed.run.id))}
    assert cloned == {"start": True, "middle": False, "end": False}


def test_runs_land_in_the_user_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERNAME", "ana")
    run = Runner(FLOWS / "linear_flow.py", show_output=False).run(tags=["exp1"]).run
    assert "user:ana" in run.system_tags and "exp1" in run.user_tags
    namespace("user:ana")
    try:
        assert Flow("LinearFlow").latest_run == run
        assert list(Flow("LinearFlow").runs("exp1")) == [run]
        namespace("user:bob")
        assert Flow("LinearFlow").latest_run is None
    finally:
        namespace(None)


def test_a_notebook_flow_class_runs_through_runner() -> None:
    import linecache

    source = (
        "from inloop import FlowSpec, step\n"
        "class NotebookFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.x = 41\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        self.x += 1\n"
    )
    filename = "<ipython-input-7-abc>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace_: dict[str, object] = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace_)
    run = Runner(namespace_["NotebookFlow"], show_output=False).run().run  # type: ignore[arg-type]
    assert run.data.x == 42


def test_graph_errors_stop_the_run_before_it_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad_flow.py"
    bad.write_text(
        "from inloop import FlowSpec, step\n"
        "class BadFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.next(self.missing)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    with pytest.raises(FlowDefinitionError, match="missing") as info:
        Runner(bad, show_output=False).run()
    assert "bad_flow.py:5" in str(info.value)
    assert RunStore().list_runs("BadFlow") == []


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_flow_file_cli_run_show_check_help() -> None:
    flow = str(FLOWS / "linear_flow.py")
    done = _cli(flow, "--no-pylint", "run", "--alpha", "3", "--tag", "cli", "--max-workers", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "succeeded" in done.stdout
    run = Flow("LinearFlow").latest_run
    assert run is not None and run.data.summary == "x:18.0" and "cli" in run.tags
    show = _cli(flow, "show")
    assert show.returncode == 0 and "Step middle" in show.stdout
    check = _cli(flow, "check")
    assert check.returncode == 0
    helptext = _cli(flow, "run", "--help")
    assert "--alpha" in helptext.stdout and "a float" in helptext.stdout
    bad = _cli(flow, "run", "--alpha", "abc")
    assert bad.returncode == 1 and "alpha" in bad.stderr


def test_flow_file_cli_failure_exit_code_and_resume() -> None:
    flow = str(FLOWS / "failing_flow.py")
    failed = _cli(flow, "run", "--max-workers", "2")
    assert failed.returncode == 1
    assert "item 1 is broken" in failed.stdout + failed.stderr
    assert "resume" in failed.stdout + failed.stderr
    resumed = _cli(flow, "resume", env={"INLOOP_TEST_FIX": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Flow("FailingFlow").latest_run.data.outs == [0, 10, 20]


def test_with_retry_adds_retries_to_every_step(tmp_path: Path) -> None:
    marker = tmp_path / "attempted"
    flow = tmp_path / "once_flow.py"
    flow.write_text(
        "import os\n"
        "from inloop import FlowSpec, step\n"
        "class OnceFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        f"        if not os.path.exists({str(marker)!r}):\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            raise RuntimeError('first attempt fails')\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
        "if __name__ == '__main__':\n"
        "    OnceFlow()\n"
    )
    done = _cli(str(flow), "--with", "retry:times=1,minutes_between_retries=0", "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert Flow("OnceFlow").latest_run["start"].task.retry_count == 1


def test_two_runs_at_once_do_not_interfere() -> None:
    flow = str(FLOWS / "foreach_flow.py")
    procs = [
        subprocess.Popen(
            [sys.executable, flow, "run", "--n", str(n), "--max-workers", "2", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in (6, 7)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    runs = list(Flow("ForeachFlow"))
    assert sorted(len(r.data.values) for r in runs) == [6, 7]
    for r in runs:
        assert r.data.values == [i * i for i in range(len(r.data.values))]


def test_task_lookup_by_pathspec_after_a_run() -> None:
    run = run_flow("linear_flow").run
    task = Task(run["end"].task.pathspec)
    assert task.data.summary == "x:3.0"


@pytest.mark.postgres
@pytest.mark.s3
def test_flow_runs_at_scale_on_postgres_and_s3(
    postgres_url: str, moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inloop.settings import reset_settings
    from inloop.store import dispose_engines

    monkeypatch.setenv("INLOOP_DB_URL", postgres_url)
    monkeypatch.setenv("INLOOP_ARTIFACTS_URL", "s3://inloop-test/flows")
    monkeypatch.setenv("INLOOP_S3_ENDPOINT_URL", moto_s3_endpoint)
    reset_settings()
    dispose_engines()
    run = run_flow("foreach_flow", n=3).run
    assert run.successful
    assert run.data.values == [0, 1, 4]
    assert run["start"].task["items"].sha
    import boto3

    listed = boto3.client("s3", endpoint_url=moto_s3_endpoint).list_objects_v2(
        Bucket="inloop-test", Prefix="flows/"
    )
    assert listed["KeyCount"] > 0


def test_current_and_project_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERNAME", "ana")
    flow = tmp_path / "proj_flow.py"
    flow.write_text(
        "from inloop import FlowSpec, step, current, project, batch\n"
        "@project(name='digits')\n"
        "class ProjFlow(FlowSpec):\n"
        "    @batch(cpu=4)\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.facts = dict(flow=current.flow_name, run=current.run_id,\n"
        "            step=current.step_name, task=current.task_id, user=current.username,\n"
        "            running=current.is_running_flow, ns=current.namespace,\n"
        "            project=current.project_name, branch=current.branch_name,\n"
        "            tags=sorted(current.tags), pathspec=current.pathspec)\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    from inloop.flow.runtime import InloopWarning

    with pytest.warns(InloopWarning, match="@batch"):
        run = Runner(flow, show_output=False).run(tags=["t1"]).run
    facts = run.data.facts
    task = run["start"].task
    assert facts["flow"] == "ProjFlow" and facts["run"] == run.id
    assert facts["step"] == "start" and facts["task"] == task.id
    assert facts["user"] == "ana" and facts["running"] is True
    assert facts["ns"] == "user:ana" and facts["pathspec"] == task.pathspec
    assert facts["project"] == "digits" and facts["branch"] == "user.ana"
    assert {"t1", "project:digits", "user:ana"} <= set(facts["tags"])
    from inloop import current

    assert current.is_running_flow is False and current.run_id is None


def test_include_file_content_is_stored(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    flow = tmp_path / "inc_flow.py"
    flow.write_text(
        "from inloop import FlowSpec, IncludeFile, step\n"
        "class IncFlow(FlowSpec):\n"
        "    table = IncludeFile('table', help='a csv')\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.rows = self.table.splitlines()\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
        "if __name__ == '__main__':\n"
        "    IncFlow()\n"
    )
    done = _cli(str(flow), "run", "--table", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert Flow("IncFlow").latest_run.data.rows == ["a,b", "1,2"]
    data.write_text("changed\n")  # the run keeps the content, not the path
    assert Flow("IncFlow").latest_run.data.table == "a,b\n1,2\n"
