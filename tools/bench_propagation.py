"""How long after a revocation through instance A instance B's OCSP says "revoked" and B's CRL
lists it: with LISTEN/NOTIFY (the default on PostgreSQL) and with polling only.

    .venv/bin/python -m tools.bench_propagation [--revocations 100] [--poll-revocations 100]

For each mode it starts two `est-ca serve` processes on a fresh PostgreSQL database
(EST_CA_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test, which must accept
CREATE DATABASE), records the certificates straight into the store (no signing), and then, one
at a time: asks B (its answer "good" is now cached, as a relying party's first request leaves
it), revokes through A's admin API, and from the moment A's answer arrives (the revocation is
committed) asks B's OCSP and CRL every 5 ms until both say so. Each revocation waits a random
part of B's poll interval first, so that it falls anywhere in B's poll cycle. Prints
p50/p90/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from est_ca.admin.access import Scope
from est_ca.audit import Actor
from est_ca.ca.certificates import Serial
from est_ca.config import load_settings
from est_ca.service import Service
from tools.cluster import (
    Instance,
    SharedFiles,
    fetch_crl,
    ocsp_status,
    revoke_through_admin,
    running_cluster,
    shared_files,
)
from tools.scratch import record_certificates

POSTGRES = os.environ.get("EST_CA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ASK_EVERY = 0.005
POLL_SECONDS = 2.0  # revocation.poll_seconds, the shipped default
BENCH = Actor(kind="admin", name="bench", source="bench")


class Database:
    """A fresh database on the PostgreSQL server, dropped at the end."""

    def __init__(self, server: str = POSTGRES) -> None:
        """`server`: a URL of the PostgreSQL server (its database part is where CREATE
        DATABASE runs)."""
        self.server = server.replace("postgresql+asyncpg://", "postgresql://")
        self.name = f"est_ca_bench_{secrets.token_hex(6)}"
        base = self.server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        self.url = f"{base}/{self.name}"

    async def __aenter__(self) -> str:
        admin = await asyncpg.connect(self.server)
        await admin.execute(f'CREATE DATABASE "{self.name}"')
        await admin.close()
        return self.url

    async def __aexit__(self, *_: object) -> None:
        admin = await asyncpg.connect(self.server)
        await admin.execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        await admin.close()


def ocsp_request_for(issuer: x509.Certificate, serial: Serial) -> bytes:
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            hashlib.sha1(issuer.subject.public_bytes()).digest(),  # noqa: S324 - CertID
            x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest,
            serial.value,
            hashes.SHA1(),  # noqa: S303 - RFC 5019's CertID hash
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


async def one(
    session: aiohttp.ClientSession,
    a: Instance,
    b: Instance,
    token: str,
    trust: Path,
    issuer: x509.Certificate,
    serial: Serial,
) -> tuple[float, float]:
    """Seconds from A's answer to B's OCSP saying revoked, and to B's CRL listing it."""
    request = ocsp_request_for(issuer, serial)
    good = await ocsp_status(session, b, request)
    assert good is ocsp.OCSPCertStatus.GOOD, good
    # Revocations arrive at any moment of B's poll cycle, not just after B noticed the last.
    await asyncio.sleep(random.uniform(0, POLL_SECONDS))
    await revoke_through_admin(session, a, token, serial.value, trust)
    committed = time.monotonic()
    ocsp_at = crl_at = 0.0
    while not (ocsp_at and crl_at):
        if not ocsp_at and await ocsp_status(session, b, request) is ocsp.OCSPCertStatus.REVOKED:
            ocsp_at = time.monotonic()
        if not crl_at:
            crl = await fetch_crl(session, b)
            if crl.get_revoked_certificate_by_serial_number(serial.value) is not None:
                crl_at = time.monotonic()
        await asyncio.sleep(ASK_EVERY)
    return ocsp_at - committed, crl_at - committed


def summary(name: str, seconds: list[float]) -> str:
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return (
        f"{name:<28} n={len(seconds):<4} p50={cuts[49] * 1000:7.1f} ms  "
        f"p90={cuts[89] * 1000:7.1f} ms  p99={cuts[98] * 1000:7.1f} ms  "
        f"max={max(seconds) * 1000:7.1f} ms"
    )


async def measure(directory: Path, shared: SharedFiles, *, listen: bool, count: int) -> list[str]:
    async with (
        Database() as url,
        running_cluster(directory, shared, url, 2, listen=listen) as (a, b),
    ):
        service = await Service.open(load_settings(a.config, {}, {}), with_ca=False)
        try:
            # record_certificates' identity, whose organisation a revocation reads.
            await service.registry.create_organisation(
                BENCH, cvr="99999999", name="Bench ApS", email_domains=("example.dk",)
            )
            serials = await record_certificates(service, count, revoked=False)
            _, token = await service.tokens.create(
                BENCH, name="bench", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=1
            )
        finally:
            await service.close()
        issuer = x509.load_pem_x509_certificate(shared.hierarchy.issuing_cert.read_bytes())
        async with aiohttp.ClientSession() as session:
            delays = [
                await one(session, a, b, token, shared.tls_cert, issuer, serial)
                for serial in serials
            ]
    mode = "LISTEN/NOTIFY + poll 2 s" if listen else "poll only (2 s)"
    return [
        summary(f"{mode}: OCSP", [d[0] for d in delays]),
        summary(f"{mode}: CRL", [d[1] for d in delays]),
    ]


async def main(revocations: int, poll_revocations: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        shared = shared_files(directory / "ca")
        lines = await measure(directory / "listen", shared, listen=True, count=revocations)
        if poll_revocations:
            lines += await measure(directory / "poll", shared, listen=False, count=poll_revocations)
    print("revocation through A until B says so (from A's answer; B asked every 5 ms):")
    for line in lines:
        print(" ", line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revocations", type=int, default=100)
    parser.add_argument("--poll-revocations", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.revocations, args.poll_revocations))
