"""inloop.store exports a small, sorted public surface."""

from __future__ import annotations

import inloop.store


def test_all_is_sorted_and_public() -> None:
    names = inloop.store.__all__
    assert names == sorted(names)
    assert all(not name.startswith("_") for name in names)
    for name in names:
        assert getattr(inloop.store, name) is not None


def test_both_halves_are_exported() -> None:
    expected = {
        "ArtifactRecord",
        "ArtifactStore",
        "RunRecord",
        "RunStore",
        "StoredArtifact",
        "TaskRecord",
        "dispose_engines",
        "get_engine",
        "open_artifact_store",
    }
    assert set(inloop.store.__all__) == expected
