"""Enrollment throughput of one `est-ca serve` instance against three on one PostgreSQL, and
how much of the time writers wait for a lock (the audit chain's head is the one every write
takes).

    .venv/bin/python -m tools.bench_cluster [--enrollments 120] [--clients 12] [--runs 3]

For 1 and then 3 instances (fresh database each) it places the orders beforehand, then lets
`--clients` EST clients enroll (P-256 CSRs made beforehand, a new TLS connection per request,
the clients spread round-robin over the instances) until every order is used. Throughput is
given as enrollments per second and as a ratio to a ceiling measured in the same run: the GET
/crl rate of the same instances with the same clients (HTTP and TLS-free work: what the
machine gives the stack at that moment), so that runs on a busy shared machine compare.
While enrolling, pg_stat_activity is sampled every 10 ms for backends of the database waiting
on a lock (`wait_event_type = 'Lock'`): the share of samples with any, the mean count, and the
share of the waits whose statement is the audit chain head's SELECT ... FOR UPDATE.
Prints min/median/max over `--runs` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from est_ca.client import EstClient
from est_ca.config import load_settings
from est_ca.registration.identities import IdentityType
from est_ca.service import Service
from tools.bench_propagation import BENCH, POSTGRES, Database
from tools.cluster import (
    Instance,
    SharedFiles,
    fetch_crl,
    profiles_for,
    running_cluster,
    shared_files,
)

CEILING_SECONDS = 3.0


async def place_orders(service: Service, count: int) -> list[tuple[str, str]]:
    await service.registry.create_organisation(
        BENCH, cvr="99999999", name="Bench ApS", email_domains=("example.dk",)
    )
    placed = []
    for index in range(count):
        identity = await service.registry.create_identity(
            BENCH,
            type=IdentityType.SYSTEM,
            organisation_name="Bench ApS",
            cvr="99999999",
            display_name=f"bench{index}.service",
        )
        order = await service.registry.place_order(BENCH, identity.id)
        placed.append((order.order.reference, order.one_time_code))
    return placed


def csr() -> x509.CertificateSigningRequest:
    """A P-256 CSR (the subject is the identity's, whatever the CSR says)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


async def ceiling(instances: list[Instance], clients: int) -> float:
    """GET /crl per second, `clients` at once, spread over the instances."""
    done = 0
    deadline = time.monotonic() + CEILING_SECONDS

    async def client(index: int) -> None:
        nonlocal done
        instance = instances[index % len(instances)]
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                await fetch_crl(session, instance)
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return done / (time.monotonic() - started)


async def lock_waits(database: str, stop: asyncio.Event) -> tuple[float, float, float]:
    """(share of samples with a backend waiting on a lock, mean waiting backends, the share
    of those waits that are for the audit chain's head)."""
    connection = await asyncpg.connect(POSTGRES)
    samples: list[int] = []
    on_chain = 0
    try:
        while not stop.is_set():
            waiting = await connection.fetch(
                "SELECT query FROM pg_stat_activity "
                "WHERE datname = $1 AND wait_event_type = 'Lock'",
                database,
            )
            samples.append(len(waiting))
            on_chain += sum(1 for row in waiting if "audit_chain" in row["query"])
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
    if not samples:
        return 0.0, 0.0, 0.0
    waits = sum(samples)
    return (
        sum(1 for s in samples if s) / len(samples),
        statistics.fmean(samples),
        on_chain / waits if waits else 0.0,
    )


async def one_run(
    directory: Path, shared: SharedFiles, count: int, enrollments: int, clients: int
) -> tuple[float, float, float, float, float]:
    """(enrollments/s, ceiling/s, lock-wait share, mean lock waiters, audit chain's share)."""
    database = Database()
    async with (
        database as url,
        running_cluster(directory, shared, url, count) as instances,
    ):
        service = await Service.open(load_settings(instances[0].config, {}, {}), with_ca=False)
        try:
            orders = await place_orders(service, enrollments)
        finally:
            await service.close()
        requests = [csr() for _ in orders]
        top = await ceiling(instances, clients)
        queue = list(zip(orders, requests, strict=True))
        statuses: list[int] = []

        async def client(index: int) -> None:
            est = EstClient(instances[index % count].https_url, trust=shared.tls_cert)
            while queue:
                credentials, request = queue.pop()
                statuses.append((await est.simpleenroll(request, credentials)).status)

        stop = asyncio.Event()
        sampler = asyncio.create_task(lock_waits(database.name, stop))
        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - started
        stop.set()
        share, mean, chain = await sampler
        if statuses.count(200) != enrollments:
            raise RuntimeError(f"not every enrollment succeeded: {sorted(set(statuses))}")
    return enrollments / elapsed, top, share, mean, chain


def spread(values: list[float], fmt: str) -> str:
    return "/".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


async def main(enrollments: int, clients: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        # The system profile allowing P-256 too (as the tests do): keys made in microseconds.
        profiles = profiles_for(directory / "profiles")
        shared = dataclasses.replace(shared_files(directory / "ca"), profile_dirs=(profiles,))
        results: dict[int, list[tuple[float, float, float, float, float]]] = {1: [], 3: []}
        for run in range(runs):
            for count in (1, 3):
                results[count].append(
                    await one_run(
                        directory / f"run{run}-{count}", shared, count, enrollments, clients
                    )
                )
    print(f"{enrollments} enrollments, {clients} clients, {runs} runs (min/median/max):")
    for count, rows in results.items():
        rate = [r[0] for r in rows]
        ratio = [r[0] / r[1] for r in rows]
        print(
            f"  {count} instance{'s' if count > 1 else ' '}: {spread(rate, '.1f')} enrollments/s"
            f"  = {spread(ratio, '.3f')} of the GET /crl ceiling"
            f" ({spread([r[1] for r in rows], '.0f')}/s);"
            f" lock waits in {spread([r[2] * 100 for r in rows], '.0f')} % of samples,"
            f" mean waiters {spread([r[3] for r in rows], '.2f')},"
            f" {spread([r[4] * 100 for r in rows], '.0f')} % of them on the audit chain's head"
        )
    one = statistics.median(r[0] / r[1] for r in results[1])
    three = statistics.median(r[0] / r[1] for r in results[3])
    print(f"  three instances / one (median ratios to the ceiling): {three / one:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollments", type=int, default=120)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.enrollments, args.clients, args.runs))
