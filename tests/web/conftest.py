"""Fixtures the web tests share: the database engine, an app client on it, signing in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
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


Login = Callable[..., httpx.Response]


@pytest.fixture
def login() -> Login:
    """``login(client, token, next="/")``: sign in as a browser does (the form, then POST).

    The form sets the login CSRF cookie, which the POST sends back in ``csrf_token``.
    """

    def sign_in(client: TestClient, token: str, next: str = "/", **data: Any) -> httpx.Response:
        client.get("/login")
        form = {"token": token, "next": next, "csrf_token": client.cookies["inloop_login_csrf"]}
        return client.post("/login", data={**form, **data}, follow_redirects=False)

    return sign_in
