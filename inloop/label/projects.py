"""Labeling projects: what is labeled, into which classes, by how many people.

A project names its classes (each with an optional one-character keyboard
key), the instructions annotators read, how many annotators each item needs
(``overlap``) and how long an item handed out stays with one annotator
(``lease_seconds``, 10 minutes by default). Every other labeling function takes
a project by name, by id or as the :class:`Project` this module returns.

>>> from inloop.store import get_engine
>>> engine = get_engine("sqlite://")
>>> project = create_project("sentiment-doc", ["pos", "neg"], engine=engine)
>>> get_project("sentiment-doc", engine=engine).class_names
('pos', 'neg')
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, select
from sqlalchemy.exc import IntegrityError

from inloop.errors import InloopError, quote
from inloop.label.tables import TASK_TYPES, label_projects
from inloop.store.db import begin_write, get_engine
from inloop.store.text import INT32_MAX, unstorable_message

__all__ = [
    "LabelClass",
    "LabelError",
    "LabelNotFoundError",
    "Project",
    "ProjectRef",
    "create_project",
    "get_project",
    "list_projects",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")
_NAME_RULE = (
    "a name of 1 to 255 letters, digits, '_', '.' or '-', starting with a letter or digit, "
    "such as 'digits' or 'support-tickets'"
)
_MAX_NAME = 255
_MAX_INT = INT32_MAX  # overlap and lease_seconds are Integer columns


class LabelError(InloopError, ValueError):
    """A labeling call got a value it cannot accept; the message says what would be."""


class LabelNotFoundError(LabelError, LookupError):
    """No labeling project, item, lease or snapshot matches the reference given."""


@dataclass(frozen=True)
class LabelClass:
    """One class of a project and the key that picks it on the labeling page (or None)."""

    name: str
    key: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The class as stored: ``{"name": ..., "key": ...}``."""
        return {"name": self.name, "key": self.key}


@dataclass(frozen=True)
class Project:
    """A labeling project as stored.

    ``overlap`` is how many different annotators label each item through the
    queue; ``lease_seconds`` is how long an item handed to one annotator stays
    theirs before it returns to the queue.
    """

    project_id: int
    name: str
    task_type: str
    classes: tuple[LabelClass, ...]
    instructions: str
    overlap: int
    lease_seconds: int
    created_at: datetime
    created_by: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names in their order."""
        return tuple(c.name for c in self.classes)


#: How other functions accept a project: its name, its id or the record.
ProjectRef = str | int | Project


def _now() -> datetime:
    return datetime.now(UTC)


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def _check_classes(classes: object) -> tuple[LabelClass, ...]:
    accepted = (
        "Pass a list of at least 2 class names, or of {'name': ..., 'key': ...} with distinct "
        "names and distinct one-character keys, such as ['cat', 'dog'] or "
        "[{'name': 'cat', 'key': 'c'}, {'name': 'dog', 'key': 'd'}]."
    )
    if isinstance(classes, str | bytes | Mapping) or not isinstance(classes, Iterable):
        raise LabelError(
            f"The 'classes' parameter must be a list of classes. Got {quote(classes)}. " + accepted
        )
    checked: list[LabelClass] = []
    for index, entry in enumerate(classes):
        if isinstance(entry, LabelClass):
            name, key = entry.name, entry.key
        elif isinstance(entry, str):
            name, key = entry, None
        elif isinstance(entry, Mapping) and set(entry) <= {"name", "key"} and "name" in entry:
            name, key = entry["name"], entry.get("key")
        else:
            raise LabelError(f"Invalid class {quote(entry)} in 'classes'. {accepted}")
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
            raise LabelError(
                f"Invalid class name {quote(name)}: a class name must be a non-empty string of at "
                f"most {_MAX_NAME} characters. {accepted}"
            )
        if key is not None and (not isinstance(key, str) or len(key) != 1 or key.isspace()):
            raise LabelError(
                f"Invalid key {quote(key)} for class {quote(name)}: a key must be one printable "
                f"character such as '1' or 'c', or None. {accepted}"
            )
        check_storable(name, f"classes[{index}]")
        if key is not None:
            check_storable(key, f"classes[{index}].key")
        checked.append(LabelClass(name, key))
    if len(checked) < 2:
        raise LabelError(f"A project needs at least 2 classes. Got {len(checked)}. {accepted}")
    names = [c.name for c in checked]
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise LabelError(f"Class names must be distinct. Repeated: {dup_names}. {accepted}")
    keys = [c.key for c in checked if c.key is not None]
    dup_keys = sorted({k for k in keys if keys.count(k) > 1})
    if dup_keys:
        raise LabelError(f"Class keys must be distinct. Repeated: {dup_keys}. {accepted}")
    return tuple(checked)


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LabelError(
            f"The {name!r} parameter of create_project must be an int >= 1. Got {quote(value)}."
        )
    if value > _MAX_INT:
        raise LabelError(
            f"The {name!r} parameter of create_project must be at most {_MAX_INT}. "
            f"Got {quote(value)}."
        )
    return value


def check_storable(value: object, field: str) -> None:
    """Raise :class:`LabelError` when ``value`` holds text no database can store.

    NUL characters and lone UTF-16 surrogates (see :mod:`inloop.store.text`);
    ``field`` names the value in the message, with the path inside it.

    >>> check_storable({"text": "a\\x00"}, "items[0]")
    Traceback (most recent call last):
    ...
    inloop.label.projects.LabelError: The field "items[0]['text']" contains a NUL character ...
    """
    message = unstorable_message(value, field)
    if message is not None:
        raise LabelError(message)


def _check_settings(settings: object) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise LabelError(
            f"The 'settings' parameter of create_project must be a dict of JSON values or None. "
            f"Got {quote(settings)}."
        )
    try:
        json.dumps(settings, allow_nan=False)
        check_storable(settings, "settings")
    except LabelError:
        raise
    except (TypeError, ValueError) as exc:
        raise LabelError(
            f"The 'settings' of a project must be JSON values (str, number, bool, list, dict): "
            f"{exc}."
        ) from None
    return dict(settings)


def create_project(
    name: str,
    classes: Iterable[str | LabelClass | Mapping[str, Any]],
    *,
    task_type: str = "single_label",
    instructions: str = "",
    overlap: int = 1,
    lease_seconds: int = 600,
    created_by: str | None = None,
    settings: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> Project:
    """Create a labeling project and return it.

    ``classes`` are names or ``{"name", "key"}`` dicts (``key``: one character
    that picks the class on the labeling page). ``task_type`` is
    ``single_label`` (one class per answer) or ``multi_label`` (a set of
    classes per answer). ``created_by`` defaults to the current user
    (``INLOOP_USER`` or the login name).

    >>> from inloop.store import get_engine
    >>> p = create_project(
    ...     "cats-doc", [{"name": "cat", "key": "c"}, "dog"], overlap=2, engine=get_engine("sqlite://")
    ... )
    >>> (p.overlap, p.classes[0].key, p.lease_seconds)
    (2, 'c', 600)
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LabelError(f"Invalid project name {quote(name)}: expected {_NAME_RULE}.")
    if task_type not in TASK_TYPES:
        raise LabelError(
            f"The 'task_type' parameter of create_project must be one of {list(TASK_TYPES)} "
            f"('multi_label': each answer is a set of classes). Got {task_type!r}."
        )
    checked_classes = _check_classes(classes)
    if not isinstance(instructions, str):
        raise LabelError(
            "The 'instructions' parameter of create_project must be a string. "
            f"Got {quote(instructions)}."
        )
    check_storable(instructions, "instructions")
    overlap = _check_positive_int("overlap", overlap)
    lease_seconds = _check_positive_int("lease_seconds", lease_seconds)
    checked_settings = _check_settings(settings)
    if created_by is None:
        from inloop.flow.user import get_username

        created_by = get_username()
    check_storable(created_by, "created_by")
    now = _now()
    row = {
        "name": name,
        "task_type": task_type,
        "classes": [c.to_json() for c in checked_classes],
        "instructions": instructions,
        "overlap": overlap,
        "lease_seconds": lease_seconds,
        "created_at": now,
        "created_by": created_by,
        "settings": checked_settings,
    }
    engine = _engine(engine)
    try:
        with begin_write(engine) as conn:
            taken = conn.execute(
                select(label_projects.c.created_by, label_projects.c.created_at).where(
                    label_projects.c.name == name
                )
            ).first()
            if taken is not None:
                raise _duplicate(name, taken.created_by, taken.created_at)
            result = conn.execute(label_projects.insert(), row)
            pk = result.inserted_primary_key
            project_id = int(pk[0]) if pk is not None else 0
    except IntegrityError:
        # Another process created it between our check and our insert.
        raise _duplicate(name, None, None) from None
    return Project(project_id=project_id, classes=checked_classes, **_without(row, "classes"))


def _without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


def _duplicate(name: str, by: str | None, at: datetime | None) -> LabelError:
    made = f" (created by {by} at {at:%Y-%m-%d %H:%M} UTC)" if by and at else ""
    return LabelError(
        f"A labeling project named {quote(name)} already exists{made}. Choose another name, or "
        f"use get_project({quote(name)}) to work on it."
    )


def _project_from_row(row: Row[Any]) -> Project:
    return Project(
        project_id=row.project_id,
        name=row.name,
        task_type=row.task_type,
        classes=tuple(LabelClass(c["name"], c.get("key")) for c in row.classes),
        instructions=row.instructions,
        overlap=row.overlap,
        lease_seconds=row.lease_seconds,
        created_at=row.created_at,
        created_by=row.created_by,
        settings=dict(row.settings or {}),
    )


def load_project(conn: Connection, project: ProjectRef, *, lock: bool = False) -> Project:
    """The project ``project`` refers to, read on ``conn`` (for the other label modules).

    ``lock`` takes the project's row lock on PostgreSQL (``FOR UPDATE``), which
    serializes writers that must see each other (snapshot names).
    """
    if isinstance(project, Project):
        query = select(label_projects).where(label_projects.c.project_id == project.project_id)
    elif isinstance(project, bool) or not isinstance(project, str | int):
        raise LabelError(
            f"Invalid project reference {quote(project)}: pass a project name, id or Project."
        )
    elif isinstance(project, int):
        query = select(label_projects).where(label_projects.c.project_id == project)
    else:
        query = select(label_projects).where(label_projects.c.name == project)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        names = list(
            conn.execute(
                select(label_projects.c.name).order_by(label_projects.c.name).limit(20)
            ).scalars()
        )
        known = ", ".join(repr(n) for n in names) if names else "none yet"
        label = project.name if isinstance(project, Project) else project
        raise LabelNotFoundError(
            f"No labeling project {label!r}. Known projects: {known}. "
            "Create one with create_project(name, classes)."
        )
    return _project_from_row(row)


def get_project(project: ProjectRef, *, engine: Engine | None = None) -> Project:
    """The project with this name or id, read fresh from the database.

    >>> from inloop.store import get_engine
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("get-doc", ["a", "b"], engine=engine)
    >>> get_project("get-doc", engine=engine).name
    'get-doc'
    """
    with _engine(engine).connect() as conn:
        return load_project(conn, project)


def list_projects(*, engine: Engine | None = None) -> list[Project]:
    """Every labeling project, sorted by name.

    >>> from inloop.store import get_engine
    >>> engine = get_engine("sqlite://")
    >>> _ = create_project("list-doc", ["a", "b"], engine=engine)
    >>> "list-doc" in [p.name for p in list_projects(engine=engine)]
    True
    """
    with _engine(engine).connect() as conn:
        rows = conn.execute(select(label_projects).order_by(label_projects.c.name)).all()
    return [_project_from_row(r) for r in rows]


def require_single_label(project: Project, what: str) -> None:
    """Refuse a multi-label ``project`` in ``what``, which handles one class per item only."""
    if project.task_type != "single_label":
        raise LabelError(
            f"{what} supports single-label projects; project {project.name!r} is "
            f"{project.task_type.replace('_', '-')}."
        )


def check_finite(name: str, value: object, where: str) -> float:
    """``value`` as a float when it is a finite real number, else a LabelError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if isinstance(value, np.integer | np.floating):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise LabelError(
                f"The {quote(name)} parameter of {where} must be a finite number. "
                f"Got {quote(value)}."
            ) from None
    number = float(value)
    if not math.isfinite(number):
        raise LabelError(
            f"The {quote(name)} parameter of {where} must be a finite number. Got {quote(value)}."
        )
    return number
