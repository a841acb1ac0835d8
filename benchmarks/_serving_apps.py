"""The servers of ``benchmarks/serving.py``: the floor app, inloop's app, a model worker.

Each runs in its own process. uvicorn builds the apps through the factories
here (``--factory _serving_apps:floor_app`` with ``--app-dir benchmarks``);
both read the stores from ``INLOOP_HOME`` and the champion's reference from
``INLOOP_BENCH_CHAMPION``.

- :func:`floor_app`: the least a server can do — one FastAPI POST route that
  calls the champion's ``predict_proba`` on the instance and returns the same
  JSON as inloop's predict answer. No auth, no archive, no other models.
- :func:`inloop_app`: ``inloop.web.create_app(learners=False, serving=True)``,
  in-process scoring, or Redis Streams when ``INLOOP_BENCH_STREAM_URL`` is set.
- ``python benchmarks/_serving_apps.py worker SERVICE``: one model worker
  (:func:`inloop.serve.worker.run_worker`), for when ``inloop serve worker``
  is not available.

>>> _Instance(instance=[0.0, 0.5]).instance
[0.0, 0.5]
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict


class _Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance: list[float]


def floor_app() -> FastAPI:
    """The floor: one predict route on the same champion, nothing else."""
    import json

    import numpy as np

    from inloop.serve.registry import load

    # The model as inloop loads it, so both servers make the same model call.
    loaded: Any = load(os.environ["INLOOP_BENCH_CHAMPION"])
    classes = [int(c) for c in loaded.classes]
    model = os.environ["INLOOP_BENCH_CHAMPION"]
    app = FastAPI()

    @app.post("/v1/services/{name}/predict")
    async def predict(name: str, body: _Instance) -> Response:
        start = time.perf_counter()
        proba = loaded.predict_proba(np.asarray([body.instance]))[0]
        out = {
            "request_id": uuid.uuid4().hex,
            "model": model,
            "role": "champion",
            "fallback_used": False,
            "prediction": classes[int(np.argmax(proba))],
            "probabilities": proba.tolist(),
            "classes": classes,
            "latency_ms": round((time.perf_counter() - start) * 1000.0, 3),
        }
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")

    return app


def inloop_app() -> Any:
    """inloop's web app with serving on (Redis Streams if ``INLOOP_BENCH_STREAM_URL``).

    With ``INLOOP_BENCH_DIAG=FILE`` the app is wrapped in :class:`_Diagnose`.
    """
    from inloop.web import create_app

    app = create_app(
        learners=False, serving=True, stream_url=os.environ.get("INLOOP_BENCH_STREAM_URL", "")
    )
    diag = os.environ.get("INLOOP_BENCH_DIAG")
    return _Diagnose(app, diag) if diag else app


class _Diagnose:
    """An ASGI wrapper that logs where the server's time goes when its event loop stalls.

    A heartbeat task ticks every 5 ms on the serving loop; a watchdog thread
    writes every thread's stack to ``path`` when the loop has not ticked for
    :attr:`STALL_S`, and a ``gc`` callback logs collections longer than 5 ms.
    """

    STALL_S = 0.05

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.beat = time.perf_counter()
        self.started = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.started:
            self.started = True
            self._start()
        await self.app(scope, receive, send)

    def _log(self, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.perf_counter():.3f} {text}\n")

    def _start(self) -> None:
        import asyncio
        import gc
        import threading
        import traceback

        loop_thread = threading.get_ident()
        gc_start = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                took = (time.perf_counter() - gc_start[0]) * 1000
                if took > 5:
                    tracked = len(gc.get_objects(2)) if info["generation"] == 2 else -1
                    self._log(f"gc gen{info['generation']} {took:.1f} ms, {tracked} in gen2")

        gc.callbacks.append(on_gc)

        async def heartbeat() -> None:
            while True:
                self.beat = time.perf_counter()
                await asyncio.sleep(0.005)

        self._task = asyncio.get_running_loop().create_task(heartbeat())

        def watchdog() -> None:
            reported = 0.0
            while True:
                time.sleep(0.01)
                stalled = time.perf_counter() - self.beat
                if stalled > self.STALL_S and self.beat != reported:
                    reported = self.beat
                    frames = sys._current_frames()
                    lines = [f"loop stalled {stalled * 1000:.0f} ms"]
                    for ident, frame in frames.items():
                        name = "LOOP" if ident == loop_thread else str(ident)
                        stack = "".join(traceback.format_stack(frame, limit=8))
                        lines.append(f"--- thread {name}\n{stack}")
                    self._log("\n".join(lines))

        threading.Thread(target=watchdog, daemon=True, name="bench-watchdog").start()


def _worker(service: str) -> None:
    import signal
    import threading

    from inloop.serve.worker import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_worker(service, stop=stop)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        sys.exit("usage: python benchmarks/_serving_apps.py worker SERVICE")
    _worker(sys.argv[2])
