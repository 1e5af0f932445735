"""Protection against floods: failing sources are slowed down, and work is admitted in bounds.

`FailureThrottle` counts authentication failures per source address in a sliding window; a
source over the limit gets 429 with Retry-After until its oldest failure leaves the window,
while every other source goes on as before. It complements the per-order lock (five wrong
codes lock an order): the lock protects one order, the throttle stops one address from trying
many. It is per instance; behind a load balancer each instance counts for itself.

`Admission` bounds the enrollment work in progress: beyond the bound a request is refused at
once with 503 and Retry-After, so an overload sheds load instead of queueing without end.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from est_ca.clock import Clock
from est_ca.errors import RateLimited, Unavailable

MAX_SOURCES = 100_000


class FailureThrottle:
    def __init__(self, *, limit: int, window: dt.timedelta, clock: Clock) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[dt.datetime]] = (
            collections.OrderedDict()
        )

    def _recent(self, source: str) -> collections.deque[dt.datetime]:
        failures = self._failures.get(source)
        if failures is None:
            return collections.deque()
        horizon = self._clock.now() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[source]
        return failures

    def check(self, source: str | None) -> None:
        """Raise RateLimited while `source` is over its limit."""
        if source is None:
            return
        failures = self._recent(source)
        if len(failures) >= self._limit:
            wait = failures[-self._limit] + self._window - self._clock.now()
            seconds = max(1, int(wait.total_seconds()) + 1)
            raise RateLimited(
                f"too many failed attempts from your address; try again in {seconds} s",
                retry_after_seconds=seconds,
            )

    def record(self, source: str | None) -> bool:
        """Count a failure; True when it is the one that reaches the limit."""
        if source is None:
            return False
        failures = self._recent(source)
        failures.append(self._clock.now())
        self._failures[source] = failures
        self._failures.move_to_end(source)
        if len(self._failures) > MAX_SOURCES:
            self._failures.popitem(last=False)
        return len(failures) == self._limit


class Admission:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._in_flight >= self._limit:
            raise Unavailable("the service is busy; try again shortly", retry_after_seconds=1)
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
