"""On a SQLite file, `Store.lease` and `Store.exclusive` hold across processes (the workers of
`serve --workers N`), as PostgreSQL's advisory locks do for a cluster: one holder at a time,
and a holder that dies, even by SIGKILL, holds nothing any more."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from est_ca.audit import AuditSeal
from est_ca.registration.codes import new_key
from est_ca.store.store import Store

HOLD_IN_ANOTHER_PROCESS = """
import asyncio, sys
from est_ca.audit import AuditSeal
from est_ca.registration.codes import new_key
from est_ca.store.store import Store

async def main() -> None:
    lease = Store(sys.argv[1], seal=AuditSeal(new_key())).lease("maintenance")
    print("held" if await lease.held() else "not held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'est-ca.db'}"


def store(url: str) -> Store:
    return Store(url, seal=AuditSeal(new_key()))


async def test_a_lease_is_held_by_one_store_of_two_and_passes_on_when_released(
    tmp_path: Path,
) -> None:
    first, second = store(sqlite_url(tmp_path)), store(sqlite_url(tmp_path))
    lease_a, lease_b = first.lease("maintenance"), second.lease("maintenance")
    assert await lease_a.held()
    assert await lease_a.held()  # asking again keeps it
    assert not await lease_b.held()
    await lease_a.release()
    assert await lease_b.held()
    assert not await lease_a.held()
    await lease_b.release()


async def test_a_lease_whose_holder_process_was_killed_is_taken_over(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        said = await holder.stdout.readline()
        while said.strip() not in (b"held", b"not held", b""):  # past the log lines
            said = await holder.stdout.readline()
        assert said == b"held\n"
        lease = store(url).lease("maintenance")
        assert not await lease.held()
        holder.kill()
        await holder.wait()
        assert await lease.held()
        await lease.release()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_exclusive_sections_of_two_stores_on_one_file_do_not_overlap(
    tmp_path: Path,
) -> None:
    first, second = store(sqlite_url(tmp_path)), store(sqlite_url(tmp_path))
    events: list[str] = []
    inside = asyncio.Event()

    async def hold() -> None:
        async with first.exclusive("crl:issuing"):
            events.append("first in")
            inside.set()
            await asyncio.sleep(0.3)
            events.append("first out")

    async def wait_then_enter() -> None:
        await inside.wait()
        async with second.exclusive("crl:issuing"):
            events.append("second in")

    await asyncio.gather(hold(), wait_then_enter())
    assert events == ["first in", "first out", "second in"]


async def test_a_waiter_cancelled_while_waiting_leaves_the_lock_free(tmp_path: Path) -> None:
    first, second = store(sqlite_url(tmp_path)), store(sqlite_url(tmp_path))
    async with first.exclusive("crl:issuing"):
        waiter = asyncio.create_task(second.exclusive("crl:issuing").__aenter__())
        await asyncio.sleep(0.2)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    async with asyncio.timeout(10):
        async with first.exclusive("crl:issuing"):
            pass
