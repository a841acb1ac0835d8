"""Load shedding: how far behind the event loop is, and what a request may still cost.

A server past saturation queues requests before the rendezvous ever sees
them: at twice saturation every answer would come seconds late. Two readings
say how far behind it is: the event loop's lag (how late a timer that should
fire every few milliseconds fires), which :class:`LoopLag` keeps, and how long
the request has waited since it reached the server (the web app stamps its
arrival). :func:`shed_level` turns them into how much work a new request gets,
relative to the service's deadline:

- ``0``: every live model scores the request;
- ``1``: the loop lags half the deadline or more: only the champion scores it
  (the challengers and the canary answer nobody), with any model whose call
  costs next to nothing (a small logistic regression scored on the loop);
- ``2``: the loop lags the whole deadline, or the request has already waited
  that long: it would miss its deadline whatever the models do, so the
  fallback answers at once.

Past :data:`REFUSE_AFTER` deadlines of lag, even the fallback's answers come
late, and the work of giving them is what keeps the server from catching up:
the web app then refuses predict requests before any work on them (HTTP 503
with ``Retry-After``; see :func:`refuse`), so the queue stops growing and the
requests it takes are answered in time.

The lag speaks for every request, the wait only for its own (it also counts
slow work on the request itself, such as a first sign-in), so only the lag
cuts the challengers. Shed requests are still answered, archived (the models
that did not score them as ``busy``) and marked ``overloaded`` when a model
was left out. Cheaper answers let the server catch up, and it falls back
below the thresholds.

>>> shed_level(2.0, 30.0, 50), shed_level(30.0, 2.0, 50), shed_level(2.0, 80.0, 50)
(0, 1, 2)
>>> refuse(150.0, 50), refuse(200.0, 50)
(False, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["REFUSE_AFTER", "LoopLag", "refuse", "shed_level"]

#: Requests are refused while the loop lags this many of the service's deadlines.
REFUSE_AFTER = 4


def shed_level(lag_ms: float, waited_ms: float, deadline_ms: float) -> int:
    """0 (score with every model), 1 (the champion only) or 2 (the fallback only)."""
    if lag_ms >= deadline_ms or waited_ms >= deadline_ms:
        return 2
    if lag_ms >= deadline_ms / 2:
        return 1
    return 0


def refuse(lag_ms: float, deadline_ms: float) -> bool:
    """Whether to refuse a request at once: the loop lags :data:`REFUSE_AFTER` deadlines."""
    return lag_ms >= REFUSE_AFTER * deadline_ms


class LoopLag:
    """The running event loop's lag, measured by a timer every ``interval_s``.

    :meth:`lag_ms` is the larger of the last tick's lateness and how overdue
    the next tick is now, so a loop that is stuck right now reads as behind
    before its timer fires, and one that has caught up reads as such one tick
    later. Start it on the loop it measures; after blocking start-up work that
    no request waited for, :meth:`reset` it; stop it with :meth:`stop`.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0. Got {interval_s!r}.")
        self.interval_s = interval_s
        self._recent_ms = 0.0
        self._due = time.perf_counter() + interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._due = time.perf_counter() + self.interval_s
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="inloop-lag")

    def reset(self) -> None:
        """Forget the lag so far (the next tick is due one interval from now)."""
        self._recent_ms = 0.0
        self._due = time.perf_counter() + self.interval_s

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def lag_ms(self) -> float:
        if self._task is None:
            return 0.0
        overdue = (time.perf_counter() - self._due) * 1000.0
        return max(self._recent_ms, overdue)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.perf_counter()
            late = max(0.0, (now - self._due) * 1000.0)
            self._recent_ms = late
            self._due = now + self.interval_s
