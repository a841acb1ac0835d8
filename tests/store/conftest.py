"""Fixtures for the artifact store tests: a real moto S3 server on loopback."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from inloop.store.artifacts import ArtifactStore

S3_BUCKET = "inloop-test"


def _missing_service(reason: str) -> NoReturn:
    """Skip the test, or fail it where CI demands every service (INLOOP_REQUIRE_SERVICES=1)."""
    if os.environ.get("INLOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (INLOOP_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 with the bucket ``inloop-test`` created."""
    try:
        import boto3
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        _missing_service(f"S3 tests need moto[server], boto3 and s3fs: {exc}")
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
            _missing_service(f"cannot start the moto S3 server on 127.0.0.1: {exc}")
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3_options(moto_s3_endpoint: str) -> dict[str, Any]:
    """fsspec storage options reaching the moto server."""
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": moto_s3_endpoint, "region_name": "us-east-1"},
    }


@pytest.fixture
def s3_store(s3_options: dict[str, Any]) -> Iterator[ArtifactStore]:
    """An artifact store under a fresh prefix of the moto bucket."""
    store = ArtifactStore(f"s3://{S3_BUCKET}/{uuid.uuid4().hex}", s3_options)
    yield store
    try:
        store._fs_remote.rm(store.url, recursive=True)
    except FileNotFoundError:
        pass  # the test stored nothing


@pytest.fixture
def local_store(tmp_path: Path) -> ArtifactStore:
    """An artifact store in a temporary folder."""
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    """An artifact store in fsspec's in-process memory file system."""
    store = ArtifactStore(f"memory://inloop-test-{uuid.uuid4().hex}")
    yield store
    fs = store._fs_remote
    if fs.exists(store.url):
        fs.rm(store.url, recursive=True)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3), "memory"])
def any_store(request: pytest.FixtureRequest) -> ArtifactStore:
    """Each kind of artifact store in turn."""
    store: ArtifactStore = request.getfixturevalue(f"{request.param}_store")
    return store
