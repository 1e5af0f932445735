"""Crash safety: the service runs as a process, is driven with enrollments and revocations, and
is killed with SIGKILL at random moments, again and again. After every restart the database
holds everything clients were given, and nothing half-done.

15 kills in CI; EST_CA_CRASH_ROUNDS=200 for a long run. The random moments come from a seeded
generator (EST_CA_CRASH_SEED) so a failing run can be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from est_ca.admin.access import Scope
from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.ca.publication import OCSP_PATH
from est_ca.client import EstClient
from est_ca.config import load_settings
from est_ca.registration.orders import OrderStatus
from est_ca.service import Service
from tests.conftest import CaMaterial, free_port
from tests.helpers import ADMIN, credentials, make_csr, new_order, new_system
from tests.revocation.helpers import ocsp_request

ROUNDS = int(os.environ.get("EST_CA_CRASH_ROUNDS", "15"))
SEED = int(os.environ.get("EST_CA_CRASH_SEED", "20261123"))
ORDERS_PER_ROUND = 12
CLIENTS = 6


@dataclasses.dataclass
class Deployment:
    config: Path
    settings_overrides: dict[str, Any]
    https: int
    http: int
    admin: int
    ca: CaMaterial
    token: str = ""

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https}"

    def settings(self) -> Any:
        return load_settings(self.config, {})


@dataclasses.dataclass
class Ledger:
    """What clients were told: the truth the database must agree with."""

    received: dict[str, bytes] = dataclasses.field(default_factory=dict)  # order -> cert DER
    revoked: set[int] = dataclasses.field(default_factory=set)  # serials a revoke was confirmed
    kills: int = 0
    enrollments_sent: int = 0
    cut_off: int = 0


@pytest.fixture
def deployment(tmp_path: Path, ca_material: CaMaterial, ec_profiles: Path) -> Deployment:
    https, http, admin = free_port(), free_port(), free_port()
    config = tmp_path / "est-ca.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[service]
host = "127.0.0.1"
port = {https}
http_port = {http}
demo = false
[admin]
port = {admin}
[publication]
base_url = "http://127.0.0.1:{http}"
[tls]
cert_file = "{ca_material.tls_cert}"
key_file = "{ca_material.tls_key}"
[ca]
cert_file = "{ca_material.hierarchy.issuing_cert}"
chain_file = "{ca_material.hierarchy.issuing_chain}"
key_file = "{ca_material.hierarchy.issuing_key}"
key_passphrase_file = "{ca_material.passphrase}"
root_key_file = "{ca_material.hierarchy.root_key}"
generate_demo = false
[orders]
claim_lease_seconds = 1
[revocation]
poll_seconds = 1
[limits]
failures_per_source = 1000000
max_concurrent_enrollments = 1000
[profiles]
extra_dirs = ["{ec_profiles}"]
[logging]
format = "json"
level = "warning"
"""
    )
    return Deployment(config, {}, https, http, admin, ca_material)


@contextlib.asynccontextmanager
async def running(deployment: Deployment) -> AsyncIterator[asyncio.subprocess.Process]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_ca",
        "--config",
        str(deployment.config),
        "serve",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        await wait_until_serving(deployment, process)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def wait_until_serving(deployment: Deployment, process: asyncio.subprocess.Process) -> None:
    client = EstClient(deployment.https_url, trust=deployment.ca.tls_cert)
    for _ in range(300):
        if process.returncode is not None:
            assert process.stderr is not None
            raise AssertionError((await process.stderr.read()).decode()[-2000:])
        with contextlib.suppress(OSError, aiohttp.ClientError):
            if (await client.cacerts()).status == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not start within 30 s")


async def prepare_orders(deployment: Deployment, count: int) -> list[tuple[str, str]]:
    service = await Service.open(deployment.settings(), with_ca=False, create=True)
    try:
        if not deployment.token:
            _, deployment.token = await service.tokens.create(
                ADMIN, name="crash", scopes=frozenset({Scope.ADMIN}), cvr=None, valid_days=1
            )
        return [
            credentials(await new_order(service, await new_system(service, f"s{n}")))
            for n in range(count)
        ]
    finally:
        await service.close()


async def enroll_all(deployment: Deployment, orders: list[tuple[str, str]], ledger: Ledger) -> None:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for order in orders:
        queue.put_nowait(order)
    client = EstClient(deployment.https_url, trust=deployment.ca.tls_cert)

    async def worker() -> None:
        while not queue.empty():
            reference, code = queue.get_nowait()
            ledger.enrollments_sent += 1
            try:
                reply = await client.simpleenroll(
                    make_csr(ec.generate_private_key(ec.SECP256R1())), (reference, code)
                )
            except (OSError, aiohttp.ClientError):
                ledger.cut_off += 1
                continue
            if reply.status == 200:
                certificate = reply.certificates()[0]
                ledger.received[reference] = certificate.public_bytes(serialization.Encoding.DER)

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))


async def revoke_some(deployment: Deployment, ledger: Ledger, rng: random.Random) -> None:
    """Revoke a few certificates clients received, over the admin API, while enrollments run."""
    context = ssl.create_default_context(cafile=str(deployment.ca.tls_cert))
    candidates = [x509.load_der_x509_certificate(d).serial_number for d in ledger.received.values()]
    candidates = [s for s in candidates if s not in ledger.revoked]
    for serial in rng.sample(candidates, min(2, len(candidates))):
        url = f"https://127.0.0.1:{deployment.admin}/admin/v1/certificates/{serial:040x}/revoke"
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
                session.post(
                    url,
                    json={"reason": "keyCompromise"},
                    headers={"Authorization": f"Bearer {deployment.token}"},
                ) as reply,
            ):
                if reply.status in (200, 409):
                    ledger.revoked.add(serial)
        except (OSError, aiohttp.ClientError):
            pass


async def one_round(deployment: Deployment, ledger: Ledger, rng: random.Random) -> None:
    orders = await prepare_orders(deployment, ORDERS_PER_ROUND)
    async with running(deployment) as process:
        work = asyncio.gather(
            enroll_all(deployment, orders, ledger), revoke_some(deployment, ledger, rng)
        )
        await asyncio.sleep(rng.uniform(0.02, 0.6))
        process.send_signal(signal.SIGKILL)
        ledger.kills += 1
        await work
    await asyncio.sleep(1.2)  # past the claim lease: the next start releases what the kill left


async def check_consistency(deployment: Deployment, ledger: Ledger) -> dict[str, int]:
    """Every invariant, read from the database and from the service, restarted once more (its
    start recovers what the last kill left)."""
    async with running(deployment):
        return await _check_running(deployment, ledger)


async def _check_running(deployment: Deployment, ledger: Ledger) -> dict[str, int]:
    service = await Service.open(deployment.settings(), with_ca=False, create=True)
    try:
        async with service.store.read() as tx:
            certificates = await tx.list_certificates(limit=100_000)
            orders = await tx.list_orders(limit=100_000)
        chain = await service.store.verify_audit()
    finally:
        await service.close()
    by_serial = {record.serial.value: record for record in certificates}
    by_reference = {order.reference: order for order in orders}
    assert chain.intact, chain
    # Every certificate a client received is recorded, byte for byte, for its order.
    for reference, der in ledger.received.items():
        serial = x509.load_der_x509_certificate(der).serial_number
        record = by_serial[serial]
        assert record.der == der
        assert record.status in (CertificateStatus.ISSUED, CertificateStatus.REVOKED)
        order = by_reference[reference]
        assert order.status is OrderStatus.CONSUMED
        assert order.certificate_serial == Serial(serial)
    # No order consumed without its certificate; none left mid-issuance after restart.
    for order in orders:
        assert order.status is not OrderStatus.ISSUING, order
        if order.status is OrderStatus.CONSUMED:
            assert order.certificate_serial is not None
            record = by_serial[order.certificate_serial.value]
            assert record.order_id == order.id
            assert record.status in (CertificateStatus.ISSUED, CertificateStatus.REVOKED)
    assert not [r for r in certificates if r.status is CertificateStatus.RESERVED]
    # One certificate per order at most; serials are the primary key, so unique.
    per_order: dict[Any, int] = {}
    for record in certificates:
        if record.status in (CertificateStatus.ISSUED, CertificateStatus.REVOKED):
            per_order[record.order_id] = per_order.get(record.order_id, 0) + 1
    assert set(per_order.values()) <= {1}
    # Confirmed revocations are in the database, and CRL and OCSP say the same as the database.
    revoked = {r.serial.value for r in certificates if r.status is CertificateStatus.REVOKED}
    assert ledger.revoked <= revoked
    await check_publication(deployment, by_serial, revoked)
    return {
        "issued or revoked": len(per_order),
        "abandoned": sum(r.status is CertificateStatus.ABANDONED for r in certificates),
        "revoked": len(revoked),
    }


async def check_publication(
    deployment: Deployment, by_serial: dict[int, Any], revoked: set[int]
) -> None:
    await asyncio.sleep(1.5)  # a revocation the last kill interrupted is seen within the poll
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{deployment.http}"
        async with session.get(f"{base}/crl/issuing.crl") as reply:
            crl = x509.load_der_x509_crl(await reply.read())
        assert {entry.serial_number for entry in crl} == revoked
        issuer = x509.load_pem_x509_certificate(deployment.ca.hierarchy.issuing_cert.read_bytes())
        for serial, record in by_serial.items():
            if record.der is None:
                continue
            certificate = x509.load_der_x509_certificate(record.der)
            async with session.post(
                f"{base}{OCSP_PATH}",
                data=ocsp_request(certificate, issuer),
                headers={"Content-Type": "application/ocsp-request"},
            ) as reply:
                status = ocsp.load_der_ocsp_response(await reply.read()).certificate_status
            expected = (
                ocsp.OCSPCertStatus.REVOKED if serial in revoked else ocsp.OCSPCertStatus.GOOD
            )
            assert status is expected, serial


async def test_killed_again_and_again_the_service_loses_and_duplicates_nothing(
    deployment: Deployment,
) -> None:
    rng = random.Random(SEED)
    ledger = Ledger()
    for _ in range(ROUNDS):
        await one_round(deployment, ledger, rng)
    counts = await check_consistency(deployment, ledger)
    print(
        f"crash safety: {ledger.kills} SIGKILLs survived; {ledger.enrollments_sent} enrollments "
        f"sent, {len(ledger.received)} certificates received, {ledger.cut_off} cut off by a "
        f"kill; {counts}; {len(ledger.revoked)} revocations confirmed"
    )
    assert ledger.kills == ROUNDS
    assert ledger.received, "no enrollment completed: the kills came too early to test anything"
