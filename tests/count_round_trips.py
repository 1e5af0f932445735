"""Not a test: counts what one enrollment costs the database (run it explicitly with -s).

    .venv/bin/pytest -n0 -q -s tests/count_round_trips.py

Statements (cursor executions; on SQLite with BEGIN and a write step's SAVEPOINT and RELEASE),
transactions (begin), pool checkouts, PostgreSQL round trips (asyncpg calls that wait for
the server) and, on SQLite, aiosqlite thread hand-offs (Connection._execute) and steps
handed to a thread (`Store.in_transaction`; write steps share a group's one hand-off and
commit when several queue, as under load; here they come one at a time)."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import aiosqlite.core
import asyncpg.connection
import asyncpg.prepared_stmt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event

from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import KeyPool, csr_der, make_csr, new_order, new_user


@contextlib.contextmanager
def counting(service: Service) -> Iterator[collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    store = service.store
    engines = [e.sync_engine for e in {id(e): e for e in (store._writer, store._reader)}.values()]
    steps = getattr(store, "_steps", None)
    if steps is not None:  # the blocking engines of transactions run as one step
        engines += [steps._write_engine, steps._read_engine]
    hooks: list[tuple[Any, str, Any]] = []
    for sync in engines:

        def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            counts["statements"] += 1
            counts["sql: " + " ".join(sql.split())[:90]] += 1

        def begin(conn: Any) -> None:
            counts["transactions"] += 1

        def checkout(*args: Any) -> None:
            counts["checkouts"] += 1

        for name, fn in (
            ("before_cursor_execute", statement),
            ("begin", begin),
            ("checkout", checkout),
        ):
            target = sync.pool if name == "checkout" else sync
            event.listen(target, name, fn)
            hooks.append((target, name, fn))
    original = aiosqlite.core.Connection._execute

    async def handoff(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counts["aiosqlite hand-offs"] += 1
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    aiosqlite.core.Connection._execute = handoff  # type: ignore[method-assign]
    # PostgreSQL round trips: every asyncpg call that waits for the server (BEGIN, COMMIT and
    # ROLLBACK are Connection.execute; a ping is a fetchrow; a prepared statement cache miss
    # is a prepare; a statement is PreparedStatement.fetch).
    patched: list[tuple[Any, str, Any]] = []
    for owner, name in (
        (asyncpg.connection.Connection, "execute"),
        (asyncpg.connection.Connection, "fetchrow"),
        (asyncpg.connection.Connection, "prepare"),
        (asyncpg.prepared_stmt.PreparedStatement, "fetch"),
    ):
        original_call = getattr(owner, name)

        def make(original_call: Any, label: str) -> Any:
            async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                counts["round trips"] += 1
                counts["rt: " + label] += 1
                return await original_call(self, *args, **kwargs)

            return call

        setattr(owner, name, make(original_call, f"{owner.__name__}.{name}"))
        patched.append((owner, name, original_call))
    original_run = type(steps).run if steps is not None else None

    async def step_run(self: Any, *args: Any) -> Any:
        counts["step hand-offs"] += 1
        return await original_run(self, *args)  # type: ignore[misc]

    original_write = type(steps).write if steps is not None else None

    async def step_write(self: Any, *args: Any) -> Any:
        counts["step hand-offs"] += 1  # a write step: one group's hand-off at most
        return await original_write(self, *args)  # type: ignore[misc]

    if steps is not None:
        type(steps).run = step_run
        type(steps).write = step_write
    try:
        yield counts
    finally:
        aiosqlite.core.Connection._execute = original  # type: ignore[method-assign]
        for owner, name, original_call in patched:
            setattr(owner, name, original_call)
        if steps is not None:
            type(steps).run = original_run
            type(steps).write = original_write
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def show(title: str, counts: collections.Counter[str], n: int) -> None:
    print(f"\n== {title}: per enrollment (mean of {n})")
    for key in (
        "statements",
        "transactions",
        "checkouts",
        "aiosqlite hand-offs",
        "step hand-offs",
        "round trips",
    ):
        print(f"  {key}: {counts[key] / n:.1f}")
    for key, value in sorted(counts.items()):
        if key.startswith(("sql: ", "rt: ")):
            print(f"    {value / n:4.1f}  {key.split(': ', 1)[1]}")


async def test_count(database_url: str, open_service: OpenService, keys: KeyPool) -> None:
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    service = await open_service(database_url=database_url)
    assert service.authority is not None
    n = 5
    placed = [await new_order(service, await new_user(service)) for _ in range(n)]
    certificates = []
    with counting(service) as counts:
        for i, order in enumerate(placed):
            certificates.append(
                await service.authority.enroll_with_order(
                    order.order.reference,
                    order.one_time_code,
                    csr_der(make_csr(keys.rsa(i).key)),
                    source="test",
                )
            )
    show(f"{backend} simpleenroll (Basic)", counts, n)
    with counting(service) as counts:
        for i, certificate in enumerate(certificates):
            subject_csr = make_csr(
                keys.rsa(i).key,
                subject=certificate.subject,
                san=certificate.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value,
            )
            await service.authority.reenroll(
                certificate.public_bytes(serialization.Encoding.DER),
                csr_der(subject_csr),
                source="test",
            )
    show(f"{backend} simplereenroll (certificate)", counts, n)
