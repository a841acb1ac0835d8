"""Labeling projects: creation, lookup and the errors that name what would be accepted."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from inloop.errors import InloopError
from inloop.label.projects import (
    LabelClass,
    LabelError,
    LabelNotFoundError,
    create_project,
    get_project,
    list_projects,
)
from inloop.store.db import get_engine


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


def test_create_and_read_back(engine: Engine) -> None:
    made = create_project(
        "digits",
        [{"name": "zero", "key": "0"}, LabelClass("one", "1"), "two"],
        instructions="Pick the digit.",
        overlap=2,
        lease_seconds=120,
        created_by="ana",
        settings={"model": "logreg"},
        engine=engine,
    )
    assert made.project_id >= 1
    got = get_project("digits", engine=engine)
    assert got == made
    assert get_project(made.project_id, engine=engine) == made
    assert got.class_names == ("zero", "one", "two")
    assert got.classes[2] == LabelClass("two", None)
    assert (got.overlap, got.lease_seconds, got.task_type) == (2, 120, "single_label")
    assert got.settings == {"model": "logreg"}
    assert got.created_at.tzinfo is not None


def test_defaults(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INLOOP_USER", "bo")
    made = create_project("p", ["a", "b"], engine=engine)
    assert (made.overlap, made.lease_seconds, made.instructions) == (1, 600, "")
    assert made.created_by == "bo"
    assert made.settings == {}


def test_list_projects_sorted(engine: Engine) -> None:
    for name in ("zeta", "alpha", "mid"):
        create_project(name, ["a", "b"], engine=engine)
    assert [p.name for p in list_projects(engine=engine)] == ["alpha", "mid", "zeta"]


def test_default_engine_follows_the_settings(db_url: str) -> None:
    create_project("via-settings", ["a", "b"])
    assert get_project("via-settings", engine=get_engine(db_url)).name == "via-settings"


def test_duplicate_name_is_refused(engine: Engine) -> None:
    create_project("twice", ["a", "b"], created_by="ana", engine=engine)
    with pytest.raises(LabelError, match=r"'twice' already exists \(created by ana"):
        create_project("twice", ["c", "d"], engine=engine)
    assert len(list_projects(engine=engine)) == 1


def test_missing_project_lists_known_ones(engine: Engine) -> None:
    create_project("known", ["a", "b"], engine=engine)
    with pytest.raises(LabelNotFoundError, match=r"No labeling project 'nope'.*'known'"):
        get_project("nope", engine=engine)


def test_errors_are_inloop_and_value_errors() -> None:
    assert issubclass(LabelError, InloopError) and issubclass(LabelError, ValueError)
    assert issubclass(LabelNotFoundError, LabelError) and issubclass(
        LabelNotFoundError, LookupError
    )


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([], r"at least 2 classes\. Got 0"),
        (["only"], r"at least 2 classes\. Got 1"),
        ("ab", r"must be a list of classes\. Got 'ab'"),
        (["a", "b", "a"], r"Class names must be distinct\. Repeated: \['a'\]"),
        (
            [{"name": "a", "key": "x"}, {"name": "b", "key": "x"}],
            r"keys must be distinct\. Repeated: \['x'\]",
        ),
        ([{"name": "a", "key": "ab"}, "b"], r"Invalid key 'ab' for class 'a'.*one printable"),
        ([{"name": "a", "key": " "}, "b"], r"Invalid key ' '"),
        (["", "b"], r"Invalid class name ''"),
        ([3, "b"], r"Invalid class 3"),
        ([{"name": "a", "colour": "red"}, "b"], r"Invalid class \{'name': 'a'"),
    ],
)
def test_bad_classes(engine: Engine, classes: object, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        create_project("bad", classes, engine=engine)  # type: ignore[arg-type]
    assert list_projects(engine=engine) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 0}, r"'overlap' parameter of create_project must be an int >= 1\. Got 0\."),
        ({"overlap": True}, r"'overlap'.*Got True"),
        ({"lease_seconds": 1.5}, r"'lease_seconds'.*Got 1\.5"),
        ({"task_type": "regression"}, r"\['single_label', 'multi_label'\].*Got 'regression'\.$"),
        ({"settings": {"f": object()}}, r"'settings' of a project must be JSON"),
        ({"instructions": None}, r"'instructions'.*Got None"),
    ],
)
def test_bad_parameters(engine: Engine, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LabelError, match=message):
        create_project("bad", ["a", "b"], engine=engine, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "-dash-first", "x" * 256, "a/b"])
def test_bad_names(engine: Engine, name: str) -> None:
    with pytest.raises(LabelError, match=r"Invalid project name.*letters, digits"):
        create_project(name, ["a", "b"], engine=engine)


def test_bad_project_reference(engine: Engine) -> None:
    with pytest.raises(LabelError, match=r"Invalid project reference 1\.5"):
        get_project(1.5, engine=engine)  # type: ignore[arg-type]
