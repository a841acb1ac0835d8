"""``inloop server``: the web app (REST API and labeling pages) under uvicorn.

On the first start against a database without users it creates the user
``admin`` and prints its token once, with the URL to sign in at. Each worker
keeps the models of the projects with feature items in the loop (see
:mod:`inloop.web.learning`); ``--no-learn`` serves without them.

``X-Forwarded-Proto`` and ``X-Forwarded-For`` are believed only from the
addresses ``INLOOP_TRUSTED_PROXIES`` names (a TLS proxy in front): then
cookies are ``Secure`` and sign-in limits count the real client. SIGTERM
stops the server gracefully with exit status 0.

Example::

    inloop server --host 127.0.0.1 --port 8000
    inloop server --no-learn
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app_without_learners", "server"]


def create_app_without_learners() -> FastAPI:
    """The web app with no model in the loop (the uvicorn factory of ``--no-learn``)."""
    from inloop.web.app import create_app

    return create_app(learners=False)


def _check_backends() -> None:
    """Import the configured backends now: a missing extra is one line, before any worker."""
    from inloop.settings import get_settings
    from inloop.store.artifacts import open_artifact_store

    open_artifact_store().check_backend()
    if get_settings().stream_url:
        import inloop.serve.streams  # noqa: F401


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes (each opens its own database pool)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
    learn: bool = typer.Option(
        True,
        "--learn/--no-learn",
        help="Retrain each feature project's model as labels arrive and serve its suggestions.",
    ),
) -> None:
    """Run the web app: REST API under /api, pages at /, OpenAPI at /openapi.json."""
    import signal

    import uvicorn

    from inloop.cli.main import user_errors
    from inloop.settings import get_settings
    from inloop.store.db import dispose_engines, get_engine
    from inloop.web.auth import ensure_admin

    with user_errors():
        proxies = get_settings().trusted_proxies
        engine = get_engine()  # migrates the schema once, before any worker starts
        _check_backends()
        token = ensure_admin(engine=engine)
    dispose_engines()  # workers open their own connections
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/"
    if token is not None:
        typer.echo(
            "Created the user 'admin' (role admin). Its API token, shown only this once:\n"
            f"  {token}\n"
            f"Sign in at {url}login with it, or send 'Authorization: Bearer <token>'."
        )
    typer.echo(f"inloop server on {url} (API docs at {url}docs)")
    factory = "inloop.web.app:create_app" if learn else f"{__name__}:create_app_without_learners"
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the
    # handler it found: with Python's default that kills the process (status -15).
    # A handler that does nothing lets it return, and the command exit with 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            # Off unless configured: uvicorn would otherwise believe any local process.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
