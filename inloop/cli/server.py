"""``inloop server``: the web app (REST API and labeling pages) under uvicorn.

On the first start against a database without users it creates the user
``admin`` and prints its token once, with the URL to sign in at.

Example::

    inloop server --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import typer

__all__ = ["server"]


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes (each opens its own database pool)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Run the web app: REST API under /api, pages at /, OpenAPI at /openapi.json."""
    import uvicorn

    from inloop.cli.main import user_errors
    from inloop.store.db import dispose_engines, get_engine
    from inloop.web.auth import ensure_admin

    with user_errors():
        engine = get_engine()  # migrates the schema once, before any worker starts
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
    uvicorn.run(
        "inloop.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
