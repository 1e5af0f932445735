"""How long a bulk import takes: parse and check N rows, then import them (all or nothing).

    .venv/bin/python -m tools.bench_import [--rows 10000] [--orders] [--database URL]
    .venv/bin/python -m tools.bench_import --live [--rows 10000]

With --orders every new identity also gets an order, whose one-time code is stored as its
keyed hash (HMAC-SHA-256). With --live the import (with orders) goes through the admin API of
an `est-ca serve` process, and meanwhile someone else enrolls (Basic, RSA 3072) and a relying
party asks OCSP with a nonce (a fresh signature); their response times are printed, three
rounds,
min/median/max over probes made every quarter second while the import runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from est_ca.audit import Actor
from est_ca.config import load_settings
from est_ca.registration.importing import parse_csv
from est_ca.service import Service
from tools.bench_floods import Deployment, make_csr


def staff_file(rows: int, prefix: str = "") -> str:
    header = "external_id,type,organisation_name,cvr,given_name,surname,email\n"
    return header + "".join(
        f"{prefix}emp-{n},user,Bench ApS,99999999,Søren {n},Ærø Ålborg,s{n}@example.dk\n"
        for n in range(rows)
    )


async def bench(rows: int, orders: bool, data_dir: Path, database: str) -> None:
    overrides: dict[str, object] = {"data_dir": str(data_dir), "database": {"url": database}}
    settings = load_settings(None, {}, overrides)
    service = await Service.open(settings, with_ca=False, create=True)
    try:
        text = staff_file(rows)
        started = time.perf_counter()
        parsed = parse_csv(text, service.clock.now())
        checked = time.perf_counter() - started
        started = time.perf_counter()
        result = await service.registry.import_identities(
            Actor("admin", "bench", "tool"), parsed, place_orders=orders
        )
        imported = time.perf_counter() - started
        print(f"{rows} rows ({len(text.encode()):,} bytes) on {service.store.url.split(':')[0]}")
        print(f"  parse and check every row:      {checked:6.2f} s")
        print(
            f"  import (in stages):             {imported:6.2f} s"
            + (f"  incl. {len(result.orders)} orders" if orders else "")
        )
        print(f"  total:                          {checked + imported:6.2f} s")
    finally:
        await service.close()


async def live(rows: int, rounds: int = 3) -> None:
    """The import through a running service, and the others it must not starve."""
    with tempfile.TemporaryDirectory() as scratch:
        deployment = Deployment(Path(scratch))
        await deployment.start()
        try:
            reference, code = await deployment.order(0)
            key = rsa.generate_private_key(65537, 3072)
            issued = await deployment.enroll(reference, code, make_csr(key))
            chain = await deployment.cacerts()
            figures: dict[str, list[float]] = {"import": [], "enroll": [], "ocsp": []}
            next_order = 1
            for round_number in range(rounds):
                # Enough orders for the probes: one enrollment every 0.25 s of the import.
                waiting = [await deployment.order(next_order + n) for n in range(20)]
                next_order += 20
                requests = [make_csr(rsa.generate_private_key(65537, 3072)) for _ in waiting]
                text = staff_file(rows, prefix=f"r{round_number}-")
                started = time.perf_counter()
                importing = asyncio.create_task(deployment.import_csv(text))
                probe = 0
                while not importing.done() and probe < len(waiting):
                    await asyncio.sleep(0.25)
                    enroll_started = time.perf_counter()
                    await asyncio.gather(
                        deployment.enroll(*waiting[probe], requests[probe]),
                        deployment.ocsp(issued, chain[0]),
                    )
                    figures["enroll"].append(time.perf_counter() - enroll_started)
                    figures["ocsp"].append(deployment.last_ocsp_seconds)
                    probe += 1
                imported = await importing
                figures["import"].append(time.perf_counter() - started)
                assert imported == rows, imported
            print(f"{rows}-row import with orders through the admin API, {rounds} rounds:")
            for name, values in figures.items():
                print(
                    f"  {name:7} min {min(values):6.2f} s   median "
                    f"{statistics.median(values):6.2f} s   max {max(values):6.2f} s"
                )
        finally:
            await deployment.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--orders", action="store_true")
    parser.add_argument("--live", action="store_true", help="through a running service")
    parser.add_argument("--database", default="", help="default: SQLite in a scratch directory")
    args = parser.parse_args()
    if args.live:
        asyncio.run(live(args.rows))
        return
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(bench(args.rows, args.orders, Path(scratch), args.database))


if __name__ == "__main__":
    main()
