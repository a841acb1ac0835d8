"""Fixtures for the artifact store tests: a real moto S3 server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inloop.store.artifacts import ArtifactStore

S3_BUCKET = "inloop-test"


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
