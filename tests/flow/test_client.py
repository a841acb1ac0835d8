"""The client API over a store filled directly through RunStore and ArtifactStore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import event

from inloop.errors import ClientError, NamespaceMismatchError, NotFoundError
from inloop.flow.client import (
    DataArtifact,
    Flow,
    Metaflow,
    Run,
    Step,
    Task,
    default_namespace,
    get_namespace,
    namespace,
)
from inloop.store.artifacts import ArtifactStore, open_artifact_store
from inloop.store.db import get_engine
from inloop.store.runs import ArtifactRecord, RunStore, TaskRecord

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _as_ana(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("INLOOP_USER", raising=False)
    monkeypatch.setenv("USERNAME", "ana")
    default_namespace()
    yield
    default_namespace()


@dataclass
class Seeder:
    """Writes runs the way the runtime will: run row, task rows, artifact blobs and refs."""

    runs: RunStore
    blobs: ArtifactStore

    def run(
        self,
        flow: str = "TrainFlow",
        *,
        user: str = "ana",
        tags: tuple[str, ...] = (),
        status: str | None = "succeeded",
        n_train: int = 3,
        end: str | None = "succeeded",
        origin_run_id: int | None = None,
    ) -> int:
        """A start -> train (foreach) -> join -> end run; returns its id."""
        record = self.runs.create_run(
            flow,
            user,
            tags=tags,
            system_tags=[f"user:{user}", "runtime:local"],
            parameters={"alpha": 0.5},
            origin_run_id=origin_run_id,
        )
        rid = record.run_id
        tasks: list[TaskRecord] = []
        arts: list[ArtifactRecord] = []

        def task(task_id: int, step: str, minute: int, values: dict[str, object], **kw: object):
            for name, value in values.items():
                stored = self.blobs.put(value)
                arts.append(ArtifactRecord(rid, task_id, name, stored.key, stored.size))
            fields: dict[str, object] = {
                "status": "succeeded",
                "attempt": 0,
                "foreach_stack": [],
                "input_task_ids": [],
                "transition": None,
                "started_at": T0 + timedelta(minutes=minute),
                "finished_at": T0 + timedelta(minutes=minute, seconds=30),
            }
            fields.update(kw)
            tasks.append(TaskRecord(run_id=rid, task_id=task_id, step_name=step, **fields))  # type: ignore[arg-type]

        out = self.blobs.put_bytes(b"hello from start\n").key
        err = self.blobs.put_bytes(b"a warning\n").key
        task(1, "start", 0, {"xs": list(range(n_train))}, stdout_key=out, stderr_key=err)
        train_ids = list(range(2, 2 + n_train))
        for i, tid in enumerate(train_ids):
            stack = [{"step": "start", "var": "xs", "index": i, "num_splits": n_train}]
            task(
                tid,
                "train",
                1,
                {"score": i * 10, "shared": "same"},
                foreach_stack=stack,
                input_task_ids=[1],
                attempt=1 if i == 0 else 0,
                stdout_key=self.blobs.put_bytes(f"train {i}\n".encode()).key,
            )
        join_id = 2 + n_train
        task(join_id, "join", 2, {"best": n_train - 1}, input_task_ids=train_ids)
        if end is not None:
            end_values: dict[str, object] = {"best": n_train - 1, "model": np.arange(4.0)}
            task(
                join_id + 1,
                "end",
                3,
                end_values if end == "succeeded" else {},
                status=end,
                input_task_ids=[join_id],
                error=None if end == "succeeded" else "ValueError: boom",
                finished_at=None if end == "running" else T0 + timedelta(minutes=3, seconds=30),
            )
        self.runs.write_tasks(tasks, arts)
        if status is not None:
            self.runs.finish_run(rid, status, None if status == "succeeded" else "boom")
        return rid


@pytest.fixture
def seed() -> Seeder:
    return Seeder(RunStore(), open_artifact_store())


@pytest.fixture
def queries() -> Iterator[list[str]]:
    """Every SQL statement (not transaction control) the metadata engine runs."""
    seen: list[str] = []
    engine = get_engine()

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


# -- namespaces ----------------------------------------------------------------------------


def test_namespace_defaults_to_the_user_and_can_be_switched() -> None:
    assert get_namespace() == "user:ana"
    assert namespace("user:bob") == "user:bob"
    assert get_namespace() == "user:bob"
    assert namespace(None) is None
    assert get_namespace() is None
    assert default_namespace() == "user:ana"
    assert get_namespace() == "user:ana"


@pytest.mark.parametrize("bad", ["", "  ", 3])
def test_namespace_rejects_non_tags(bad: object) -> None:
    with pytest.raises(ClientError, match="non-empty tag"):
        namespace(bad)  # type: ignore[arg-type]
    assert get_namespace() == "user:ana"


# -- Flow ----------------------------------------------------------------------------------


def test_unknown_flow_lists_known_flows_and_suggests(seed: Seeder) -> None:
    seed.run("TrainFlow")
    seed.run("ScoreFlow")
    with pytest.raises(NotFoundError) as info:
        Flow("TrainFlw")
    message = str(info.value)
    assert "'TrainFlw'" in message
    assert "Did you mean 'TrainFlow'?" in message
    assert "ScoreFlow, TrainFlow" in message


def test_unknown_flow_lists_at_most_ten(seed: Seeder) -> None:
    for i in range(12):
        seed.run(f"Flow{i:02d}", n_train=1)
    with pytest.raises(NotFoundError, match=r"and 2 more"):
        Flow("Nope")


@pytest.mark.parametrize("bad", ["", "A/1", None])
def test_flow_name_must_be_a_plain_name(bad: object) -> None:
    with pytest.raises(ClientError, match="class name"):
        Flow(bad)  # type: ignore[arg-type]


def test_flow_runs_are_newest_first_in_the_namespace(seed: Seeder) -> None:
    first = seed.run()
    seed.run(user="bob")
    second = seed.run(tags=("baseline",))
    failed = seed.run(status="failed", end="failed")

    flow = Flow("TrainFlow")
    assert flow.id == flow.pathspec == "TrainFlow"
    assert [r.id for r in flow.runs()] == [str(failed), str(second), str(first)]
    assert [r.id for r in flow] == [str(failed), str(second), str(first)]
    assert [r.id for r in flow.runs("baseline")] == [str(second)]
    assert flow.runs("baseline", "nope") == []
    latest = flow.latest_run
    assert latest is not None and latest.id == str(failed)
    latest_ok = flow.latest_successful_run
    assert latest_ok is not None and latest_ok.id == str(second)

    namespace(None)
    assert len(flow.runs()) == 4
    namespace("user:bob")
    assert [r.user for r in flow.runs()] == ["bob"]


def test_latest_runs_are_none_without_matches(seed: Seeder) -> None:
    seed.run(user="bob")
    flow = Flow("TrainFlow")  # exists, though not in this namespace
    assert flow.runs() == []
    assert flow.latest_run is None
    assert flow.latest_successful_run is None


def test_flow_getitem_and_contains(seed: Seeder) -> None:
    mine = seed.run()
    theirs = seed.run(user="bob")
    flow = Flow("TrainFlow")
    assert flow[mine] == flow[str(mine)] == Run(f"TrainFlow/{mine}")
    assert str(mine) in flow
    assert str(theirs) not in flow
    assert "999" not in flow
    with pytest.raises(NamespaceMismatchError):
        flow[theirs]
    with pytest.raises(NotFoundError):
        flow["999"]


def test_metaflow_root_lists_flows(seed: Seeder) -> None:
    seed.run("B")
    seed.run("A")
    assert [f.id for f in Metaflow()] == ["A", "B"]
    assert Metaflow().flows == [Flow("A"), Flow("B")]


# -- Run -----------------------------------------------------------------------------------


def test_run_properties(seed: Seeder) -> None:
    origin = seed.run(status="failed", end="failed")
    rid = seed.run(tags=("baseline", "v2"), origin_run_id=origin)
    run = Run(f"TrainFlow/{rid}")
    assert run.id == str(rid)
    assert run.pathspec == f"TrainFlow/{rid}"
    assert repr(run) == f"Run('TrainFlow/{rid}')"
    assert run.successful and run.finished
    assert run.status == "succeeded"
    assert run.created_at.tzinfo is not None
    assert run.finished_at is not None and run.finished_at >= run.created_at
    assert run.user_tags == {"baseline", "v2"}
    assert run.system_tags == {"user:ana", "runtime:local"}
    assert run.tags == run.user_tags | run.system_tags
    assert run.parameters == {"alpha": 0.5}
    assert run.user == "ana"
    assert run.origin_run_id == str(origin)
    assert run.error is None
    assert Run(f"TrainFlow/{origin}").origin_run_id is None


def test_running_run(seed: Seeder) -> None:
    rid = seed.run(status=None, end=None)
    run = Run(f"TrainFlow/{rid}")
    assert run.status == "running"
    assert not run.successful and not run.finished
    assert run.finished_at is None
    assert run.end_task is None
    assert run.data is None


def test_failed_run_has_no_data_but_keeps_its_error(seed: Seeder) -> None:
    rid = seed.run(status="failed", end="failed")
    run = Run(f"TrainFlow/{rid}")
    assert not run.successful and run.finished
    assert run.error == "boom"
    assert run.data is None
    end = run.end_task
    assert end is not None and not end.successful and end.finished
    assert end.exception == "ValueError: boom"


def test_run_data_is_the_end_tasks_data(seed: Seeder) -> None:
    rid = seed.run()
    run = Run(f"TrainFlow/{rid}")
    assert run.data is not None
    assert run.data.best == 2
    np.testing.assert_array_equal(run.data.model, np.arange(4.0))
    assert "model" in run.data
    assert "score" not in run.data
    assert run.end_task == run["end"].task


def test_missing_run(seed: Seeder) -> None:
    rid = seed.run()
    with pytest.raises(NotFoundError) as info:
        Run("TrainFlow/999")
    assert "TrainFlow/999" in str(info.value)
    assert str(rid) in str(info.value)  # the latest runs are listed
    with pytest.raises(NotFoundError, match="Known flows: TrainFlow"):
        Run("Other/1")
    with pytest.raises(NotFoundError, match="whole numbers"):
        Run("TrainFlow/abc")
    with pytest.raises(NotFoundError):
        Run(f"OtherFlow/{rid}")  # the id exists, but under another flow


@pytest.mark.parametrize("bad", ["TrainFlow", "TrainFlow/1/start", "/1", "TrainFlow/", 12])
def test_run_pathspec_shape(bad: object) -> None:
    with pytest.raises(ClientError, match="FlowName/RunId"):
        Run(bad)  # type: ignore[arg-type]


def test_run_outside_the_namespace(seed: Seeder) -> None:
    rid = seed.run(user="bob")
    with pytest.raises(NamespaceMismatchError) as info:
        Run(f"TrainFlow/{rid}")
    message = str(info.value)
    assert "'user:ana'" in message
    assert "namespace(None)" in message
    assert "namespace('user:bob')" in message
    assert Run(f"TrainFlow/{rid}", _namespace_check=False).user == "bob"
    namespace(None)
    assert Run(f"TrainFlow/{rid}").user == "bob"
    namespace("user:bob")
    assert Run(f"TrainFlow/{rid}").user == "bob"


def test_a_user_tag_works_as_a_namespace(seed: Seeder) -> None:
    rid = seed.run(tags=("team:vision",))
    namespace("team:vision")
    assert Run(f"TrainFlow/{rid}").id == str(rid)


def test_steps_iterate_latest_first(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    assert [s.id for s in run] == ["end", "join", "train", "start"]
    assert [s.id for s in run.steps()] == ["end", "join", "train", "start"]
    assert "train" in run
    assert "nope" not in run


def test_missing_step_lists_steps(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    with pytest.raises(NotFoundError) as info:
        run["trian"]
    message = str(info.value)
    assert "Did you mean 'train'?" in message
    assert "start, train, join, end" in message


# -- tags ----------------------------------------------------------------------------------


def test_tag_changes(seed: Seeder) -> None:
    rid = seed.run(tags=("a",))
    run = Run(f"TrainFlow/{rid}")
    run.add_tag("b")
    run.add_tags(["c", "d", "a"])
    assert run.user_tags == {"a", "b", "c", "d"}
    run.remove_tag("a")
    run.remove_tags(["b", "not-there"])
    assert run.user_tags == {"c", "d"}
    run.replace_tag("c", "e")
    assert run.user_tags == {"d", "e"}
    run.replace_tags(["d", "e"], ["e", "f"])
    assert run.user_tags == {"e", "f"}
    # Stored, not just cached: a fresh object and a tag filter see it.
    assert Run(f"TrainFlow/{rid}").user_tags == {"e", "f"}
    assert [r.id for r in Flow("TrainFlow").runs("f")] == [str(rid)]
    assert run.system_tags == {"user:ana", "runtime:local"}


def test_children_see_tag_changes(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    task = run["train"].task
    assert task is not None
    run.add_tag("late")
    assert "late" in task.user_tags


def test_adding_a_system_tag_is_a_no_op(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    run.add_tag("user:ana")
    assert run.user_tags == set()
    assert "user:ana" in run.system_tags


def test_system_tags_cannot_be_removed(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run(tags=('keep',))}")
    with pytest.raises(ClientError, match=r"system tag.*'user:ana'.*only user tags") as info:
        run.remove_tag("user:ana")
    assert "keep" in str(info.value)
    with pytest.raises(ClientError, match="system tag"):
        run.replace_tag("user:ana", "user:bob")
    assert run.user_tags == {"keep"}
    assert "user:ana" in run.system_tags


@pytest.mark.parametrize(
    ("bad", "match"),
    [("", "non-empty"), ("   ", "non-empty"), ("x" * 256, "at most 255"), (7, "must be a string")],
)
def test_invalid_tags_are_refused(seed: Seeder, bad: object, match: str) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    with pytest.raises(ClientError, match=match):
        run.add_tag(bad)  # type: ignore[arg-type]
    with pytest.raises(ClientError, match=match):
        run.replace_tags(["x"], [bad])  # type: ignore[list-item]
    with pytest.raises(ClientError, match=match):
        Flow("TrainFlow").runs(bad)  # type: ignore[arg-type]
    assert run.user_tags == set()


def test_a_255_character_tag_is_fine(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    run.add_tag("x" * 255)
    assert run.user_tags == {"x" * 255}


def test_a_string_is_not_a_tag_list(seed: Seeder) -> None:
    run = Run(f"TrainFlow/{seed.run()}")
    with pytest.raises(ClientError, match=r"list of tags.*\['abc'\]"):
        run.add_tags("abc")
    assert run.user_tags == set()


# -- Step and Task -------------------------------------------------------------------------


def test_step_tasks(seed: Seeder) -> None:
    rid = seed.run()
    step = Run(f"TrainFlow/{rid}")["train"]
    assert step.id == "train"
    assert step.pathspec == f"TrainFlow/{rid}/train"
    assert [t.id for t in step] == ["2", "3", "4"]
    assert [t.id for t in step.tasks()] == ["2", "3", "4"]
    task = step.task
    assert task is not None and task.id == "2"
    assert step["3"] == step[3] == Task(f"TrainFlow/{rid}/train/3")
    assert "3" in step and "1" not in step and "x" not in step
    assert step.created_at == T0 + timedelta(minutes=1)
    assert step.finished_at == T0 + timedelta(minutes=1, seconds=30)
    assert step.tags == Run(f"TrainFlow/{rid}").tags


def test_step_missing_task(seed: Seeder) -> None:
    rid = seed.run()
    step = Step(f"TrainFlow/{rid}/train")
    with pytest.raises(NotFoundError, match="Its tasks: 2, 3, 4"):
        step["1"]  # task 1 exists, but in step start
    with pytest.raises(NotFoundError, match="no step 'nope'"):
        Step(f"TrainFlow/{rid}/nope")
    with pytest.raises(ClientError, match="FlowName/RunId/StepName"):
        Step(f"TrainFlow/{rid}")


def test_unfinished_step_has_no_finished_at(seed: Seeder) -> None:
    rid = seed.run(status=None, end="running")
    run = Run(f"TrainFlow/{rid}")
    assert run["end"].finished_at is None
    end = run.end_task
    assert end is not None and not end.finished


def test_task_properties(seed: Seeder) -> None:
    rid = seed.run()
    task = Task(f"TrainFlow/{rid}/train/3")
    assert task.id == "3"
    assert task.step_name == "train"
    assert task.pathspec == f"TrainFlow/{rid}/train/3"
    assert task.successful and task.finished and task.status == "succeeded"
    assert task.index == 1
    assert task.retry_count == 0
    assert Task(f"TrainFlow/{rid}/train/2").retry_count == 1
    assert task.input_task_ids == [1]
    assert task.parent_task_pathspecs == [f"TrainFlow/{rid}/start/1"]
    assert task.created_at == T0 + timedelta(minutes=1)
    assert task.finished_at == T0 + timedelta(minutes=1, seconds=30)
    assert task.stdout == "train 1\n"
    assert task.stderr == ""
    assert task.exception is None
    start = Task(f"TrainFlow/{rid}/start/1")
    assert start.index is None
    assert start.stdout == "hello from start\n"
    assert start.stderr == "a warning\n"


def test_task_data_and_artifacts(seed: Seeder) -> None:
    rid = seed.run()
    task = Run(f"TrainFlow/{rid}")["train"]["4"]
    assert task.data.score == 20
    assert "score" in task.data and "nope" not in task.data
    assert dir(task.data) == ["score", "shared"]
    with pytest.raises(AttributeError, match=r"no artifact 'scor'.*Did you mean 'score'.*score"):
        _ = task.data.scor
    assert [a.id for a in task] == ["score", "shared"]
    assert "score" in task
    artifact = task["score"]
    assert isinstance(artifact, DataArtifact)
    assert artifact == task.artifacts.score
    assert artifact.data == 20
    assert artifact.pathspec == f"TrainFlow/{rid}/train/4/score"
    assert len(artifact.sha) == 64 and artifact.size > 0
    assert artifact.finished_at == task.finished_at
    assert [a.id for a in task.artifacts] == ["score", "shared"]
    assert "shared" in task.artifacts
    with pytest.raises(AttributeError, match="no artifact"):
        _ = task.artifacts.nope
    with pytest.raises(NotFoundError, match="Its artifacts: score, shared"):
        task["nope"]


def test_equal_values_share_one_sha(seed: Seeder) -> None:
    step = Run(f"TrainFlow/{seed.run()}")["train"]
    shas = {t["shared"].sha for t in step}
    assert len(shas) == 1
    assert len({t["score"].sha for t in step}) == 3


def test_data_artifact_from_pathspec(seed: Seeder) -> None:
    rid = seed.run()
    artifact = DataArtifact(f"TrainFlow/{rid}/end/6/model")
    assert artifact.id == "model"
    np.testing.assert_array_equal(artifact.data, np.arange(4.0))
    with pytest.raises(NotFoundError):
        DataArtifact(f"TrainFlow/{rid}/end/6/nope")


def test_values_are_fresh_copies(seed: Seeder) -> None:
    task = Run(f"TrainFlow/{seed.run()}")["start"].task
    assert task is not None
    xs = task.data.xs
    xs.append(99)
    assert task.data.xs == [0, 1, 2]


def test_children_of_a_foreign_run_check_the_namespace(seed: Seeder) -> None:
    rid = seed.run(user="bob")
    with pytest.raises(NamespaceMismatchError):
        Task(f"TrainFlow/{rid}/train/2")
    with pytest.raises(NamespaceMismatchError):
        DataArtifact(f"TrainFlow/{rid}/train/2/score")
    assert Task(f"TrainFlow/{rid}/train/2", _namespace_check=False).data.score == 0


# -- cost ----------------------------------------------------------------------------------


def test_reading_a_foreach_costs_a_fixed_number_of_queries(
    seed: Seeder, queries: list[str]
) -> None:
    rid = seed.run(n_train=40)
    queries.clear()
    run = Run(f"TrainFlow/{rid}")
    loaded_run = len(queries)
    scores = [t.data.score for t in run["train"]]
    assert scores == [i * 10 for i in range(40)]
    assert [t.index for t in run["train"]] == list(range(40))
    assert run.data is not None and run.data.best == 39
    # The run record (run + tags), the tasks once, the train step's artifacts once,
    # the end step's artifacts once.
    assert loaded_run <= 2
    assert len(queries) - loaded_run == 3


def test_artifact_values_load_only_when_read(seed: Seeder, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = seed.run()
    loads: list[str] = []
    real_get = ArtifactStore.get

    def counting_get(self: ArtifactStore, key: str) -> object:
        loads.append(key)
        return real_get(self, key)

    monkeypatch.setattr(ArtifactStore, "get", counting_get)
    run = Run(f"TrainFlow/{rid}")
    data = run.data
    assert data is not None
    assert "model" in data
    artifacts = list(run["end"].task or [])
    assert [a.size > 0 for a in artifacts] == [True, True]
    assert loads == []
    assert data.best == 2
    assert len(loads) == 1


def test_objects_follow_inloop_home(
    seed: Seeder, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from inloop.settings import reset_settings

    seed.run()
    assert Flow("TrainFlow").latest_run is not None
    monkeypatch.setenv("INLOOP_HOME", str(tmp_path_factory.mktemp("other-home")))
    reset_settings()
    with pytest.raises(NotFoundError, match="Known flows: none"):
        Flow("TrainFlow")


# -- both databases ------------------------------------------------------------------------


@pytest.fixture
def seed_db(db_url: str) -> Seeder:
    """A Seeder on the database of ``db_url`` (SQLite, then PostgreSQL)."""
    return Seeder(RunStore(), open_artifact_store())


def test_reading_on_each_database(seed_db: Seeder, queries: list[str]) -> None:
    first = seed_db.run(tags=("baseline",), n_train=5)
    seed_db.run(user="bob")
    last = seed_db.run(status="failed", end="failed")

    flow = Flow("TrainFlow")
    assert [r.id for r in flow] == [str(last), str(first)]
    assert [r.id for r in flow.runs("baseline")] == [str(first)]
    latest_ok = flow.latest_successful_run
    assert latest_ok is not None and latest_ok.id == str(first)

    queries.clear()
    run = Run(f"TrainFlow/{first}")
    assert [t.data.score for t in run["train"]] == [0, 10, 20, 30, 40]
    assert run.data is not None and run.data.best == 4
    assert run.created_at.tzinfo is not None
    assert len(queries) <= 5

    run.replace_tag("baseline", "champion")
    assert Run(f"TrainFlow/{first}").user_tags == {"champion"}
    assert flow.runs("baseline") == []


def test_a_run_without_recent_heartbeats_is_lost() -> None:
    from inloop.flow.lookup import run_status

    store = RunStore()
    record = store.create_run("LostFlow", "ana", system_tags=["user:ana"])
    fresh = store.get_run(record.run_id)
    assert fresh is not None and run_status(fresh) == "running"
    later = datetime.now(UTC) + timedelta(minutes=3)
    assert run_status(fresh, later) == "lost"
    store.finish_run(record.run_id, "failed", "boom")
    ended = store.get_run(record.run_id)
    assert ended is not None and run_status(ended, later) == "failed"
