"""The public surface: what users import exists, is sorted, and leaks nothing private."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "inloop",
    "inloop.flow",
    "inloop.label",
    "inloop.serve",
    "inloop.store",
    "inloop.testing",
]

# The names a Metaflow flow or notebook imports; they must all come from `inloop`.
METAFLOW_NAMES = [
    "FlowSpec", "step", "Parameter", "JSONType", "IncludeFile", "current", "retry", "catch",
    "timeout", "resources", "environment", "project", "batch", "kubernetes", "conda",
    "conda_base", "pypi", "pypi_base", "card", "schedule", "Flow", "Run", "Step", "Task",
    "DataArtifact", "namespace", "get_namespace", "default_namespace", "Runner",
]  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_complete_and_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    # isort-style order, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(
        exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    for item in exported:
        assert hasattr(module, item), f"{name}.{item} is in __all__ but missing"
        assert not item.startswith("_") or item == "__version__"


def test_metaflow_imports_work_from_inloop() -> None:
    import inloop

    missing = [n for n in METAFLOW_NAMES if not hasattr(inloop, n)]
    assert missing == []


def test_version_is_exposed() -> None:
    import inloop

    assert inloop.__version__.count(".") == 2
