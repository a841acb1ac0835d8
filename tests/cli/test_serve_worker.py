"""``inloop serve worker``: a clear error without a stream URL; ready line, clean SIGTERM stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis
import typer
from typer.testing import CliRunner

from inloop.cli import serve
from inloop.serve.models import MajorityClass
from inloop.serve.policy import Policy, create_service
from inloop.serve.registry import register

URL = "redis://127.0.0.1:6379/0"
_MAIN = "from inloop.cli.main import main; main()"


def _app() -> typer.Typer:
    # Registered as the root command does: app.add_typer(serve.app, name="serve").
    root = typer.Typer(add_completion=False)

    @root.callback()
    def _root() -> None:
        """inloop."""

    root.add_typer(serve.app, name="serve")
    return root


@pytest.fixture
def service(redis_client: redis.Redis) -> Iterator[str]:
    """A service of its own (so its stream key is unique), deleted from Redis afterwards."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    champion = register(MajorityClass(["a", "b"], [1, 3]), name="m").ref
    challenger = register(MajorityClass(["a", "b"], [3, 1]), name="m").ref
    create_service(
        name,
        Policy(champion=champion, challengers=[challenger], fallback={"label": "a"}),
        created_by="ana",
        reason="launch",
    )
    try:
        yield name
    finally:
        redis_client.delete(f"inloop:serve:{name}:requests")


def test_without_a_stream_url_it_says_how_to_give_one() -> None:
    result = CliRunner().invoke(_app(), ["serve", "worker", "digits"])
    assert result.exit_code == 1, result.output
    assert "INLOOP_STREAM_URL" in result.output and "--url" in result.output
    assert result.output.startswith("Error:") and result.output.count("\n") == 1


def test_an_unknown_service_is_one_red_line() -> None:
    result = CliRunner().invoke(_app(), ["serve", "worker", "nope", "--url", URL])
    if "Cannot reach Redis" in result.output:
        pytest.skip(f"no Redis at {URL}")
    assert result.exit_code == 1, result.output
    assert "nope" in result.output and result.output.count("\n") == 1


def test_it_prints_the_ready_line_and_stops_on_sigterm(service: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _MAIN,
            "serve",
            "worker",
            service,
            "--url",
            URL,
            "--consumer",
            "host-123",
            "--threads",
            "2",
            "--claim-idle-ms",
            "500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"worker host-123 scoring m@1, m@2 from {URL}; Ctrl-C stops"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "worker host-123 stopped" in err
