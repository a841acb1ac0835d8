"""The metadata database: one engine per URL, with its schema kept at the newest revision.

SQLite (a file in ``INLOOP_HOME``) is the embedded default; PostgreSQL is the
scaled one. :func:`get_engine` is the only way in: it checks the URL, sets
SQLite up for several processes at once (WAL, a 30 s busy timeout, foreign
keys) and upgrades the schema the first time a process uses a database. A
SQLite file it creates, and its folder, are readable by the owner only.

That check costs one ``SELECT`` of Alembic's version table; Alembic itself is
imported only when the database is behind. Adding a migration means adding a
revision under ``migrations/versions`` and appending it to ``REVISIONS``.

>>> engine = get_engine("sqlite://")  # in memory
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from inloop.errors import ConfigError, MissingExtraError, SchemaError, StoreError
from inloop.settings import get_settings
from inloop.store.private import create_private_file, make_private_dir

__all__ = [
    "HEAD_REVISION",
    "REVISIONS",
    "SCHEMA_MODULES",
    "begin_write",
    "dispose_engines",
    "get_engine",
    "is_memory_database",
    "schema_metadata",
]

#: Every revision in ``migrations/versions``, oldest first (a test keeps them in step).
REVISIONS: tuple[str, ...] = (
    "0001",
    "0002",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
    "0011",
    "0012",
)
#: The revision this inloop's tables describe.
HEAD_REVISION = REVISIONS[-1]
#: Modules whose tables live on ``inloop.store.tables.metadata``. The store does not
#: import the parts above it; it imports these by name only when it builds or migrates
#: a schema, so that ``metadata`` is complete then (see :func:`schema_metadata`).
SCHEMA_MODULES: tuple[str, ...] = (
    "inloop.store.tables",
    "inloop.label.tables",
    "inloop.web.tables",
    "inloop.serve.tables",
)

_ACCEPTED_URLS = (
    "sqlite:///path/to/inloop.db, sqlite:// (in memory) or postgresql+psycopg://user@host/db"
)
_SQLITE_BUSY_TIMEOUT_MS = 30_000
# Key of the PostgreSQL advisory lock held while migrating ("inloop" in ASCII).
_PG_MIGRATION_LOCK = 0x696E6C6F6F70
# Execution option that makes a SQLite transaction take the write lock at BEGIN.
_WRITE_OPTION = "inloop_write"

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """Return the engine of the metadata database at ``url``, creating it once per process.

    ``url`` defaults to ``get_settings().resolved_db_url`` (SQLite in
    ``INLOOP_HOME``). On first use the schema is brought to :data:`HEAD_REVISION`;
    a database migrated by a newer inloop raises :class:`~inloop.errors.SchemaError`.
    """
    if url is None:
        url = get_settings().resolved_db_url
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            try:
                _ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every cached engine's connections and forget them (tests, shutdown)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front.

    A plain SQLite transaction starts as a reader and fails at once with
    "database is locked" when it later writes after another process did;
    taking the lock at ``BEGIN IMMEDIATE`` makes it wait (up to the busy
    timeout) instead. On PostgreSQL this is an ordinary transaction.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


def schema_metadata() -> MetaData:
    """The ``MetaData`` holding every inloop table, after importing :data:`SCHEMA_MODULES`.

    Use it wherever the whole schema matters (creating a database, Alembic's
    environment, schema comparisons); plain queries import their own tables.
    """
    import importlib

    for name in SCHEMA_MODULES:
        importlib.import_module(name)
    from inloop.store.tables import metadata

    return metadata


def _normalize_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"The metadata database URL {raw!r} cannot be parsed. Accepted: {_ACCEPTED_URLS}. "
            "Set INLOOP_DB_URL or db_url in inloop.toml."
        ) from None
    backend = url.get_backend_name()
    if backend == "postgres" or url.drivername == "postgresql":
        # psycopg 3 is the driver inloop installs (inloop[postgres]).
        url = url.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"The metadata database URL {url.render_as_string(hide_password=True)!r} uses the "
            f"unsupported scheme {url.drivername!r}. Accepted: {_ACCEPTED_URLS}. "
            "Set INLOOP_DB_URL or db_url in inloop.toml."
        )
    return url


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.query)


def is_memory_database(engine: Engine) -> bool:
    """Whether ``engine`` is an in-memory SQLite database (no other process can open it).

    >>> is_memory_database(get_engine("sqlite://"))
    True
    """
    return engine.dialect.name == "sqlite" and _is_memory(engine.url)


def _create_engine(raw: str) -> Engine:
    url = _normalize_url(raw)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if _is_memory(url):
            # One shared connection, or every pooled connection gets its own empty database.
            kwargs.update(poolclass=pool.StaticPool, connect_args={"check_same_thread": False})
        else:
            # Made here, not by SQLite, so that it is the owner's only; SQLite gives its
            # -wal and -shm files the database file's mode.
            path = Path(url.database or "").expanduser()
            make_private_dir(path.parent)
            create_private_file(path)
    try:
        engine = create_engine(url, **kwargs)
    except ImportError as exc:  # psycopg (or its libpq binding) is missing
        shown = url.render_as_string(hide_password=True)
        raise MissingExtraError("postgres", f"The metadata database {shown!r}", exc) from None
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"No driver for the metadata database URL "
            f"{url.render_as_string(hide_password=True)!r} ({exc}). For PostgreSQL install "
            "inloop[postgres] and use postgresql+psycopg://user@host/db."
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_on_begin): the sqlite3 module's
    # own transaction handling skips BEGIN before SELECT and DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first, so the switch to WAL waits for other processes.
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the lock.

    Two processes switching a new database to WAL at once would deadlock, so
    SQLite answers one of them "database is locked" at once instead of waiting
    out the busy timeout.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000.0
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(_WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None when it has no schema yet."""
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        detail = " ".join(str(exc.orig).split())  # drivers answer over several lines
        raise StoreError(
            f"Cannot connect to the metadata database {_describe(engine)!r} ({detail}). "
            "Check INLOOP_DB_URL and that the database server is running."
        ) from exc
    with conn:
        try:
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except DBAPIError:
            return None  # no version table: a new database (migrating reports real faults)
    return None if row is None else str(row[0])


def _ensure_schema(engine: Engine) -> None:
    revision = _current_revision(engine)
    if revision == HEAD_REVISION:
        return
    _check_not_newer(engine, revision)
    if revision is None and _create_new(engine):
        return
    _upgrade(engine)


def _create_new(engine: Engine) -> bool:
    """Give an empty database the current schema at once, stamped at the head revision.

    Running every migration would build the same schema (a test checks that the
    migrations and the tables agree) but costs importing Alembic on a user's first
    command. Returns False, touching nothing, if the database is not empty.
    """
    from sqlalchemy import inspect, text

    metadata = schema_metadata()
    with begin_write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        existing = set(inspect(conn).get_table_names())
        if existing & ({"alembic_version"} | set(metadata.tables)):
            return False
        metadata.create_all(conn)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": HEAD_REVISION})
    return True


def _check_not_newer(engine: Engine, revision: str | None) -> None:
    if revision is not None and revision not in REVISIONS:
        raise SchemaError(
            f"The metadata database {_describe(engine)!r} is at schema revision {revision!r}, "
            f"newer than this inloop knows (newest: {HEAD_REVISION!r}). Upgrade inloop "
            "(pip install -U inloop) or point INLOOP_DB_URL at another database."
        )


def _upgrade(engine: Engine) -> None:
    # Imported here: a process whose database is current never pays for Alembic.
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    location = str(Path(__file__).with_name("migrations"))
    config.set_main_option("script_location", location.replace("%", "%%"))
    with begin_write(engine) as conn:
        # Another process may be migrating the same database right now: the
        # SQLite write lock (BEGIN IMMEDIATE) or this advisory lock serializes
        # us behind it, and Alembic then finds the schema already current.
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        row = None
        try:
            with conn.begin_nested():
                row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except DBAPIError:
            pass
        _check_not_newer(engine, None if row is None else str(row[0]))
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:
            raise SchemaError(
                f"Cannot upgrade the metadata database {_describe(engine)!r} to schema revision "
                f"{HEAD_REVISION!r}: {exc}. Upgrade inloop, or point INLOOP_DB_URL at another "
                "database."
            ) from exc


def _after_fork_in_child() -> None:
    # Pooled connections belong to the parent; a child must open its own.
    for engine in list(_engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
