"""Protection against floods: failing sources are slowed down, and work is admitted in bounds.

`FailureThrottle` counts authentication failures per source address in a sliding window; a
source over the limit gets 429 with Retry-After until its oldest failure leaves the window,
while every other source goes on as before. It complements the per-order lock (five wrong
codes lock an order): the lock protects one order, the throttle stops one address from trying
many. On PostgreSQL (several instances) `SourceGuard` also keeps each failure in the database
and counts those of every instance: a source cannot multiply its tries by the instances
behind a load balancer. On SQLite (one process) the memory of this one is the whole count.

`Admission` bounds the enrollment work in progress: beyond the bound a request is refused at
once with 503 and Retry-After, so an overload sheds load instead of queueing without end.

`SourceGuard` is what protocol handlers and domain services use: it counts the failures that
deserve counting, and writes refusals to the audit trail without letting a flood become a
flood of writes. The first refusal of a kind from a source is recorded at once, with all its
detail; further ones from that source within the window are counted and recorded as one
summary event when the window closes (or at shutdown). Refusals of different kinds (a 415,
then a 401) are each recorded in full.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.clock import Clock
from est_ca.errors import RateLimited, Unavailable
from est_ca.store.store import Store

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

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> dt.timedelta:
        return self._window

    def check(self, source: str | None) -> None:
        """Raise RateLimited while `source` is over its limit."""
        if source is None:
            return
        self.refuse_over_limit(list(self._recent(source)))

    def refuse_over_limit(self, failures: list[dt.datetime]) -> None:
        """Raise RateLimited when `failures` (times within the window, oldest first) reach the
        limit; Retry-After says when the oldest that counts leaves the window."""
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


# How long a source that the database showed without failures is taken as such (PostgreSQL):
# the bound on how late a lockout made by other instances applies on this one.
CLEAN_FOR = dt.timedelta(seconds=1)

# The most distinct names a summary event lists (order references, token names, serials).
SUMMARY_NAMES = 10


@dataclasses.dataclass
class _Window:
    """Refusals of one kind from one source since the first one that was recorded in full."""

    opened: dt.datetime
    closes: dt.datetime
    first: AuditEvent
    count: int = 0
    last: AuditEvent | None = None
    names: set[str] = dataclasses.field(default_factory=set)

    def summary(self) -> AuditEvent | None:
        if self.count == 0 or self.last is None:
            return None
        shown = sorted(self.names)[:SUMMARY_NAMES]
        return AuditEvent(
            action=self.first.action,
            outcome=Outcome.REFUSED,
            actor=Actor(self.last.actor.kind, "(several)", self.last.actor.source)
            if len(self.names) > 1
            else self.last.actor,
            at=self.last.at,
            reason=f"{self.count} more like this from this address; the last: {self.last.reason}",
            request_id=None,
            details={
                "coalesced": str(self.count),
                "since": self.opened.isoformat(),
                "until": self.last.at.isoformat(),
                "names": ",".join(shown) + (",..." if len(self.names) > len(shown) else ""),
            },
        )


class SourceGuard:
    """The per-source throttle and the audit trail of refusals, for every protocol."""

    def __init__(
        self, *, throttle: FailureThrottle, store: Store, clock: Clock, window: dt.timedelta
    ) -> None:
        self.throttle = throttle
        self._store = store
        self._clock = clock
        self._window = window
        self._windows: collections.OrderedDict[tuple[str, str, str], _Window] = (
            collections.OrderedDict()
        )
        # PostgreSQL: when the database last showed each source without any failure.
        self._clean: collections.OrderedDict[str, dt.datetime] = collections.OrderedDict()

    async def check(self, source: str | None) -> None:
        """Refuse (429) a source that failed too often; before any other work is done. First
        by this instance's own count (no database), then, on PostgreSQL, by every instance's:
        unless the database showed no failure of the source at all within the last
        CLEAN_FOR (a read per request was ~11 % of an enrollment's CPU). So a lockout made by
        other instances applies here within CLEAN_FOR; a failure counted here forgets the
        source's clean state at once."""
        self.throttle.check(source)
        if source is None or self._store.is_sqlite:
            return
        now = self._clock.now()
        clean_at = self._clean.get(source)
        if clean_at is not None and now - clean_at < CLEAN_FOR and clean_at <= now:
            return
        async with self._store.read() as tx:
            failures = await tx.source_failures(
                source, now - self.throttle.window, self.throttle.limit
            )
        if failures:
            self._clean.pop(source, None)
        else:
            self._clean[source] = now
            self._clean.move_to_end(source)
            # Oldest first: drop those past the bound (and any beyond MAX_SOURCES).
            while self._clean and (
                len(self._clean) > MAX_SOURCES
                or now - next(iter(self._clean.values())) >= CLEAN_FOR
            ):
                self._clean.popitem(last=False)
        self.throttle.refuse_over_limit(failures)

    async def _count_failure(self, source: str | None) -> bool:
        """Count a failed authentication; True when it is the one that reaches the limit."""
        reached = self.throttle.record(source)
        if source is None or self._store.is_sqlite:
            return reached
        self._clean.pop(source, None)
        now = self._clock.now()
        async with self._store.write() as tx:
            await tx.record_source_failure(source, now)
            failures = await tx.source_failures(
                source, now - self.throttle.window, self.throttle.limit + 1
            )
        return len(failures) == self.throttle.limit

    async def forget_old_failures(self) -> int:
        """Remove the failures that left the window (one instance does it for the cluster)."""
        if self._store.is_sqlite:
            return 0
        async with self._store.write() as tx:
            return await tx.forget_source_failures(self._clock.now() - self.throttle.window)

    async def refused(self, event: AuditEvent, *, counts: bool) -> None:
        """Record a refusal. `counts`: it was a failed authentication (wrong or malformed
        credentials), which counts against the source; the one that reaches the limit is
        recorded as `source.throttled`."""
        source = event.actor.source
        if counts and await self._count_failure(source):
            await self._store.append_audit(
                AuditEvent(
                    action="source.throttled",
                    outcome=Outcome.REFUSED,
                    actor=event.actor,
                    at=event.at,
                    reason="too many failed authentications from this address",
                )
            )
        if source is None:  # in-process callers: nothing floods, record every one
            await self._store.append_audit(event)
            return
        # One window per kind of refusal: a client's 415 and then its 401 are both recorded in
        # full; only repetitions of the same kind are counted instead.
        kind = (event.reason or "").partition(":")[0]
        key = (event.action, source, kind)
        window = self._windows.get(key)
        if window is not None and event.at < window.closes:
            window.count += 1
            window.last = event
            if len(window.names) <= SUMMARY_NAMES:
                window.names.add(event.actor.name)
            return
        if window is not None:
            await self._write_summary(key)
        self._windows[key] = _Window(
            opened=event.at,
            closes=event.at + self._window,
            first=event,
            names={event.actor.name},
        )
        if len(self._windows) > MAX_SOURCES:
            await self._write_summary(next(iter(self._windows)))
        await self._store.append_audit(event)

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of windows that have closed (all of them, at shutdown)."""
        now = self._clock.now()
        due = [k for k, w in self._windows.items() if everything or w.closes <= now]
        for key in due:
            await self._write_summary(key)
        return len(due)

    async def _write_summary(self, key: tuple[str, str, str]) -> None:
        window = self._windows.pop(key)
        summary = window.summary()
        if summary is not None:
            await self._store.append_audit(summary)
