"""An answered request is archived even if the server, or its archive writer, is SIGKILLed.

Real servers under uvicorn in their own processes, real ``SIGKILL``s, on
SQLite and PostgreSQL: every request whose answer reached the client is in
the archive once a server has started again on the same ``INLOOP_HOME``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from inloop.serve import MajorityClass, create_service, register
from inloop.serve.tables import serve_requests, serve_scores
from inloop.store.db import get_engine
from inloop.web.auth import create_user

REDIS_URL = "redis://127.0.0.1:6379/0"
_MAIN = "from inloop.cli.main import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``inloop.web.app:create_app`` under uvicorn in a process of its own."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "inloop.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if workers > 1:
            command += ["--workers", str(workers)]
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_up(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail(f"the server did not start: {self.log.read_text()[-3000:]}")

    def children(self) -> list[int]:
        """Processes whose parent is the server (its archive writer; uvicorn's workers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(self.process.pid):
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _environment(db_url: str, home: Path) -> dict[str, str]:
    """A service on a MajorityClass champion and canary; the environment of its servers.

    The service's name is unique (``INLOOP_TEST_SERVICE``): its Redis stream is its own.
    """
    engine = get_engine(db_url)
    service = f"kill-{uuid.uuid4().hex[:10]}"
    champion = register(MajorityClass(["a", "b"], [3, 1]), name="m", engine=engine).ref
    canary = register(MajorityClass(["a", "b"], [1, 3]), name="m", engine=engine).ref
    create_service(
        service,
        {
            "champion": champion,
            "canary": canary,
            "fallback": {"label": "a"},
            # About losing nothing, not the deadline: a busy test machine is not refused.
            "schedule": {"deadline_ms": 5000},
        },
        created_by="t",
        reason="t",
        engine=engine,
    )
    token = create_user("sci", "scientist", engine=engine)
    return {
        **os.environ,
        "INLOOP_DB_URL": db_url,
        "INLOOP_HOME": str(home),
        "INLOOP_TEST_TOKEN": token,
        "INLOOP_TEST_SERVICE": service,
    }


@pytest.fixture
def env(db_url: str, inloop_home: Path) -> dict[str, str]:
    """The environment of servers on SQLite, then on PostgreSQL."""
    return _environment(db_url, inloop_home)


@pytest.fixture
def sqlite_env(inloop_home: Path) -> dict[str, str]:
    """The environment of servers on SQLite only (what is tested does not depend on it)."""
    return _environment(f"sqlite:///{inloop_home / 'inloop.db'}", inloop_home)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def _predict_many(server: Server, env: dict[str, str], n: int, threads: int = 8) -> list[str]:
    """Send ``n`` predict requests, ``threads`` at a time; the ids of the answered ones."""
    headers = {"Authorization": f"Bearer {env['INLOOP_TEST_TOKEN']}"}
    path = f"/v1/services/{env['INLOOP_TEST_SERVICE']}/predict"

    def one(i: int) -> str:
        with httpx.Client(base_url=server.url, headers=headers, timeout=20) as http:
            answer = http.post(path, json={"instance": [float(i)]})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["request_id"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def _archived(ids: list[str], db_url: str) -> tuple[set[str], dict[str, int]]:
    """Which of ``ids`` the archive holds, and how many scores each has."""
    engine = get_engine(db_url)
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                select(serve_requests.c.request_id).where(serve_requests.c.request_id.in_(ids))
            ).scalars()
        )
        scores: dict[str, int] = {}
        for request_id in conn.execute(
            select(serve_scores.c.request_id).where(serve_scores.c.request_id.in_(ids))
        ).scalars():
            scores[request_id] = scores.get(request_id, 0) + 1
    return stored, scores


def _wait_archived(ids: list[str], db_url: str, seconds: float = 30.0) -> set[str]:
    """Poll until the archive holds every id of ``ids`` (or ``seconds`` pass); the missing ones."""
    deadline = time.monotonic() + seconds
    while True:
        stored, _ = _archived(ids, db_url)
        missing = set(ids) - stored
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def test_requests_answered_just_before_a_sigkill_are_archived_after_a_restart(
    env: dict[str, str], db_url: str, servers: list[Server], tmp_path: Path
) -> None:
    first = Server(env, tmp_path / "first.log")
    servers.append(first)
    first.wait_up()
    ids = _predict_many(first, env, 300)
    first.kill()  # right after the last answer: its archive is still on its way

    second = Server(env, tmp_path / "second.log")
    servers.append(second)
    second.wait_up()
    missing = _wait_archived(ids, db_url)
    assert not missing, f"{len(missing)} of {len(ids)} answered requests were lost"
    _, scores = _archived(ids, db_url)
    assert set(scores.values()) == {2}  # champion and canary, each once


def test_a_killed_archive_writer_loses_nothing_even_when_the_server_dies_next(
    env: dict[str, str], db_url: str, servers: list[Server], tmp_path: Path
) -> None:
    first = Server(env, tmp_path / "first.log")
    servers.append(first)
    first.wait_up()
    ids = _predict_many(first, env, 100)
    writers = first.children()
    assert len(writers) == 1, writers
    os.kill(writers[0], signal.SIGKILL)
    ids += _predict_many(first, env, 100)
    first.kill()

    second = Server(env, tmp_path / "second.log")
    servers.append(second)
    second.wait_up()
    missing = _wait_archived(ids, db_url)
    assert not missing, f"{len(missing)} of {len(ids)} answered requests were lost"


def test_several_server_processes_killed_at_once_lose_nothing(
    sqlite_env: dict[str, str], servers: list[Server], tmp_path: Path
) -> None:
    env, db_url = sqlite_env, sqlite_env["INLOOP_DB_URL"]
    server = Server(env, tmp_path / "server.log", workers=2)
    servers.append(server)
    server.wait_up()
    ids = _predict_many(server, env, 200)
    workers = [  # not multiprocessing's resource tracker
        pid
        for pid in server.children()
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    # uvicorn starts two new worker processes; one of them replays each dead one's journal.
    missing = _wait_archived(ids, db_url)
    assert not missing, f"{len(missing)} of {len(ids)} answered requests were lost"


def test_over_redis_streams_requests_answered_before_a_sigkill_are_archived(
    sqlite_env: dict[str, str], servers: list[Server], tmp_path: Path, redis_client: Any
) -> None:
    db_url, service = sqlite_env["INLOOP_DB_URL"], sqlite_env["INLOOP_TEST_SERVICE"]
    env = {**sqlite_env, "INLOOP_STREAM_URL": REDIS_URL}
    worker = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "serve", "worker", service],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = Server(env, tmp_path / "first.log")
        servers.append(first)
        first.wait_up()
        ids = _predict_many(first, env, 200)
        first.kill()
        second = Server(env, tmp_path / "second.log")
        servers.append(second)
        second.wait_up()
        missing = _wait_archived(ids, db_url)
    finally:
        worker.terminate()
        worker.wait(20)
        redis_client.delete(f"inloop:serve:{service}:requests")
    assert not missing, f"{len(missing)} of {len(ids)} answered requests were lost"
    _, scores = _archived(ids, db_url)
    assert set(scores.values()) == {2}  # the canary's too (as a timeout if it came too late)
