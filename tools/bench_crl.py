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
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.config import load_settings
from est_ca.registration.identities import Identity, IdentityType
from est_ca.service import Service
from est_ca.store.store import CERTIFICATES


async def record_revoked(service: Service, count: int) -> None:
    """`count` revoked certificates of one identity, straight into the store (no signing)."""
    now = service.clock.now()
    identity = Identity.create(
        type=IdentityType.SYSTEM,
        organisation_name="Bench ApS",
        cvr="99999999",
        display_name="bench",
        created_at=now,
    )
    async with service.store.write() as tx:
        await tx.insert_identity(identity)
        rows = [
            {
                "issuer_key_id": service.revocations.issuer_key_id,
                "serial": Serial.random().hex,
                "identity_id": identity.id,
                "order_id": None,
                "renewal_of": None,
                "profile": "system",
                "status": str(CertificateStatus.REVOKED),
                "public_key_sha256": uuid.uuid4().hex * 2,
                "created_at": now,
                "not_before": now,
                "not_after": now + dt.timedelta(days=1095),
                "issued_at": now,
                "revoked_at": now,
                "revocation_reason": "keyCompromise" if i % 2 else None,
            }
            for i in range(count)
        ]
        await tx._conn.execute(CERTIFICATES.insert(), rows)
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
    settings = load_settings(
        None,
        {},
        {"data_dir": str(data_dir), "service": {"demo": False, "http_port": 18080}},
    )
    service = await Service.open(settings, create=True)
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
    if args.data_dir:
        asyncio.run(bench(args.entries, args.data_dir))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(bench(args.entries, Path(scratch)))


if __name__ == "__main__":
    main()
