"""The web app: the REST API, sign-in, the pages and their static files.

``create_app()`` builds a FastAPI app on the metadata database (the configured
one unless ``engine`` is given); ``inloop server`` runs it under uvicorn. While
the app runs (its lifespan), a :class:`~inloop.web.learning.LearnerPool` keeps
each feature project's model in the loop (``learners=False`` turns it off), and
the serving routes under ``/v1`` answer through a
:class:`~inloop.serve.rendezvous.Rendezvous` whose archive also routes
requests to review and fires webhook actions (``serving=False`` turns it off).
The rendezvous scores in this process, or over Redis Streams when
``INLOOP_STREAM_URL`` is set; labels people give the routed items in the
labeling project become feedback of their requests within a second
(:class:`~inloop.serve.review.ReviewLabels`).

>>> from inloop.store import get_engine
>>> app = create_app(engine=get_engine("sqlite://"))
>>> app.title
'inloop'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from collections.abc import AsyncIterator, Callable
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
from inloop.errors import InloopError, quote
from inloop.settings import get_settings
from inloop.store.db import get_engine
from inloop.store.text import printable
from inloop.web.edge import InputEdge

__all__ = ["SafeJSONResponse", "create_app", "templates"]

_HERE = Path(__file__).parent
#: The pages' Jinja2 templates (``inloop/web/templates``).
templates = Jinja2Templates(directory=str(_HERE / "templates"))
# Text stored before lone surrogates were refused renders escaped, not as a 500.
templates.env.finalize = printable
_PAGES_MODULE = "inloop.web.pages"


def create_app(
    *,
    engine: Engine | None = None,
    learners: bool = True,
    serving: bool = True,
    stream_url: str | None = None,
) -> FastAPI:
    """The inloop web app on ``engine`` (default: ``get_engine()``, migrated on first use).

    With ``learners`` (the default) the app's lifespan runs a
    :class:`~inloop.web.learning.LearnerPool` (``app.state.learners``; None without).
    With ``serving`` it serves ``/v1`` through ``app.state.rendezvous``, over
    Redis Streams at ``stream_url`` (default: the ``INLOOP_STREAM_URL`` setting)
    or in this process.
    """
    from inloop.web import api, signin
    from inloop.web import serving as serving_api
    from inloop.web.learning import LearnerPool

    app = FastAPI(
        title="inloop",
        version=__version__,
        description="Labeling projects, queues and reviews of inloop.",
        lifespan=_lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.engine = engine if engine is not None else get_engine()
    app.state.learners = LearnerPool(app.state.engine) if learners else None
    app.state.rendezvous = None
    app.state.dispatcher = None
    app.state.review_labels = None
    if serving:
        _add_serving(app, stream_url)
    app.state.templates = templates
    app.add_exception_handler(InloopError, _inloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # First: routes are matched in order, and /v1 is the path that must be fast.
    app.include_router(serving_api.router)
    app.include_router(signin.router)
    app.include_router(api.router)
    if importlib.util.find_spec(_PAGES_MODULE) is not None:
        pages = importlib.import_module(_PAGES_MODULE)
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    settings = get_settings()
    # Outside all but the security headers: it sees every request before the serving fast
    # path and the routes.
    app.add_middleware(
        InputEdge,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )

    from inloop.web.headers import SecurityHeaders

    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the edge's refusals too
    return app


class SafeJSONResponse(JSONResponse):
    """JSON that renders whatever the database holds.

    Text stored before inloop refused lone surrogates cannot be encoded as
    UTF-8; it goes out as the JSON escape it came in as (``\\ud800``) instead
    of failing the answer (and every page that asks for it).
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8", "backslashreplace")


def _add_serving(app: FastAPI, stream_url: str | None) -> None:
    from inloop.serve.actions import ActionDispatcher
    from inloop.serve.archive import ArchiveWriter
    from inloop.serve.rendezvous import Rendezvous
    from inloop.serve.review import ReviewLabels, ReviewRouter
    from inloop.settings import get_settings
    from inloop.store.db import is_memory_database

    engine = app.state.engine
    url = stream_url if stream_url is not None else get_settings().stream_url
    transport = None
    if url:
        from inloop.serve.streams import RedisTransport

        transport = RedisTransport(url)
    from inloop.web.serving import ArrivalStamp, TokenCache

    dispatcher = ActionDispatcher(engine)
    app.state.dispatcher = dispatcher
    settings = get_settings()
    journal = None
    if settings.archive_journal and not is_memory_database(engine):
        from inloop.serve.journal import Journal

        # One folder per database: a journal is only ever replayed into the database it is for.
        url = engine.url.render_as_string(hide_password=True)
        key = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
        journal = Journal(settings.home / "journal" / key)
    # A child process writes the archive, off the event loop's GIL (see inloop.serve.archive).
    role_of = _role_of(engine)
    app.state.review_labels = ReviewLabels(engine, role_of=role_of)
    archive = ArchiveWriter(
        engine,
        hooks=[ReviewRouter(engine, role_of=role_of), dispatcher.on_archived],
        process=not is_memory_database(engine),
        journal=journal,
    )
    app.state.rendezvous = Rendezvous(engine=engine, transport=transport, archive=archive)
    app.state.serving_tokens = TokenCache(engine)
    app.add_middleware(
        ArrivalStamp,
        rendezvous=app.state.rendezvous,
        tokens=app.state.serving_tokens,
        errors=_error_response,
    )


def _role_of(engine: Engine) -> Callable[[str], str | None]:
    """The role of a user by name (None for a name that is not a user): for review labels."""
    from inloop.web.auth import get_user

    def role_of(name: str) -> str | None:
        user = get_user(name, engine=engine)
        return None if user is None else user.role

    return role_of


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the app's learner pool and rendezvous (if any) while the app serves."""
    pool = app.state.learners
    rendezvous = app.state.rendezvous
    dispatcher = app.state.dispatcher
    if pool is not None:
        pool.start()
    if rendezvous is not None:
        dispatcher.start()
        dispatcher.resume_pending()
        app.state.review_labels.start()
        await rendezvous.start()
        from inloop.serve.runtime import tune_gc

        # Full garbage-collector passes over what was loaded would stall requests 100+ ms.
        tune_gc()
        if rendezvous.lag is not None:
            rendezvous.lag.reset()  # no request waited for the start-up: shed nothing for it
    try:
        yield
    finally:
        if rendezvous is not None:
            await rendezvous.close()
            dispatcher.stop()
            app.state.review_labels.stop()
        if pool is not None:
            pool.stop()


def _status(exc: InloopError) -> int:
    from inloop.serve.limits import RequestTooLargeError
    from inloop.web.api import ConflictError
    from inloop.web.auth import UserExistsError

    if isinstance(exc, RequestTooLargeError):
        return 413
    if isinstance(exc, ConflictError | UserExistsError):
        return 409
    if isinstance(exc, PermissionError):
        return 403
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ValueError):
        return 400
    return 409


#: The longest error message answered whole; messages quote values with ``quote``, and
#: this catches any that does not.
_MAX_DETAIL = 2000


def _error_response(exc: Exception) -> JSONResponse:
    status = _status(exc) if isinstance(exc, InloopError) else 500
    detail = str(exc)
    if len(detail) > _MAX_DETAIL:
        detail = f"{detail[:_MAX_DETAIL]}… (a message of {len(detail):,} characters, cut)"
    return SafeJSONResponse({"detail": detail}, status_code=status)


async def _inloop_error(request: Request, exc: Exception) -> JSONResponse:
    return _error_response(exc)


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
        got_text = "nothing" if error.get("type") == "missing" else quote(got, 80)
        messages.append(f"Field {_where(tuple(error['loc']))}: {error['msg']}. Got {got_text}.")
    more = f" ({len(errors) - 5} more errors.)" if len(errors) > 5 else ""
    detail = " ".join(messages) + more + " See /docs for the accepted request bodies."
    return SafeJSONResponse(
        {"detail": detail, "errors": [_plain(e) for e in errors]}, status_code=422
    )


def _plain(error: Any) -> dict[str, Any]:
    return {
        "loc": [str(p) for p in error.get("loc", ())],
        "msg": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }
