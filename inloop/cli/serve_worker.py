"""``inloop serve worker SERVICE``: score a service's requests from Redis Streams."""

from __future__ import annotations

import typer


def worker(service: str = typer.Argument(..., help="The service whose requests to score.")) -> None:
    """Score SERVICE's requests from the Redis Stream at INLOOP_STREAM_URL (not written yet)."""
    raise typer.Exit(2)
