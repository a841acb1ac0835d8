"""``inloop serve worker SERVICE``: score a service's requests from Redis Streams.

Start one or more per service beside ``inloop server`` run with
``INLOOP_STREAM_URL=redis://...``::

    INLOOP_STREAM_URL=redis://cache:6379/0 inloop serve worker digits --threads 2

It prints one line once every model is loaded and consuming, and stops cleanly
(exit status 0) on Ctrl-C or SIGTERM. Jobs a killed worker had taken are
scored by the other workers after ``--claim-idle-ms``.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, ModuleType

import typer
from rich.markup import escape


def _cli() -> ModuleType:
    """``inloop.cli.main``, imported late: it imports this module to register the command."""
    from inloop.cli import main

    return main


def worker(
    service: str = typer.Argument(..., help="The service whose requests to score."),
    url: str | None = typer.Option(
        None, "--url", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: INLOOP_STREAM_URL)."
    ),
    consumer: str | None = typer.Option(
        None, "--consumer", help="This worker's name in the consumer groups (default: host-pid)."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="Scoring threads per model."),
    claim_idle_ms: int = typer.Option(
        1000,
        "--claim-idle-ms",
        min=1,
        help="Take over jobs another worker has held this long without answering.",
    ),
) -> None:
    """Score SERVICE's requests from the Redis Stream at INLOOP_STREAM_URL (or --url)."""
    from inloop.serve.models import ServeError
    from inloop.serve.policy import current_policy
    from inloop.serve.runtime import tune_gc
    from inloop.serve.streams import safe_url
    from inloop.serve.worker import default_consumer, policy_refs, run_worker
    from inloop.settings import get_settings

    with _cli().user_errors():
        resolved = url or get_settings().stream_url
        if not resolved:
            raise ServeError(
                "No Redis stream URL to read jobs from: pass --url redis://host:6379/0 or set "
                "INLOOP_STREAM_URL (the URL the server's RedisTransport uses)."
            )
        name = consumer or default_consumer()
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        # What the worker does (models started and stopped, jobs claimed) goes to stderr.
        logging.getLogger("inloop.serve.worker").setLevel(logging.INFO)
        stop, ready = threading.Event(), threading.Event()
        failure: list[BaseException] = []

        def _run() -> None:
            try:
                run_worker(
                    service,
                    url=resolved,
                    consumer=name,
                    threads_per_model=threads,
                    claim_idle_ms=claim_idle_ms,
                    stop=stop,
                    ready=ready,
                )
            except BaseException as exc:  # handed to the main thread, which reports it
                failure.append(exc)
            finally:
                ready.set()  # wake the main thread on failure too

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        # The worker runs in a thread so the main thread stays free to take signals.
        thread = threading.Thread(target=_run, name="inloop-worker", daemon=True)
        thread.start()
        try:
            while not ready.wait(0.2):
                pass
            if not failure and not stop.is_set():
                # Models are loaded: keep GC passes over them out of scoring (see tune_gc).
                tune_gc()
                refs = policy_refs(current_policy(service).policy)
                _cli()._stdout().print(
                    escape(
                        f"worker {name} scoring {', '.join(refs)} from {safe_url(resolved)}; "
                        "Ctrl-C stops"
                    ),
                    soft_wrap=True,
                )
            while thread.is_alive():
                thread.join(0.2)
        finally:
            stop.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failure:
            raise failure[0]
