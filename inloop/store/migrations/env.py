"""Alembic environment: runs migrations on the connection inloop hands over.

inloop upgrades the schema itself (:func:`inloop.store.db.get_engine`), inside
a transaction that already holds the database's write lock, and passes that
connection in ``config.attributes["connection"]``. Developers writing a new
revision can run ``alembic`` against a scratch database instead: the URL then
comes from the ``sqlalchemy.url`` option or inloop's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

# Every part's tables, not only the store's: labeling keeps its own on the same metadata.
from inloop.store.db import schema_metadata

metadata = schema_metadata()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite changes most columns only by copying the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from inloop.settings import get_settings

    url = context.config.get_main_option("sqlalchemy.url") or get_settings().resolved_db_url
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "inloop migrations run online only: let inloop.store.db.get_engine() upgrade the "
        "database, or run `alembic upgrade head` without --sql."
    )
_main()
