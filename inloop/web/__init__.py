"""The web app of inloop: REST API, sign-in and labeling pages (``inloop server``).

>>> from inloop.web import create_app
>>> callable(create_app)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inloop._lazy import lazy_exports

if TYPE_CHECKING:
    from inloop.web.app import create_app

__all__ = ["create_app"]

# Imported on first use: the store imports this part's tables module to build a
# schema, and that must not import scikit-learn, cleanlab or FastAPI with it.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "inloop.web.app": ("create_app",),
    },
)
