"""How long a bulk import takes: parse and check N rows, then import them in one transaction.

    .venv/bin/python tools/bench_import.py [--rows 10000] [--orders] [--database URL]

With --orders every new identity also gets an order, whose one-time code is stored as its
keyed hash (HMAC-SHA-256).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from est_ca.audit import Actor
from est_ca.config import load_settings
from est_ca.registration.importing import parse_csv
from est_ca.service import Service


def staff_file(rows: int) -> str:
    header = "external_id,type,organisation_name,cvr,given_name,surname,email\n"
    return header + "".join(
        f"emp-{n},user,ÆØÅ ApS,99999999,Søren {n},Ærø Ålborg,s{n}@example.dk\n" for n in range(rows)
    )


async def bench(rows: int, orders: bool, data_dir: Path, database: str) -> None:
    overrides: dict[str, object] = {"data_dir": str(data_dir), "database": {"url": database}}
    settings = load_settings(None, {}, overrides)
    service = await Service.open(settings, with_ca=False)
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
            f"  import (one transaction):       {imported:6.2f} s"
            + (f"  incl. {len(result.orders)} orders" if orders else "")
        )
        print(f"  total:                          {checked + imported:6.2f} s")
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--orders", action="store_true")
    parser.add_argument("--database", default="", help="default: SQLite in a scratch directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(bench(args.rows, args.orders, Path(scratch), args.database))


if __name__ == "__main__":
    main()
