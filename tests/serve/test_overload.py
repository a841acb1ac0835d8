"""The event loop's lag, as load shedding reads it."""

from __future__ import annotations

import asyncio
import time

import pytest

from inloop.serve.overload import LoopLag, shed_level


def test_the_lag_shows_a_stuck_loop_at_once_and_fades_after() -> None:
    async def main() -> tuple[float, float, float, float, float]:
        lag = LoopLag(interval_s=0.01)
        before_start = lag.lag_ms()
        lag.start()
        await asyncio.sleep(0.1)
        idle = lag.lag_ms()
        time.sleep(0.15)  # the loop is stuck, its timer has not fired yet
        stuck = lag.lag_ms()
        await asyncio.sleep(0.1)
        after = lag.lag_ms()
        time.sleep(0.15)  # start-up work nobody waited for
        lag.reset()
        await asyncio.sleep(0)
        reset = lag.lag_ms()
        await lag.stop()
        return before_start, idle, stuck, after, reset

    before_start, idle, stuck, after, reset = asyncio.run(main())
    assert before_start == 0.0
    assert idle < 20.0
    assert stuck >= 130.0
    assert after < 20.0  # caught up: it reads so one tick later
    assert reset < 20.0


def test_levels_by_the_deadline() -> None:
    assert [shed_level(lag, 0, 100) for lag in (0, 49.9, 50, 99.9, 100, 5000)] == [0, 0, 1, 1, 2, 2]
    # A request's own wait only decides whether it is past its deadline.
    assert [shed_level(0, waited, 100) for waited in (60, 99.9, 100)] == [0, 0, 2]
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        LoopLag(0)
