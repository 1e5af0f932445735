"""Connections that never become requests: the TLS handshake has a deadline, one address holds
at most `limits.max_connections_per_source` connections, and running out of file descriptors
is logged in a line a second, not a traceback per failed accept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from est_ca.server import Server
from tests.conftest import CaMaterial, OpenService, free_port
from tests.helpers import parse_curl_output, require_tool, run

TIMEOUT = 2  # limits.request_timeout_seconds in these tests
CAP = 4  # limits.max_connections_per_source in the cap test


@contextlib.asynccontextmanager
async def _serving(open_service: OpenService, **limits: int) -> AsyncIterator[Server]:
    service = await open_service(limits=limits)
    running = Server(service)
    await running.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def quick(open_service: OpenService) -> AsyncIterator[Server]:
    async with _serving(open_service, request_timeout_seconds=TIMEOUT) as running:
        yield running


@pytest.fixture
async def capped(open_service: OpenService) -> AsyncIterator[Server]:
    # A request timeout longer than the test, so that only the cap closes connections.
    async with _serving(
        open_service, request_timeout_seconds=60, max_connections_per_source=CAP
    ) as running:
        yield running


def _address(url: str) -> tuple[str, int]:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    return host, int(port)


async def _idle_connection(
    url: str, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that sends nothing: no ClientHello, no request."""
    return await asyncio.open_connection(*_address(url), local_addr=(source, 0))


async def _seconds_until_closed(reader: asyncio.StreamReader, limit: float) -> float:
    """How long until the server closes the connection (infinity if not within `limit`)."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), timeout=limit):
            pass
    except TimeoutError:
        return float("inf")
    except ConnectionError:
        pass
    return time.monotonic() - started


async def _cacerts(url: str, ca: CaMaterial, source: str) -> int:
    """The status of GET cacerts from `source`; 0 when the connection was refused or closed."""
    require_tool("curl")
    result = await run(
        "curl", "-sS", "-D", "-", "-o", "/dev/null", "--max-time", "20",
        "--cacert", ca.tls_cert, "--interface", source, f"{url}/.well-known/est/cacerts",
    )  # fmt: skip
    return parse_curl_output(result.stdout).status if result.returncode == 0 else 0


async def test_a_connection_that_never_starts_tls_is_closed_after_the_request_timeout(
    quick: Server,
) -> None:
    reader, writer = await _idle_connection(quick.https_url)
    try:
        held = await _seconds_until_closed(reader, limit=10 * TIMEOUT)
    finally:
        writer.close()
    assert held < 2 * TIMEOUT + 1, f"a silent connection was held {held:.1f} s"


async def test_a_client_silent_after_the_handshake_is_let_go_without_waiting_for_its_tls_close(
    quick: Server, ca_material: CaMaterial
) -> None:
    # aiohttp closes the idle connection after the request timeout; TLS then waits for the
    # client's close_notify, which this client never sends (nor reads anything).
    reader, writer = await _idle_connection(quick.https_url)
    context = ssl.create_default_context(cafile=ca_material.tls_cert)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                incoming.write(await asyncio.wait_for(reader.read(65536), timeout=10))
        writer.write(outgoing.read())
        held = await _seconds_until_closed(reader, limit=20 * TIMEOUT)
    finally:
        writer.close()
    assert held < 3 * TIMEOUT + 2, f"a silent TLS connection was held {held:.1f} s"


async def test_connections_beyond_the_cap_from_one_address_are_closed_at_once(
    capped: Server, ca_material: CaMaterial
) -> None:
    idle = [await _idle_connection(capped.https_url) for _ in range(CAP)]
    try:
        # The first CAP are accepted and held open (waiting for a ClientHello) ...
        for reader, _ in idle:
            assert await _seconds_until_closed(reader, limit=0.5) == float("inf")
        # ... one more from the same address is closed as soon as it is accepted, ...
        reader, writer = await _idle_connection(capped.https_url)
        try:
            turned_away = await _seconds_until_closed(reader, limit=5)
        finally:
            writer.close()
        assert turned_away < 2, f"connection {CAP + 1} was held {turned_away:.1f} s"
        # ... while another address is served in full.
        assert await _cacerts(capped.https_url, ca_material, "127.0.0.2") == 200
    finally:
        for _, writer in idle:
            writer.close()
    # Once the idle connections are gone, their address is served again.
    deadline = time.monotonic() + 10
    while (status := await _cacerts(capped.https_url, ca_material, "127.0.0.1")) != 200:
        assert time.monotonic() < deadline, f"127.0.0.1 still refused: {status}"
        await asyncio.sleep(0.2)


FD_LIMIT = 100  # RLIMIT_NOFILE of the flooded process
FLOOD_SECONDS = 6
FLOOD_SOURCES = ("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5")
# Several addresses, so that the per-address cap (64 by default) alone cannot stop it.
FLOOD_PER_SOURCE = 80  # 320 in all: three times FD_LIMIT


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def starved(tmp_path: Path, ca_material: CaMaterial) -> Iterator[tuple[str, Path]]:
    """`est-ca serve` as a process allowed FD_LIMIT open files; its EST URL and its log."""
    port = free_port()
    hierarchy = ca_material.hierarchy
    env = {k: v for k, v in os.environ.items() if not k.startswith("EST_CA_")} | {
        "EST_CA_DATA_DIR": str(tmp_path / "data"),
        "EST_CA_SERVICE_HOST": "127.0.0.1",
        "EST_CA_SERVICE_PORT": str(port),
        "EST_CA_SERVICE_HTTP_PORT": str(free_port()),
        "EST_CA_SERVICE_DEMO": "false",
        "EST_CA_ADMIN_PORT": str(free_port()),
        "EST_CA_TLS_CERT_FILE": str(ca_material.tls_cert),
        "EST_CA_TLS_KEY_FILE": str(ca_material.tls_key),
        "EST_CA_CA_CERT_FILE": str(hierarchy.issuing_cert),
        "EST_CA_CA_CHAIN_FILE": str(hierarchy.issuing_chain),
        "EST_CA_CA_KEY_FILE": str(hierarchy.issuing_key),
        "EST_CA_CA_KEY_PASSPHRASE_FILE": str(ca_material.passphrase),
        "EST_CA_CA_ROOT_KEY_FILE": str(hierarchy.root_key),
        "EST_CA_CA_GENERATE_DEMO": "false",
        "EST_CA_LIMITS_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT),
        "EST_CA_LOGGING_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "est_ca", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_few_descriptors,
        )
    try:
        deadline = time.monotonic() + 120
        while b'"event": "listening"' not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the service did not start listening"
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}", log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _flood(url: str) -> list[socket.socket]:
    """Idle connections from several addresses, more than the process has file descriptors.

    Connecting does not wait: the ones the listen backlog has no room for keep retrying.
    """
    connections = []
    for _ in range(FLOOD_PER_SOURCE):
        for source in FLOOD_SOURCES:
            connection = socket.socket()
            connection.setblocking(False)
            connection.bind((source, 0))
            connection.connect_ex(_address(url))
            connections.append(connection)
    return connections


async def test_a_flood_beyond_the_file_limit_is_logged_briefly_and_then_served_again(
    starved: tuple[str, Path], ca_material: CaMaterial
) -> None:
    url, log = starved
    assert await _cacerts(url, ca_material, "127.0.0.2") == 200
    before = log.stat().st_size
    flood = _flood(url)
    await asyncio.sleep(FLOOD_SECONDS)
    for connection in flood:
        connection.close()
    deadline = time.monotonic() + 15
    while (status := await _cacerts(url, ca_material, "127.0.0.2")) != 200:
        assert time.monotonic() < deadline, f"not served after the flood: {status}"
        await asyncio.sleep(0.5)
    written = log.read_bytes()[before:]
    assert len(written) < 50_000, f"{len(written)} bytes of log for a {FLOOD_SECONDS} s flood"
    assert b"Traceback" not in written, written.decode(errors="replace")[-4000:]
    lines = written.decode().splitlines()
    for line in lines:
        json.loads(line)  # every line a log event: no traceback text, no stray output
    accept_errors = [line for line in lines if "accept" in line]
    # At least one: the flood did exhaust the descriptors. At most about one a second.
    assert 1 <= len(accept_errors) <= FLOOD_SECONDS + 6, "\n".join(accept_errors[:10])
