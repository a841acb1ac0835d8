"""Where inloop keeps what runs did: the metadata database and the artifact store.

The metadata database (:class:`RunStore` over :func:`get_engine`) holds runs,
tags, tasks and artifact references; the artifact store
(:class:`ArtifactStore`) holds the values themselves, addressed by content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inloop._lazy import lazy_exports

if TYPE_CHECKING:
    from inloop.store.artifacts import (
        ArtifactStore,
        StoredArtifact,
        open_artifact_store,
    )
    from inloop.store.db import (
        dispose_engines,
        get_engine,
    )
    from inloop.store.runs import (
        ArtifactRecord,
        RunRecord,
        RunStore,
        TaskRecord,
    )

__all__ = [
    "ArtifactRecord",
    "ArtifactStore",
    "RunRecord",
    "RunStore",
    "StoredArtifact",
    "TaskRecord",
    "dispose_engines",
    "get_engine",
    "open_artifact_store",
]

# Imported on first use: every part's tables module imports inloop.store.tables, and
# a command that only reads the database need not import the run store and artifacts.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "inloop.store.artifacts": ("ArtifactStore", "StoredArtifact", "open_artifact_store"),
        "inloop.store.db": ("dispose_engines", "get_engine"),
        "inloop.store.runs": ("ArtifactRecord", "RunRecord", "RunStore", "TaskRecord"),
    },
)
