"""Fixtures every test shares: an isolated INLOOP_HOME and the real database services.

- ``inloop_home`` (autouse): each test gets its own ``INLOOP_HOME`` and no
  ``INLOOP_*`` setting from the environment, so no test touches ``~/.inloop``.
- ``postgres_url``: a PostgreSQL URL whose connections live in a schema of
  their own, emptied before each test.
- ``db_url``: each test once on SQLite and once on PostgreSQL.
- ``redis_client``: a client of the Redis at ``REDIS_URL``.

A test needing a service that is missing skips with the reason, or fails when
``INLOOP_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from inloop.settings import reset_settings
from inloop.store.db import dispose_engines

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"


def require_services() -> bool:
    """Whether a missing service must fail the test run instead of skipping (CI)."""
    return os.environ.get("INLOOP_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> NoReturn:
    """Skip the current test for ``reason``, or fail it when services are required."""
    if require_services():
        pytest.fail(f"{reason} (INLOOP_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


@pytest.fixture(name="missing_service", scope="session")
def _missing_service_fixture() -> Callable[[str], NoReturn]:
    """:func:`missing_service` for test modules, which cannot import conftest by name."""
    return missing_service


@pytest.fixture(autouse=True)
def inloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``INLOOP_HOME`` with every other ``INLOOP_*`` setting cleared."""
    home = tmp_path / "inloop-home"
    for name in list(os.environ):
        if name.startswith("INLOOP_") and name != "INLOOP_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("INLOOP_HOME", str(home))
    # An inloop.toml in the working directory must not leak into tests.
    monkeypatch.setenv("INLOOP_CONFIG", str(tmp_path / "no-inloop.toml"))
    reset_settings()
    dispose_engines()
    yield home
    dispose_engines()
    reset_settings()


def _connect_admin() -> tuple[str, Any]:
    """A psycopg connection to the test database, trying PGUSER, postgres, then root."""
    try:
        import psycopg
    except ImportError as exc:
        missing_service(f"PostgreSQL tests need psycopg (pip install inloop[postgres]): {exc}")
    users = [u for u in (os.environ.get("PGUSER"), "postgres", "root") if u]
    errors = []
    for user in dict.fromkeys(users):
        try:
            conn = psycopg.connect(
                host=PG_HOST,
                port=PG_PORT,
                dbname=PG_DATABASE,
                user=user,
                autocommit=True,
                connect_timeout=3,
            )
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip()}")
            continue
        # A connection some test leaked must not make TRUNCATE wait forever.
        conn.execute("SET lock_timeout = '10s'")
        return user, conn
    missing_service(
        f"no PostgreSQL at {PG_HOST}:{PG_PORT} database {PG_DATABASE!r} ({'; '.join(errors)})"
    )


@dataclass
class PostgresSchemas:
    """Creates empty schemas in the test database and hands out URLs confined to them.

    Each URL sets ``search_path`` to its own ``inloop_test_<random>`` schema, so
    concurrent test runs (and tests wanting an unmigrated database) never collide.
    """

    user: str
    admin: Any  # psycopg.Connection in autocommit mode
    created: dict[str, str] = field(default_factory=dict)  # url -> schema

    def create(self) -> str:
        """A new empty schema; returns a postgresql+psycopg URL whose connections use it."""
        schema = f"inloop_test_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        url = (
            f"postgresql+psycopg://{self.user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )
        self.created[url] = schema
        return url

    def truncate(self, url: str) -> None:
        """Empty every table but Alembic's in the schema of ``url``; restart identities."""
        schema = self.created[url]
        names = [
            row[0]
            for row in self.admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
                (schema, "alembic_version"),
            )
        ]
        if names:
            tables = ", ".join(f'"{schema}"."{name}"' for name in names)
            self.admin.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    def drop_all(self) -> None:
        for schema in self.created.values():
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.created.clear()


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    """The PostgreSQL test database (skips when absent); its schemas are dropped at the end."""
    user, admin = _connect_admin()
    schemas = PostgresSchemas(user, admin)
    try:
        yield schemas
    finally:
        dispose_engines()  # open connections would make DROP SCHEMA wait
        schemas.drop_all()
        admin.close()


@pytest.fixture(scope="session")
def _session_postgres_url(postgres_schemas: PostgresSchemas) -> str:
    return postgres_schemas.create()


@pytest.fixture
def postgres_url(postgres_schemas: PostgresSchemas, _session_postgres_url: str) -> str:
    """URL of this test run's PostgreSQL schema, with every table emptied before the test.

    One schema per run (not per test) keeps the suite fast: it is migrated
    once, then truncated, and identity counters restart so run ids begin at 1
    as in a fresh SQLite file. Use ``postgres_schemas.create()`` for a
    database that has never been migrated.
    """
    postgres_schemas.truncate(_session_postgres_url)
    return _session_postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, inloop_home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The metadata database URL, once SQLite (a file in tmp) and once PostgreSQL.

    Also set as ``INLOOP_DB_URL``, so code using the default engine follows it.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{inloop_home / 'inloop.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("INLOOP_DB_URL", url)
    reset_settings()
    return url


S3_BUCKET = "inloop-test"


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 with the bucket ``inloop-test`` created."""
    try:
        import boto3
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        missing_service(f"S3 tests need moto[server], boto3 and s3fs: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        # Dummy credentials, and no user AWS config that could point elsewhere.
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_SESSION_TOKEN", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        # One log line per request would bury a failing test's own output.
        mp.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        try:
            server.start()
        except OSError as exc:
            missing_service(f"cannot start the moto S3 server on 127.0.0.1: {exc}")
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A redis-py client of the Redis at ``REDIS_URL`` (skip, or fail in CI, without one)."""
    try:
        import redis
    except ImportError as exc:
        missing_service(f"Redis tests need redis-py (pip install inloop[redis]): {exc}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        missing_service(f"no Redis at {REDIS_URL}: {exc}")
    try:
        yield client
    finally:
        client.close()
