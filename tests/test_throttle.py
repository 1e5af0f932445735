"""The failure throttle and the admission bound, on their own."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from est_ca.audit import Actor, AuditEvent, AuditSeal, Outcome
from est_ca.clock import SettableClock
from est_ca.errors import RateLimited, Unavailable
from est_ca.registration.codes import new_key
from est_ca.store.store import Store
from est_ca.throttle import CLEAN_FOR, Admission, FailureThrottle, SourceGuard


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


# -- the cluster-wide count on PostgreSQL (several instances, one database) ---------------------

SOURCE = "203.0.113.7"


def _failure(clock: SettableClock) -> AuditEvent:
    return AuditEvent(
        action="enroll",
        outcome=Outcome.REFUSED,
        actor=Actor("order", "ABCDEFGHJKMN", SOURCE),
        at=clock.now(),
        reason="wrong credentials",
    )


@contextlib.asynccontextmanager
async def _instances(url: str, clock: SettableClock) -> AsyncIterator[list[SourceGuard]]:
    """Two instances' guards, each with a store of its own, on one PostgreSQL database."""
    key = new_key()
    stores = [Store(url, seal=AuditSeal(key)) for _ in range(2)]
    await stores[0].migrate()
    window = dt.timedelta(seconds=60)
    try:
        yield [
            SourceGuard(
                throttle=FailureThrottle(limit=3, window=window, clock=clock),
                store=store,
                clock=clock,
                window=window,
            )
            for store in stores
        ]
    finally:
        for store in stores:
            await store.close()


async def test_a_lockout_made_on_other_instances_applies_here_within_clean_for(
    postgres_url: str,
) -> None:
    clock = SettableClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    async with _instances(postgres_url, clock) as (here, elsewhere):
        await here.check(SOURCE)  # the database shows the source clean
        for _ in range(3):
            await elsewhere.refused(_failure(clock), counts=True)
        with pytest.raises(RateLimited):
            await elsewhere.check(SOURCE)
        await here.check(SOURCE)  # still taken as clean: the bound, not more
        clock.advance(CLEAN_FOR)
        with pytest.raises(RateLimited):
            await here.check(SOURCE)


async def test_a_failure_counted_here_forgets_that_the_source_was_clean(
    postgres_url: str,
) -> None:
    clock = SettableClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    async with _instances(postgres_url, clock) as (here, elsewhere):
        await here.check(SOURCE)
        for _ in range(2):
            await elsewhere.refused(_failure(clock), counts=True)
        await here.refused(_failure(clock), counts=True)  # this instance's count: only 1
        with pytest.raises(RateLimited):
            await here.check(SOURCE)
