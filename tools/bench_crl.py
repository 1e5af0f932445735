"""How long a CRL of N revoked certificates takes, and how long the event loop stalls meanwhile.

    .venv/bin/python tools/bench_crl.py [--entries 100000] [--data-dir DIR]

It opens the service on a scratch data directory (SQLite, demo CA), records N revoked
certificates, then has the CRL publisher make the issuing CA's CRL exactly as after a
revocation: stream the entries from the store, build and sign on a worker thread, store the
result. A ticker coroutine meanwhile measures the event loop's largest gap between 10 ms ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from pathlib import Path

from est_ca.service import Service
from tools.scratch import open_service, record_certificates, run


async def record_revoked(service: Service, count: int) -> None:
    """`count` revoked certificates, and the issuing CA's revocation count that says its CRL
    is out of date."""
    await record_certificates(service, count, revoked=True)
    async with service.store.write() as tx:
        await tx.ensure_revocation_state(service.revocations.issuer_key_id)
        await tx.count_revocation(service.revocations.issuer_key_id)


class LoopWatch:
    """Ticks every 10 ms on the event loop and keeps the longest extra delay of a tick."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1
            self.longest = max(self.longest, loop.time() - last - 0.01)
            last = loop.time()

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def bench(entries: int, data_dir: Path) -> None:
    service = await open_service(data_dir)
    assert service.publishing is not None
    try:
        started = time.perf_counter()
        await record_revoked(service, entries)
        print(f"recorded {entries} revoked certificates in {time.perf_counter() - started:.2f} s")
        issuer = service.publishing.issuers[0]
        with LoopWatch() as watch:
            started = time.perf_counter()
            crl = await service.publishing.crls.refresh(issuer.key_id)
            elapsed = time.perf_counter() - started
        print(f"CRL number {crl.number}: {len(crl.der):,} bytes, made in {elapsed:.2f} s")
        print(f"  {entries / elapsed:,.0f} entries/s; the event loop ticked {watch.ticks} times,")
        print(f"  the longest extra delay of a 10 ms tick was {watch.longest * 1000:.0f} ms")
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    run(functools.partial(bench, args.entries), args.data_dir)


if __name__ == "__main__":
    main()
