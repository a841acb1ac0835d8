"""Signing in (inloop/web/signin.py): the login form's CSRF token and the attempt limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from inloop.settings import reset_settings
from inloop.web import create_app
from inloop.web.auth import SESSION_COOKIE, create_user
from inloop.web.signin import LOGIN_CSRF_COOKIE, SignInThrottle

Login = Callable[..., Any]


def test_the_login_form_needs_its_csrf_token(client: TestClient, engine: Engine) -> None:
    token = create_user("ana", "annotator", engine=engine)
    # A form posted from another site: no pre-session cookie, no form token.
    forged = client.post("/login", data={"token": token}, follow_redirects=False)
    assert forged.status_code == 403 and "came from another site" in forged.text
    assert 'id="login-form"' in forged.text, "the answer is the form, to sign in again"
    assert SESSION_COOKIE not in client.cookies

    form = client.get("/login")
    cookie = next(c for c in form.headers.get_list("set-cookie") if c.startswith(LOGIN_CSRF_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/login" in cookie
    value = client.cookies[LOGIN_CSRF_COOKIE]
    assert f'name="csrf_token" value="{value}"' in form.text
    assert client.get("/login").text.count(value) == 1, "the same token while the cookie lives"
    wrong = client.post(
        "/login", data={"token": token, "csrf_token": value[::-1]}, follow_redirects=False
    )
    assert wrong.status_code == 403 and SESSION_COOKIE not in client.cookies
    ok = client.post("/login", data={"token": token, "csrf_token": value}, follow_redirects=False)
    assert ok.status_code == 303 and SESSION_COOKIE in client.cookies


@pytest.fixture
def limited(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("INLOOP_SIGNIN_LIMIT", "3/minute")
    reset_settings()
    with TestClient(create_app(engine=engine, learners=False, serving=False)) as client:
        yield client


def test_failed_sign_ins_are_limited_with_a_clear_429(
    limited: TestClient, engine: Engine, login: Login
) -> None:
    token = create_user("ana", "annotator", engine=engine)
    for _ in range(5):  # successes do not count
        assert login(limited, token).status_code == 303
    for _ in range(3):
        assert login(limited, "wrong").headers["location"] == "/login?error=token"
    refused = login(limited, token)  # even the right token: it is not looked at
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60
    assert "Too many failed sign-ins" in refused.text and f"{wait} seconds" in refused.text
    assert 'id="login-form"' in refused.text
    # Another address is not held up by this one.
    other = TestClient(limited.app, client=("192.0.2.7", 50000))
    assert login(other, token).status_code == 303


def test_the_throttle_counts_per_address_and_overall() -> None:
    throttle = SignInThrottle("2/minute", "3/minute")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is not None
    assert throttle.retry_after("192.0.2.2") is None
    throttle.failed("192.0.2.2")  # the third failure overall: everyone waits
    wait = throttle.retry_after("192.0.2.3")
    assert wait is not None and 1 <= wait <= 60


@pytest.mark.parametrize("value", ["ten", "10", "0/minute", "-1/minute"])
def test_a_bad_limit_setting_names_the_format(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from inloop.errors import ConfigError
    from inloop.settings import get_settings

    monkeypatch.setenv("INLOOP_SIGNIN_LIMIT", value)
    reset_settings()
    with pytest.raises(ConfigError, match=r"signin_limit .*'10/minute'"):
        get_settings()
