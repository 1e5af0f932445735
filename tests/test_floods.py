"""Floods and fairness over real HTTPS: one source or one flood must not starve the rest, and a
flood must not become a flood of audit writes, while a single refusal is still recorded."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.client import EstClient, encode_csr
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import credentials, make_csr, new_order, new_system

FLOOD = 200


@pytest.fixture
async def guarded(
    open_service: OpenService, ec_profiles: Path
) -> AsyncIterator[tuple[Service, Server]]:
    service = await open_service(
        profiles={"extra_dirs": [str(ec_profiles)]},
        limits={"failures_per_source": 10, "max_concurrent_enrollments": 5},
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port, 0)
    yield service, server
    await server.stop()


def tls(ca: CaMaterial) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.tls_cert))


async def statuses(
    url: str,
    ca: CaMaterial,
    count: int,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    source: str = "127.0.0.1",
) -> Counter[int]:
    """`count` requests from `source`, one keep-alive connection, and the statuses they got."""
    connector = aiohttp.TCPConnector(ssl=tls(ca), local_addr=(source, 0), limit=1)
    seen: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with session.request(method, url, headers=headers, data=body) as response:
                await response.read()
                seen[response.status] += 1
    return seen


async def audit_rows(service: Service) -> int:
    async with service.store.read() as tx:
        return (await tx.audit_chain_head()).seq


def est(server: Server, operation: str = "simpleenroll") -> str:
    return f"{server.https_url}/.well-known/est/{operation}"


# -- 6. failures without credentials count -------------------------------------------------------


async def test_a_flood_of_malformed_basic_credentials_is_throttled_and_audited_in_summary(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    service, server = guarded
    before = await audit_rows(service)
    seen = await statuses(
        est(server),
        ca_material,
        FLOOD,
        headers={"Authorization": "Basic !!!not-base64!!!", "Content-Type": "application/pkcs10"},
        body=b"MIIB",
    )
    assert seen == Counter({401: 10, 429: FLOOD - 10})
    during = await audit_rows(service) - before
    await service.guard.flush(everything=True)
    after = await audit_rows(service) - before
    print(f"{FLOOD} malformed Basic requests: {during} audit rows, {after} after the summaries")
    # The first 401 in full, the moment the source was throttled, the first 429 in full;
    # then one summary for the other 401s and one for the other 429s.
    assert during == 3
    assert after == 5
    async with service.store.read() as tx:
        events = await tx.list_audit(action="enroll.refused", limit=10)
    assert sum(int(e.details.get("coalesced", "1")) for e in events) == FLOOD


async def test_a_flood_without_credentials_on_the_admin_api_is_throttled(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    service, server = guarded
    before = await audit_rows(service)
    seen = await statuses(
        f"{server.admin_url}/admin/v1/identities", ca_material, FLOOD, method="GET"
    )
    assert seen == Counter({401: 10, 429: FLOOD - 10})
    await service.guard.flush(everything=True)
    assert await audit_rows(service) - before == 5


async def test_a_malformed_authorization_header_on_the_admin_api_counts_as_a_failure(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    _, server = guarded
    seen = await statuses(
        f"{server.admin_url}/admin/v1/identities",
        ca_material,
        20,
        method="GET",
        headers={"Authorization": "Basic YWRtaW46YWRtaW4="},
    )
    assert seen == Counter({401: 10, 429: 10})


async def test_a_single_refusal_is_recorded_at_once_in_full(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    service, server = guarded
    seen = await statuses(
        est(server),
        ca_material,
        1,
        headers={"Authorization": "Basic !!!", "Content-Type": "application/pkcs10"},
        source="127.0.0.9",
    )
    assert seen == Counter({401: 1})
    async with service.store.read() as tx:
        [event] = await tx.list_audit(action="enroll.refused")
    assert event.actor.source == "127.0.0.9"
    assert event.reason is not None
    assert event.reason.startswith("Unauthenticated: the Authorization header must be Basic")


async def test_anonymous_challenges_do_not_count_so_the_retry_with_credentials_enrolls(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    """libest's estclient always sends its first request without credentials, gets 401, and
    retries with them: those challenges must never get a client throttled."""
    service, server = guarded
    request = make_csr(ec.generate_private_key(ec.SECP256R1()))
    anonymous = await statuses(
        est(server),
        ca_material,
        30,
        headers={"Content-Type": "application/pkcs10"},
        body=encode_csr(request),
    )
    assert anonymous == Counter({401: 30})
    placed = await new_order(service, await new_system(service))
    reply = await EstClient(server.https_url, trust=ca_material.tls_cert).simpleenroll(
        request, credentials(placed)
    )
    assert reply.status == 200, reply.text


# -- 7. unknown references are cheap, and slots are fair -----------------------------------------


async def test_legitimate_enrollments_succeed_during_a_flood_of_unknown_references(
    guarded: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    """200 addresses send unknown references (10 each, until each is throttled) while five
    holders of real orders enroll: at least four of the five get their certificates."""
    service, server = guarded
    orders = [await new_order(service, await new_system(service, f"real-{n}")) for n in range(5)]
    csr = encode_csr(make_csr(ec.generate_private_key(ec.SECP256R1())))

    async def attacker(n: int) -> Counter[int]:
        source = f"127.0.{1 + n // 250}.{2 + n % 250}"
        reference = f"UNKNOWN{n:05d}"
        token = base64.b64encode(f"{reference}:AAAAA-AAAAA-AAAAA-AAAAA".encode()).decode()
        return await statuses(
            est(server),
            ca_material,
            12,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/pkcs10"},
            body=csr,
            source=source,
        )

    async def holder(n: int) -> int:
        await asyncio.sleep(0.05 * n)  # arriving while the flood runs
        key = ec.generate_private_key(ec.SECP256R1())
        reply = await EstClient(server.https_url, trust=ca_material.tls_cert).simpleenroll(
            make_csr(key), credentials(orders[n])
        )
        return reply.status

    flood = [asyncio.create_task(attacker(n)) for n in range(200)]
    await asyncio.sleep(0.2)
    legitimate = await asyncio.gather(*(holder(n) for n in range(5)))
    attacks = sum(await asyncio.gather(*flood), Counter())
    print(f"legitimate enrollments during the flood: {legitimate}; the flood got {attacks}")
    assert sum(status == 200 for status in legitimate) >= 4
    assert set(attacks) <= {401, 429}
