"""Real concurrency, on SQLite and PostgreSQL: racing enrollments, many orders at once, and a
revocation racing a renewal. Nothing issued twice, nothing lost, nothing issued to a client
whose certificate was revoked first."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.client import EstClient
from est_ca.registration.orders import OrderStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import ADMIN, KeyPool, credentials, csr_der, make_csr, new_order, new_system

CONTENDERS = 50
ORDERS = 200
RACES = int(os.environ.get("EST_CA_RACES", "12"))


@pytest.fixture
async def running(
    open_service: OpenService, database_url: str, ec_profiles: Path
) -> AsyncIterator[tuple[Service, Server]]:
    service = await open_service(
        database_url=database_url,
        profiles={"extra_dirs": [str(ec_profiles)]},
        # Hundreds of clients, all from 127.0.0.1: the per-address limits out of the way.
        limits={
            "max_concurrent_enrollments": 1000,
            "failures_per_source": 10_000,
            "max_connections_per_source": 1000,
        },
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, 0, 0)
    yield service, server
    await server.stop()


def client(server: Server, ca: CaMaterial, **kwargs: Any) -> EstClient:
    return EstClient(server.https_url, trust=ca.tls_cert, **kwargs)


async def test_fifty_simultaneous_enrollments_on_one_order_issue_exactly_one_certificate(
    running: tuple[Service, Server], ca_material: CaMaterial, keys: KeyPool
) -> None:
    service, server = running
    placed = await new_order(service, await new_system(service))
    request = make_csr(keys.rsa().key)
    replies = await asyncio.gather(
        *(
            client(server, ca_material).simpleenroll(request, credentials(placed))
            for _ in range(CONTENDERS)
        )
    )
    # One is issued; those arriving while it is being issued get 403, those arriving after
    # it was stored get it again (the same key retrying, as after a lost response).
    assert {reply.status for reply in replies} <= {200, 403}
    issued = await service.registry.list_certificates(status=CertificateStatus.ISSUED)
    assert len(issued) == 1
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED
    assert order.certificate_serial == issued[0].serial
    delivered = {reply.certificates()[0].serial_number for reply in replies if reply.status == 200}
    assert delivered == {issued[0].serial.value}


async def test_two_hundred_simultaneous_enrollments_on_their_own_orders_all_succeed(
    running: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    service, server = running
    orders = [
        await new_order(service, await new_system(service, f"sys-{n}")) for n in range(ORDERS)
    ]
    requests = [make_csr(ec.generate_private_key(ec.SECP256R1())) for _ in range(ORDERS)]
    replies = await asyncio.gather(
        *(
            client(server, ca_material).simpleenroll(request, credentials(placed))
            for request, placed in zip(requests, orders, strict=True)
        )
    )
    assert [reply.status for reply in replies] == [200] * ORDERS
    serials = [reply.certificates()[0].serial_number for reply in replies]
    assert len(set(serials)) == ORDERS
    issued = await service.registry.list_certificates(status=CertificateStatus.ISSUED, limit=1000)
    assert {record.serial.value for record in issued} == set(serials)
    for placed in orders:
        order = await service.registry.get_order(placed.order.reference)
        assert order.status is OrderStatus.CONSUMED


async def test_a_revocation_racing_a_renewal_never_renews_an_already_revoked_certificate(
    running: tuple[Service, Server], ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """Each round enrolls a certificate, then renews it over EST while revoking it. The audit
    chain orders commits: if the revocation came first, no renewal may exist."""
    service, server = running
    assert service.authority is not None
    outcomes = {"renewed first": 0, "refused": 0}
    for round_number in range(RACES):
        key = ec.generate_private_key(ec.SECP256R1())
        placed = await new_order(service, await new_system(service, f"race-{round_number}"))
        current = await service.authority.enroll_with_order(
            placed.order.reference, placed.one_time_code, csr_der(make_csr(key)), source="t"
        )
        cert_file = tmp_path / f"current-{round_number}.pem"
        key_file = tmp_path / f"current-{round_number}.key"
        cert_file.write_bytes(current.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        renewing = client(server, ca_material, client_cert=cert_file, client_key=key_file)

        async def revoke(serial: int = current.serial_number, delay: int = round_number) -> None:
            await asyncio.sleep(0.015 * (delay % 6))
            await service.revocations.revoke_certificate(
                ADMIN, Serial(serial), RevocationReason.KEY_COMPROMISE
            )

        # Odd rounds renew with a new key (the revoked certificate is what stops them), even
        # rounds with the same key (a key revoked as compromised stops them as well).
        new_key = ec.generate_private_key(ec.SECP256R1()) if round_number % 2 else key
        renewal, _ = await asyncio.gather(
            renewing.simplereenroll(make_csr(new_key, subject=current.subject)), revoke()
        )
        order_of = await _commit_order(service)
        if renewal.status == 200:
            renewed = renewal.certificates()[0]
            assert (
                order_of["certificate.issued", renewed.serial_number]
                < (order_of["certificate.revoked", current.serial_number])
            ), "a renewal was issued for a certificate revoked before it"
            outcomes["renewed first"] += 1
        else:
            # 403: the client certificate is revoked; 400: its key was reported compromised.
            assert renewal.status in (400, 403), renewal.text
            record = await service.registry.get_certificate(Serial(current.serial_number))
            renewals = [
                c
                for c in await service.registry.list_certificates(identity_id=record.identity_id)
                if c.renewal_of == record.serial and c.status is not CertificateStatus.ABANDONED
            ]
            assert renewals == []
            outcomes["refused"] += 1
    assert sum(outcomes.values()) == RACES
    print(f"revocation-renewal races: {outcomes}")


async def _commit_order(service: Service) -> dict[tuple[str, int], int]:
    """The audit chain position of each issuance and revocation (the order of commits)."""
    positions: dict[tuple[str, int], int] = {}
    async with service.store.read() as tx:
        async for row in tx.audit_chain():
            if (
                row.event.action in ("certificate.issued", "certificate.revoked")
                and row.event.serial
            ):
                positions[(row.event.action, int(row.event.serial, 16))] = row.seq
    return positions
