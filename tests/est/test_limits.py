"""Resource limits and brute-force protection over the wire: 429, 503, 408, cut-off slow
clients, header caps, and the service answering everyone else throughout."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import (
    PKCS10,
    CurlResult,
    KeyPool,
    credentials,
    csr_base64,
    curl,
    curl_est,
    make_csr,
    new_order,
    new_user,
)


@pytest.fixture
async def strict(open_service: OpenService) -> AsyncIterator[tuple[Service, Server]]:
    """A service with small limits, so the tests reach them quickly."""
    service = await open_service(
        limits={
            "failures_per_source": 3,
            "max_concurrent_enrollments": 2,
            "request_timeout_seconds": 2,
            "max_header_bytes": 2048,
        }
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    yield service, server
    await server.stop()


async def enroll(
    server: Server, ca: CaMaterial, body: Path, *options: str, source: str = "127.0.0.1"
) -> CurlResult:
    return await curl_est(
        server,
        "simpleenroll",
        body,
        "--interface",
        source,
        *PKCS10,
        *options,
        trust=ca.tls_cert,
    )


async def test_repeated_wrong_codes_from_one_address_get_429_while_others_go_on(
    strict: tuple[Service, Server], ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    service, server = strict
    body = tmp_path / "csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    orders = [await new_order(service, await new_user(service)) for _ in range(4)]
    statuses = [
        (await enroll(server, ca_material, body, "-u", f"{p.order.reference}:WRONG")).status
        for p in orders[:3]  # three different orders, one wrong code each: no order locks
    ]
    assert statuses == [401, 401, 401]
    throttled = await enroll(server, ca_material, body, "-u", ":".join(credentials(orders[3])))
    assert throttled.status == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 61
    # The same right code from another address enrolls: only the failing source is slowed.
    other = await enroll(
        server, ca_material, body, "-u", ":".join(credentials(orders[3])), source="127.0.0.2"
    )
    assert other.status == 200, other.text
    async with service.store.read() as tx:
        [event] = await tx.list_audit(action="source.throttled")
    assert event.actor.source == "127.0.0.1"


async def test_an_overload_gets_503_with_retry_after_and_nothing_half_done(
    strict: tuple[Service, Server], ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    service, server = strict
    orders = [
        await new_order(service, await new_user(service, given_name=f"U{n}")) for n in range(12)
    ]
    bodies = []
    for index in range(12):
        body = tmp_path / f"csr-{index}"
        body.write_bytes(csr_base64(make_csr(keys.rsa(index % 4).key)))
        bodies.append(body)
    replies = await asyncio.gather(
        *(
            enroll(
                server,
                ca_material,
                bodies[i],
                "-u",
                ":".join(credentials(orders[i])),
                source=f"127.0.1.{i}",
            )
            for i in range(12)
        )
    )
    statuses = sorted(r.status for r in replies)
    assert 503 in statuses
    assert set(statuses) <= {200, 400, 503}  # 400: a key shared across identities
    for reply in replies:
        if reply.status == 503:
            assert reply.headers["retry-after"] == "1"
    for placed, reply in zip(orders, replies, strict=True):
        order = await service.registry.get_order(placed.order.reference)
        if reply.status == 503:
            assert order.failed_attempts == 0
            assert service.registry.order_state(order).value == "pending"


async def _raw(server: Server, ca: CaMaterial) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context(cafile=str(ca.tls_cert))
    host, port = server.https_url.removeprefix("https://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), ssl=context)


async def test_a_client_sending_headers_one_byte_a_second_is_cut_off(
    strict: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    _, server = strict
    reader, writer = await _raw(server, ca_material)
    started = time.monotonic()
    request = b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    closed = False
    for byte in request:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        await asyncio.sleep(1)
    if not closed:
        closed = await reader.read() == b""
    elapsed = time.monotonic() - started
    writer.close()
    assert closed
    assert elapsed < 10, f"the slow client was served for {elapsed:.0f} s"


async def test_a_body_that_trickles_in_is_cut_off_with_408(
    strict: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    _, server = strict
    reader, writer = await _raw(server, ca_material)
    writer.write(
        b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Basic YTpi\r\nContent-Type: application/pkcs10\r\n"
        b"Content-Length: 1000\r\n\r\nMII"
    )
    await writer.drain()
    started = time.monotonic()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 5


async def test_a_header_over_the_cap_is_a_4xx(
    strict: tuple[Service, Server], ca_material: CaMaterial
) -> None:
    _, server = strict
    reply = await curl(
        f"{server.https_url}/.well-known/est/cacerts",
        "-H",
        "X-Huge: " + "a" * 4000,
        trust=ca_material.tls_cert,
    )
    assert 400 <= reply.status < 500
    still = await curl(f"{server.https_url}/.well-known/est/cacerts", trust=ca_material.tls_cert)
    assert still.status == 200


async def test_wrong_codes_spread_over_instances_on_one_database_count_together(
    open_service: OpenService,
    postgres_url: str,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    """Behind a load balancer a source's failures reach every instance: the limit is the
    cluster's, not one instance's (they are counted in the database)."""
    limits = {"failures_per_source": 3}
    # A cluster's instances share the keys beside the database.
    shared = {
        "hmac_key_file": str(tmp_path / "hmac.key"),
        "audit_key_file": str(tmp_path / "audit.key"),
        "responder_wrap_key_file": str(tmp_path / "responder-wrap.key"),
    }
    servers = []
    for _ in range(2):
        service = await open_service(database_url=postgres_url, limits=limits, secrets=shared)
        server = Server(service)
        await server.start("127.0.0.1", 0, 0)
        servers.append(server)
    a, b = servers
    body = tmp_path / "csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    try:
        statuses = [
            (await enroll(server, ca_material, body, "-u", f"NOSUCHORDER{n}:WRONG")).status
            for n, server in enumerate((a, b, a))
        ]
        assert statuses == [401, 401, 401]
        for server in (b, a):
            throttled = await enroll(server, ca_material, body, "-u", "NOSUCHORDER:WRONG")
            assert throttled.status == 429
        async with a.service.store.read() as tx:
            events = await tx.list_audit(action="source.throttled")
        assert len(events) == 1
    finally:
        for server in servers:
            await server.stop()
