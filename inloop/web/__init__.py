"""The web app of inloop: REST API, sign-in and labeling pages (``inloop server``).

>>> from inloop.web import create_app
>>> callable(create_app)
True
"""

from __future__ import annotations

from inloop.web.app import create_app

__all__ = ["create_app"]
