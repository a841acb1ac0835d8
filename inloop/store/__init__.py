"""Where inloop keeps what runs did: the metadata database and the artifact store.

The metadata database (:class:`RunStore` over :func:`get_engine`) holds runs,
tags, tasks and artifact references; the artifact store
(:class:`ArtifactStore`) holds the values themselves, addressed by content.
:func:`find_unstorable` says which text no database can store (NUL characters,
lone surrogates), for every part to check what users give before storing it.
"""

from __future__ import annotations

from inloop.store.artifacts import ArtifactStore, StoredArtifact, open_artifact_store
from inloop.store.db import dispose_engines, get_engine
from inloop.store.runs import ArtifactRecord, RunRecord, RunStore, TaskRecord
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
