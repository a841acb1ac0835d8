"""Where inloop keeps what runs did: the metadata database and the artifact store.

The metadata database (:class:`RunStore` over :func:`get_engine`) holds runs,
tags, tasks and artifact references; the artifact store
(:class:`ArtifactStore`) holds the values themselves, addressed by content.
:func:`find_unstorable` says which text no database can store (NUL characters,
lone surrogates), for every part to check what users give before storing it.
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
    from inloop.store.text import Unstorable, find_unstorable, text_problem

__all__ = [
    "ArtifactRecord",
    "ArtifactStore",
    "RunRecord",
    "RunStore",
    "StoredArtifact",
    "TaskRecord",
    "Unstorable",
    "dispose_engines",
    "find_unstorable",
    "get_engine",
    "open_artifact_store",
    "text_problem",
]

# Imported on first use: every part's tables module imports inloop.store.tables, and
# a command that only reads the database need not import the run store and artifacts.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "inloop.store.artifacts": ("ArtifactStore", "StoredArtifact", "open_artifact_store"),
        "inloop.store.db": ("dispose_engines", "get_engine"),
        "inloop.store.runs": ("ArtifactRecord", "RunRecord", "RunStore", "TaskRecord"),
        "inloop.store.text": ("Unstorable", "find_unstorable", "text_problem"),
    },
)
