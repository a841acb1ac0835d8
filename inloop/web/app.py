"""The web app: the REST API, sign-in, the pages and their static files.

``create_app()`` builds a FastAPI app on the metadata database (the configured
one unless ``engine`` is given); ``inloop server`` runs it under uvicorn. While
the app runs (its lifespan), a :class:`~inloop.web.learning.LearnerPool` keeps
each feature project's model in the loop (``learners=False`` turns it off).

>>> from inloop.store import get_engine
>>> app = create_app(engine=get_engine("sqlite://"))
>>> app.title
'inloop'
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from inloop import __version__
from inloop.errors import InloopError
from inloop.store.db import get_engine

__all__ = ["create_app", "templates"]

_HERE = Path(__file__).parent
#: The pages' Jinja2 templates (``inloop/web/templates``).
templates = Jinja2Templates(directory=str(_HERE / "templates"))
_PAGES_MODULE = "inloop.web.pages"


def create_app(*, engine: Engine | None = None, learners: bool = True) -> FastAPI:
    """The inloop web app on ``engine`` (default: ``get_engine()``, migrated on first use).

    With ``learners`` (the default) the app's lifespan runs a
    :class:`~inloop.web.learning.LearnerPool` (``app.state.learners``; None without).
    """
    from inloop.web import api, auth
    from inloop.web.learning import LearnerPool

    app = FastAPI(
        title="inloop",
        version=__version__,
        description="Labeling projects, queues and reviews of inloop.",
        lifespan=_lifespan,
    )
    app.state.engine = engine if engine is not None else get_engine()
    app.state.learners = LearnerPool(app.state.engine) if learners else None
    app.state.templates = templates
    app.add_exception_handler(InloopError, _inloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(auth.router)
    app.include_router(api.router)
    if importlib.util.find_spec(_PAGES_MODULE) is not None:
        pages = importlib.import_module(_PAGES_MODULE)
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the app's learner pool (if any) while the app serves."""
    pool = app.state.learners
    if pool is not None:
        pool.start()
    try:
        yield
    finally:
        if pool is not None:
            pool.stop()


def _status(exc: InloopError) -> int:
    from inloop.web.api import ConflictError
    from inloop.web.auth import UserExistsError

    if isinstance(exc, ConflictError | UserExistsError):
        return 409
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ValueError):
        return 400
    return 409


async def _inloop_error(request: Request, exc: Exception) -> JSONResponse:
    status = _status(exc) if isinstance(exc, InloopError) else 500
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source, rest = parts[0], parts[1:]
    else:
        source, rest = "body", parts
    # Unions add the tried type to the path ("classes.0.str"): keep the user's names only.
    shown = ".".join(rest) if rest else "(the whole body)"
    return f"{'' if source == 'body' else source + ' parameter '}{shown!r}"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    messages = []
    for error in errors[:5]:
        got = error.get("input")
        got_text = "nothing" if error.get("type") == "missing" else f"{got!r:.80}"
        messages.append(f"Field {_where(tuple(error['loc']))}: {error['msg']}. Got {got_text}.")
    more = f" ({len(errors) - 5} more errors.)" if len(errors) > 5 else ""
    detail = " ".join(messages) + more + " See /docs for the accepted request bodies."
    return JSONResponse({"detail": detail, "errors": [_plain(e) for e in errors]}, status_code=422)


def _plain(error: Any) -> dict[str, Any]:
    return {
        "loc": [str(p) for p in error.get("loc", ())],
        "msg": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }
