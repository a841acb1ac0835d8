"""Fixtures the web tests share: the database engine and an app client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.store.db import get_engine
from inloop.web import create_app


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine)) as client:
        yield client
