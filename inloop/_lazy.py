"""Lazy exports for package ``__init__`` modules (PEP 562).

A package's names are imported from their modules the first time someone asks
for them, so ``import inloop.label.tables`` (the store does so to create a
database) or ``inloop --help`` does not import scikit-learn, cleanlab or
FastAPI. The package keeps its literal ``__all__`` and imports the same names
under ``if TYPE_CHECKING:`` for type checkers::

    __getattr__, __dir__ = lazy_exports(__name__, {"inloop.label.audit": ("audit_labels",)})

>>> import sys, types
>>> sys.modules["lazy_demo"] = types.ModuleType("lazy_demo")
>>> getattr_, dir_ = lazy_exports("lazy_demo", {"json": ("dumps",)})
>>> getattr_("dumps")([1]), "dumps" in dir_()
('[1]', True)
>>> getattr_("nothing")
Traceback (most recent call last):
AttributeError: module 'lazy_demo' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


class _LazyPackage(types.ModuleType):
    """A package whose exported names win over its submodules of the same name.

    Importing a submodule sets it as an attribute of its package, so once
    ``inloop.serve.replay`` (the module) is imported, ``from inloop.serve import
    replay`` would give the module instead of the function. An eager
    ``__init__`` hid this by importing the function last; here the export is
    put back whenever the import system sets such a submodule.
    """

    _lazy_exports: dict[str, str]

    def __setattr__(self, name: str, value: Any) -> None:
        module = self.__dict__.get("_lazy_exports", {}).get(name)
        if (
            module is not None
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            value = getattr(importlib.import_module(module), name)
        super().__setattr__(name, value)


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import ``{module: names}`` on first use.

    A name, once imported, is stored in the package's namespace, so later
    lookups do not come back here.
    """
    where = {name: module for module, names in exports.items() for name in names}
    target = sys.modules[package]
    if type(target) is types.ModuleType:
        target.__class__ = _LazyPackage
        target.__dict__["_lazy_exports"] = where

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
