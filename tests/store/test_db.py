"""The metadata database engine: URLs, SQLite set-up, migrations and their fast path."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, select, text

from inloop.errors import ConfigError, SchemaError, StoreError
from inloop.store import db
from inloop.store.db import HEAD_REVISION, REVISIONS, begin_write, dispose_engines, get_engine
from inloop.store.runs import RunStore
from inloop.store.tables import UTCDateTime, metadata

MIGRATIONS = Path(db.__file__).with_name("migrations")


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the test runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def _run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- URLs and caching -----------------------------------------------------------------------


def test_default_engine_is_sqlite_in_inloop_home(inloop_home: Path) -> None:
    engine = get_engine()
    assert engine.dialect.name == "sqlite"
    assert (inloop_home / "inloop.db").is_file()  # parent folder created on the way
    assert get_engine() is engine
    assert get_engine(f"sqlite:///{inloop_home / 'inloop.db'}") is engine  # cached by URL


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_a_new_sqlite_database_and_its_folders_are_the_owners_only(inloop_home: Path) -> None:
    engine = get_engine()  # SQLite in INLOOP_HOME, which does not exist yet
    with begin_write(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
    db_file = inloop_home / "inloop.db"
    files = [db_file, db_file.with_name("inloop.db-wal"), db_file.with_name("inloop.db-shm")]
    assert [_mode(p) for p in [inloop_home, *files]] == ["0o700"] + ["0o600"] * 3
    # Deeper folders made on the way are private too; a folder that existed keeps its mode.
    existing = inloop_home.parent / "shared"
    existing.mkdir()
    existing.chmod(0o755)
    deep = existing / "made" / "for"
    get_engine(f"sqlite:///{deep / 'x.db'}")
    modes = [_mode(p) for p in (existing, deep.parent, deep, deep / "x.db")]
    assert modes == ["0o755", "0o700", "0o700", "0o600"]


def test_dispose_engines_forgets_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = get_engine(url)
    dispose_engines()
    assert get_engine(url) is not first


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mongodb://h/db", "oracle+cx_oracle://h"])
def test_unknown_scheme_lists_accepted_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_engine(url)
    message = str(info.value)
    assert url.split(":")[0] in message
    assert "sqlite:///" in message and "postgresql+psycopg://" in message


def test_unparsable_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot be parsed.*sqlite:///"):
        get_engine("not a url")


def test_bad_db_url_setting_reaches_get_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from inloop.settings import reset_settings

    monkeypatch.setenv("INLOOP_DB_URL", "redis://localhost/0")
    reset_settings()
    with pytest.raises(ConfigError, match="redis"):
        get_engine()


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match=r"Cannot connect.*INLOOP_DB_URL"):
        get_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=2")


@pytest.mark.postgres
def test_plain_postgresql_url_uses_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    engine = get_engine(plain)
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            HEAD_REVISION
        )


def test_in_memory_sqlite_shares_one_database() -> None:
    store = RunStore(get_engine("sqlite://"))
    run = store.create_run("F", "ana")
    assert RunStore(get_engine("sqlite://")).get_run(run.run_id) == run


# -- SQLite set-up --------------------------------------------------------------------------


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("busy_timeout") == 30_000
        assert pragma("foreign_keys") == 1


def test_many_connections_opening_a_new_sqlite_database_at_once_all_connect(
    tmp_path: Path,
) -> None:
    # Like several processes starting on a fresh INLOOP_HOME: each connection switches the
    # new file to WAL, and without retrying some of them fail at once with "locked".
    failures: list[str] = []
    for trial in range(60):
        engines = [db._create_engine(f"sqlite:///{tmp_path / f'{trial}.db'}") for _ in range(8)]
        start = threading.Barrier(len(engines))

        def connect(engine: Engine, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                with engine.connect() as conn:
                    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                engine.dispose()

        threads = [threading.Thread(target=connect, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_begin_write_takes_the_sqlite_write_lock_up_front(
    tmp_path: Path, statements: list[str]
) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'w.db'}")
    statements.clear()
    with begin_write(engine) as conn:
        conn.execute(select(1))
    with engine.connect() as conn:
        conn.execute(select(1))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN"]


def test_begin_write_rolls_back_on_error(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(RuntimeError), begin_write(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO runs (flow_name, user, status, created_at, heartbeat_at, "
                "parameters, executor, host) VALUES ('F', 'u', 'running', "
                "'2024-01-01', '2024-01-01', '{}', 'local', 'h')"
            )
        )
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0


# -- migrations -----------------------------------------------------------------------------


def test_revisions_match_the_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_heads() == [HEAD_REVISION]
    oldest_first = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert tuple(oldest_first) == REVISIONS


def test_migrations_ship_in_the_package() -> None:
    # find_packages() only picks up folders with __init__.py: the scripts must be in one.
    assert (MIGRATIONS / "__init__.py").is_file()
    assert (MIGRATIONS / "versions" / "__init__.py").is_file()
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()


def test_migrated_schema_matches_the_tables(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = get_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            HEAD_REVISION
        )


def test_migration_chain_builds_the_same_schema_as_the_tables(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from inloop.store import db

    # New databases are created from the tables directly; old ones go through
    # every migration. Both must end in the same schema.
    engine = create_engine(f"sqlite:///{tmp_path / 'chain.db'}")
    db._upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            HEAD_REVISION
        )
    engine.dispose()


def test_new_sqlite_database_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'new.db'}"
    engine = get_engine(url)
    with engine.connect() as conn:
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "runs", "run_tags", "tasks", "artifacts"} <= names


@pytest.mark.postgres
def test_new_postgres_schema_is_migrated(postgres_schemas: Any) -> None:
    url = postgres_schemas.create()
    store = RunStore(get_engine(url))
    assert store.create_run("F", "ana").run_id == 1


def test_fast_path_is_one_query(tmp_path: Path, statements: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    get_engine(url)
    dispose_engines()
    statements.clear()
    get_engine(url)
    assert [s for s in statements if not s.startswith("BEGIN")] == [
        "SELECT version_num FROM alembic_version"
    ]


def test_fresh_process_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    get_engine(url)
    result = _run_python(
        """
        import json, sys, time
        from inloop.store.db import get_engine
        start = time.perf_counter()
        get_engine(sys.argv[1])
        seconds = time.perf_counter() - start
        print(json.dumps({"alembic": "alembic" in sys.modules, "seconds": seconds}))
        """,
        url,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["alembic"] is False
    assert report["seconds"] < 0.5  # measured ~3 ms; generous for loaded CI machines


def test_newer_schema_is_refused(db_url: str) -> None:
    engine = get_engine(db_url)
    with begin_write(engine) as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    dispose_engines()
    try:
        with pytest.raises(SchemaError) as info:
            get_engine(db_url)
        message = str(info.value)
        assert "9999_future" in message and HEAD_REVISION in message
        assert "Upgrade inloop" in message
    finally:
        # Put it back: the PostgreSQL schema is shared by the tests of this run.
        from sqlalchemy import create_engine

        raw = create_engine(db_url)
        with raw.begin() as conn:
            conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{HEAD_REVISION}'")
        raw.dispose()


_CONCURRENT_START = """
import sys
from inloop.store.db import get_engine
from inloop.store.runs import RunStore
store = RunStore(get_engine(sys.argv[1]))
print(store.create_run("F", "ana").run_id)
"""


def _start_concurrently(url: str, n: int) -> list[int]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_START, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.append(int(out))
    return ids


def test_processes_starting_at_once_on_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'inloop.db'}"
    assert sorted(_start_concurrently(url, 4)) == [1, 2, 3, 4]


@pytest.mark.postgres
def test_processes_starting_at_once_on_a_new_postgres_schema(postgres_schemas: Any) -> None:
    url = postgres_schemas.create()
    assert sorted(_start_concurrently(url, 3)) == [1, 2, 3]


def _child_writes(url: str, queue: Any) -> None:
    try:
        run = RunStore(get_engine(url)).create_run("Child", "ana")
        queue.put(run.run_id)
    except BaseException as exc:  # report, or the parent only sees a timeout
        queue.put(repr(exc))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    store = RunStore(get_engine(url))
    store.create_run("Parent", "ana")  # the pool now holds a connection
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_writes, args=(url, queue))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) == 2
    assert store.create_run("Parent", "ana").run_id == 3


# -- timestamps -----------------------------------------------------------------------------


def test_timestamps_come_back_aware_utc(db_url: str) -> None:
    engine = get_engine(db_url)
    scratch = Table(
        "scratch_times",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("t", UTCDateTime()),
    )
    scratch.create(engine)
    try:
        plus_two = timezone(timedelta(hours=2))
        aware = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two)
        naive_utc = datetime(2024, 5, 1, 12, 0)
        with begin_write(engine) as conn:
            conn.execute(
                scratch.insert(),
                [{"id": 1, "t": aware}, {"id": 2, "t": naive_utc}, {"id": 3, "t": None}],
            )
        with engine.connect() as conn:
            got = dict(conn.execute(select(scratch.c.id, scratch.c.t)).all())
        assert got[1] == aware and got[1].tzinfo == UTC
        assert got[1].hour == 12 and got[1].microsecond == 123456
        assert got[2] == naive_utc.replace(tzinfo=UTC)
        assert got[3] is None
    finally:
        scratch.drop(engine)
