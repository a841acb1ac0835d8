"""Annotation events, the current label derived from them, and item history."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import Engine

from inloop.label.annotations import annotate, current_labels, history, list_annotations
from inloop.label.items import MAX_NOTE_CHARS, Item, add_items, get_item, get_items, item_payload
from inloop.label.projects import LabelError, LabelNotFoundError, create_project
from inloop.label.queue import next_items
from inloop.store.artifacts import open_artifact_store
from inloop.store.db import get_engine


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = get_engine(db_url)
    create_project("p", ["cat", "dog", "7"], engine=engine)
    return engine


def _items(engine: Engine, n: int) -> list[int]:
    return add_items(
        "p", [{"external_id": f"e{k}", "text": str(k)} for k in range(n)], engine=engine
    )


# -- items ------------------------------------------------------------------------------------


def test_items_of_each_kind(engine: Engine) -> None:
    ids = add_items(
        "p",
        [
            {"external_id": "t", "text": "hello", "priority": 2},
            {"external_id": 5, "kind": "image", "payload": "https://x/y.png", "source": "audit"},
            {"external_id": "f", "features": np.arange(3.0)},
            {"external_id": "g", "kind": "text", "payload": {"text": "hi", "lang": "en"}},
        ],
        engine=engine,
    )
    items = get_items("p", engine=engine)
    assert [i.item_id for i in items] == ids
    assert [i.payload for i in items] == [
        {"text": "hello"},
        {"url": "https://x/y.png"},
        {"features": [0.0, 1.0, 2.0]},
        {"text": "hi", "lang": "en"},
    ]
    assert [i.external_id for i in items] == ["t", "5", "f", "g"]
    assert [i.source for i in items] == ["import", "audit", "import", "import"]
    assert items[0].priority == 2.0 and items[0].n_labels == 0
    assert get_item("f", project="p", engine=engine) == items[2]


def test_large_payloads_go_to_the_artifact_store(engine: Engine) -> None:
    store = open_artifact_store("memory://label-large")
    text = "x" * 70_000
    [item_id] = add_items(
        "p", [{"external_id": "big", "text": text}], artifacts=store, engine=engine
    )
    item = get_item(item_id, engine=engine)
    assert item.payload is None and item.payload_key is not None
    assert item_payload(item, store) == {"text": text}


def test_duplicate_external_ids_name_them_and_add_nothing(engine: Engine) -> None:
    with pytest.raises(LabelError, match=r"more than once in the items: 'a', 'b'"):
        add_items("p", [{"external_id": x, "text": ""} for x in "abcab"], engine=engine)
    _items(engine, 2)
    with pytest.raises(LabelError, match=r"already has items with the external ids 'e1'"):
        add_items(
            "p",
            [{"external_id": "new", "text": ""}, {"external_id": "e1", "text": ""}],
            engine=engine,
        )
    assert [i.external_id for i in get_items("p", engine=engine)] == ["e0", "e1"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"external_id": "a", "kind": "video", "payload": "x"}, r"kind 'video': expected one of"),
        ({"external_id": "a", "kind": "text", "payload": 3}, r"text item 'a' must be a string"),
        ({"external_id": "a", "features": []}, r"non-empty list of finite numbers"),
        ({"external_id": "a", "features": [1, float("inf")]}, r"finite numbers"),
        ({"external_id": "a", "image": ""}, r"URL or path string"),
        ({"external_id": "", "text": "x"}, r"external_id ''"),
        ({"text": "x"}, r"external_id None"),
        ({"external_id": "a", "text": "x", "priority": float("nan")}, r"'priority'.*Got nan"),
        ({"external_id": "a", "text": "x", "colour": 1}, r"unknown fields \['colour'\]"),
        ({"external_id": "a", "text": "x", "features": [1]}, r"mixes \['features', 'text'\]"),
        ({"external_id": "a", "kind": "text", "payload_key": "abc"}, r"payload_key 'abc'"),
        ("just a string", r"Item #1 is 'just a string', not a dict"),
    ],
)
def test_bad_items(engine: Engine, item: object, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        add_items("p", [{"external_id": "ok", "text": "fine"}, item], engine=engine)  # type: ignore[list-item]
    assert get_items("p", engine=engine) == []


def test_item_notes_are_stored_and_read_back(engine: Engine) -> None:
    why = "champion margin 0.04 < 0.2; challenger digits@4 says 7"
    ids = add_items(
        "p",
        [
            {"external_id": "routed", "features": [0.5, 1.0], "note": why, "priority": 2},
            {"external_id": "plain", "text": "no note"},
            {"external_id": "none", "kind": "text", "payload": "x", "note": None},
            {"external_id": "long", "text": "x", "note": "n" * MAX_NOTE_CHARS},
        ],
        engine=engine,
    )
    assert [i.note for i in get_items("p", engine=engine)] == [why, None, None, "n" * 1000]
    assert get_item("routed", project="p", engine=engine).note == why
    assert [i.note for i in get_items("p", item_ids=ids[:2], engine=engine)] == [why, None]
    # Every other reader of items (the queue's leases here) carries the note too.
    [lease] = next_items("p", "ana", 1, engine=engine)
    assert lease.item.external_id == "routed" and lease.item.note == why
    # Items built by position, as before notes existed, have none.
    old = Item(1, 1, "x", "text", {"text": "hi"}, None, "import", 0.0, 0, datetime.now(UTC))
    assert old.note is None


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (3, r"note 3 \(int\): expected None or a non-blank string of at most 1000 characters"),
        ("", r"note '': expected None or a non-blank string"),
        ("  \n", r"note '  \\n': expected None or a non-blank string"),
        ("x" * 1001, r"note a string of 1001 characters: expected .* at most 1000 characters"),
        (["why"], r"note \['why'\] \(list\)"),
    ],
)
def test_bad_notes_are_refused_and_nothing_is_added(
    engine: Engine, note: object, message: str
) -> None:
    items = [
        {"external_id": "ok", "text": "fine"},
        {"external_id": "bad", "text": "x", "note": note},
    ]
    with pytest.raises(LabelError, match=r"Item 'bad' has " + message) as info:
        add_items("p", items, engine=engine)
    assert "nothing was added" in str(info.value)
    assert get_items("p", engine=engine) == []


def test_unknown_items(engine: Engine) -> None:
    with pytest.raises(LabelNotFoundError, match=r"No item 'zz' in project 'p'"):
        get_item("zz", project="p", engine=engine)
    with pytest.raises(LabelError, match=r"external id: pass the project too"):
        get_item("zz", engine=engine)


# -- annotations ------------------------------------------------------------------------------


def test_annotate_records_an_event(engine: Engine) -> None:
    [item] = _items(engine, 1)
    event = annotate("p", item, "ana", "dog", seconds=3.25, reason="clear", engine=engine)
    assert (event.label, event.skipped, event.origin, event.seconds) == (
        "dog",
        False,
        "human",
        3.25,
    )
    assert history(item, engine=engine) == [event]
    assert get_item(item, engine=engine).n_labels == 1


def test_label_must_be_a_class(engine: Engine) -> None:
    [item] = _items(engine, 1)
    with pytest.raises(
        LabelError,
        match=r"Label 'cow' is not a class of project 'p'\. "
        r"Accepted: \['cat', 'dog', '7'\], or None to skip",
    ):
        annotate("p", item, "ana", "cow", engine=engine)
    assert annotate("p", item, "ana", 7, engine=engine).label == "7"  # ints match their string
    numpy_int: object = np.int64(7)
    assert annotate("p", item, "ana", numpy_int, engine=engine).label == "7"  # type: ignore[arg-type]
    with pytest.raises(LabelError, match=r"Label True"):
        annotate("p", item, "ana", True, engine=engine)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": "oracle"}, r"'origin' parameter must be one of \['human', 'model'"),
        ({"seconds": -1}, r"'seconds'.*>= 0\. Got -1"),
        ({"seconds": "fast"}, r"'seconds'.*finite number\. Got 'fast'"),
        ({"reason": 5}, r"'reason'"),
    ],
)
def test_bad_annotation_parameters(engine: Engine, kwargs: dict[str, object], message: str) -> None:
    [item] = _items(engine, 1)
    with pytest.raises(LabelError, match=message):
        annotate("p", item, "ana", "cat", engine=engine, **kwargs)  # type: ignore[arg-type]
    assert history(item, engine=engine) == []


def test_only_people_skip(engine: Engine) -> None:
    [item] = _items(engine, 1)
    with pytest.raises(LabelError, match=r"origin 'model' needs a label"):
        annotate("p", item, "model-v1", None, origin="model", engine=engine)


def test_item_must_belong_to_the_project(engine: Engine) -> None:
    create_project("other", ["x", "y"], engine=engine)
    [foreign] = add_items("other", [{"external_id": "o", "text": ""}], engine=engine)
    with pytest.raises(LabelNotFoundError, match=rf"No item {foreign} in project 'p'"):
        annotate("p", foreign, "ana", "cat", engine=engine)


def test_corrections_count_once_and_skips_not_at_all(engine: Engine) -> None:
    [item] = _items(engine, 1)
    annotate("p", item, "ana", None, engine=engine)
    assert get_item(item, engine=engine).n_labels == 0
    annotate("p", item, "ana", "cat", engine=engine)
    annotate("p", item, "ana", "dog", engine=engine)
    annotate("p", item, "model", "dog", origin="model", engine=engine)
    assert get_item(item, engine=engine).n_labels == 1
    annotate("p", item, "bo", "dog", engine=engine)
    assert get_item(item, engine=engine).n_labels == 2


def test_current_label_precedence(engine: Engine) -> None:
    a, b, c, d = _items(engine, 4)
    annotate("p", a, "m", "cat", origin="model", engine=engine)
    annotate("p", a, "ana", "dog", engine=engine)
    annotate("p", a, "m", "cat", origin="model", engine=engine)  # a later model label loses
    annotate("p", b, "ana", "dog", engine=engine)
    annotate("p", b, "rita", "cat", origin="review", engine=engine)
    annotate("p", b, "bo", "dog", engine=engine)  # a reviewer's call wins over people
    annotate("p", c, "imp", "7", origin="import", engine=engine)
    annotate("p", c, "m", "cat", origin="model", engine=engine)  # same rank: the later one
    annotate("p", d, "ana", None, engine=engine)  # only a skip: no label
    current = current_labels("p", engine=engine)
    assert {k: v.label for k, v in current.items()} == {a: "dog", b: "cat", c: "cat"}
    assert (current[b].origin, current[b].annotator, current[b].external_id) == (
        "review",
        "rita",
        "e1",
    )


def _reference_current(events: list[tuple[int, str | None, str]]) -> dict[int, str]:
    """A plain re-statement of the rule, to check current_labels against."""
    result: dict[int, str] = {}
    for item in {e[0] for e in events}:
        mine = [e for e in events if e[0] == item and e[1] is not None]
        for origins in (("review",), ("human",), ("import", "model")):
            chosen = [e for e in mine if e[2] in origins]
            if chosen:
                result[item] = chosen[-1][1]  # type: ignore[assignment]
                break
    return result


def test_current_labels_match_a_reference_on_random_events(engine: Engine) -> None:
    ids = _items(engine, 15)
    rng = random.Random(3)
    events: list[tuple[int, str | None, str]] = []
    for _ in range(120):
        item = rng.choice(ids)
        origin = rng.choice(["human", "human", "human", "model", "import", "review"])
        label = rng.choice(["cat", "dog", "7"])
        if origin == "human" and rng.random() < 0.2:
            label = None  # type: ignore[assignment]
        annotate("p", item, rng.choice(["ana", "bo", "cy"]), label, origin=origin, engine=engine)
        events.append((item, label, origin))
    got = {k: v.label for k, v in current_labels("p", engine=engine).items()}
    assert got == _reference_current(events)


def test_as_of_derives_past_labels(engine: Engine) -> None:
    [item] = _items(engine, 1)
    annotate("p", item, "ana", "cat", engine=engine)
    moment = datetime.now(UTC)
    annotate("p", item, "ana", "dog", engine=engine)
    assert current_labels("p", as_of=moment, engine=engine)[item].label == "cat"
    assert current_labels("p", engine=engine)[item].label == "dog"


def test_history_and_list_annotations_in_order(engine: Engine) -> None:
    a, b = _items(engine, 2)
    first = annotate("p", a, "ana", "cat", engine=engine)
    annotate("p", b, "ana", "dog", engine=engine)
    third = annotate("p", a, "m", "dog", origin="model", engine=engine)
    assert [e.annotation_id for e in history("e0", project="p", engine=engine)] == [
        first.annotation_id,
        third.annotation_id,
    ]
    everything = list_annotations("p", engine=engine)
    assert [e.item_id for e in everything] == [a, b, a]
    assert list_annotations("p", origins=["model"], engine=engine) == [third]
    assert [
        e.annotation_id for e in list_annotations("p", after_id=first.annotation_id, engine=engine)
    ] == [
        everything[1].annotation_id,
        third.annotation_id,
    ]
