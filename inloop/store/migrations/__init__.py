"""Alembic migrations of the metadata database, run by :func:`inloop.store.db.get_engine`.

A package (not a plain folder) so the migration scripts ship inside the wheel.
"""
