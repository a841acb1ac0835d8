"""``inloop server`` as a real process: how it stops, and what it believes of a proxy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inloop.store.db import dispose_engines, get_engine
from inloop.web.auth import create_user

_MAIN = "from inloop.cli.main import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, home: Path, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MAIN, "server", "--no-learn", "--port", str(self.port)],
            env={**os.environ, "INLOOP_HOME": str(home), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_up(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"inloop server exited with {self.process.returncode}:\n{out}")
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"inloop server did not answer at {self.url} within {seconds} s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()


@pytest.fixture
def home(inloop_home: Path) -> Iterator[Path]:
    yield inloop_home
    dispose_engines()


def test_server_exits_0_on_sigterm(home: Path) -> None:
    server = Server(home)
    try:
        server.wait_up()
    except BaseException:
        server.stop()
        raise
    assert server.stop() == 0


def _sign_in(url: str, token: str, forwarded: dict[str, str]) -> httpx.Response:
    """GET the form and POST it back, cookies by hand (a Secure cookie is not sent over http)."""
    form = httpx.get(url + "/login", headers=forwarded)
    value = form.cookies["inloop_login_csrf"]
    return httpx.post(
        url + "/login",
        data={"token": token, "next": "/", "csrf_token": value},
        headers={**forwarded, "Cookie": f"inloop_login_csrf={value}"},
    )


def _set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_forwarded_headers_count_only_from_a_trusted_proxy(home: Path) -> None:
    token = create_user("ana", "annotator", engine=get_engine())
    dispose_engines()
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}

    untrusted = Server(home, INLOOP_SIGNIN_LIMIT="2/minute")
    try:
        untrusted.wait_up()
        signed_in = _sign_in(untrusted.url, token, https)
        assert signed_in.status_code == 303
        cookies = _set_cookies(signed_in)
        assert cookies and not any("secure" in c.lower() for c in cookies), cookies
        # X-Forwarded-For is not believed either: failures count against the real address.
        for forwarded_for in ("203.0.113.1", "203.0.113.2"):
            wrong = _sign_in(untrusted.url, "nope", {"X-Forwarded-For": forwarded_for})
            assert wrong.status_code == 303
        refused = _sign_in(untrusted.url, token, {"X-Forwarded-For": "203.0.113.3"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    finally:
        assert untrusted.stop() == 0

    trusted = Server(home, INLOOP_SIGNIN_LIMIT="2/minute", INLOOP_TRUSTED_PROXIES="127.0.0.1")
    try:
        trusted.wait_up()
        signed_in = _sign_in(trusted.url, token, https)
        assert signed_in.status_code == 303
        cookies = _set_cookies(signed_in)
        assert len(cookies) == 2 and all("secure" in c.lower() for c in cookies), cookies
        for _ in range(2):
            assert (
                _sign_in(trusted.url, "nope", {"X-Forwarded-For": "203.0.113.1"}).status_code == 303
            )
        assert _sign_in(trusted.url, token, {"X-Forwarded-For": "203.0.113.1"}).status_code == 429
        # Another client behind the same proxy still signs in.
        assert _sign_in(trusted.url, token, {"X-Forwarded-For": "203.0.113.2"}).status_code == 303
    finally:
        assert trusted.stop() == 0
