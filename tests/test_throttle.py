"""The failure throttle and the admission bound, on their own."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from est_ca.clock import SettableClock
from est_ca.errors import RateLimited, Unavailable
from est_ca.throttle import Admission, FailureThrottle


def test_a_source_is_limited_after_its_failures_and_freed_as_they_age() -> None:
    clock = SettableClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    throttle = FailureThrottle(limit=3, window=dt.timedelta(seconds=60), clock=clock)
    assert [throttle.record("10.0.0.1") for _ in range(3)] == [False, False, True]
    with pytest.raises(RateLimited) as limited:
        throttle.check("10.0.0.1")
    assert limited.value.retry_after_seconds == 61
    throttle.check("10.0.0.2")  # another source is not affected
    clock.advance(dt.timedelta(seconds=30))
    with pytest.raises(RateLimited) as still:
        throttle.check("10.0.0.1")
    assert still.value.retry_after_seconds == 31
    clock.advance(dt.timedelta(seconds=31))
    throttle.check("10.0.0.1")


def test_only_failures_inside_the_window_count() -> None:
    clock = SettableClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    throttle = FailureThrottle(limit=3, window=dt.timedelta(seconds=10), clock=clock)
    for _ in range(10):
        throttle.record("10.0.0.1")
        clock.advance(dt.timedelta(seconds=6))
        throttle.check("10.0.0.1")  # at most two failures are ever inside 10 s


async def test_admission_refuses_work_beyond_its_bound_at_once() -> None:
    admission = Admission(2)
    release = asyncio.Event()

    async def work() -> str:
        async with admission.slot():
            await release.wait()
            return "done"

    running = [asyncio.create_task(work()) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Unavailable) as busy:
        async with admission.slot():
            pass
    assert busy.value.retry_after_seconds == 1
    release.set()
    assert await asyncio.gather(*running) == ["done", "done"]
    assert admission.in_flight == 0
    async with admission.slot():
        pass
