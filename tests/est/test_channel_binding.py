"""Channel binding (RFC 7030 3.5) under a label that requires it: a real TLS 1.2 client reads its
own tls-unique and enrolls a CSR carrying it on the same connection; a CSR bound to another
session, one without the password, and any request over TLS 1.3 are refused; openssl's
encoding of challengePassword is read."""

from __future__ import annotations

import asyncio
import base64
import http.client
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID, NameOID

from est_ca.ca.csrattrs import CHALLENGE_PASSWORD, CsrAttrs
from est_ca.clock import SettableClock
from est_ca.config import load_settings
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, authorities_overrides, with_test_organisations
from tests.helpers import (
    ADMIN,
    PKCS10,
    KeyPool,
    authority_entry,
    credentials,
    curl,
    curl_est,
    est_url,
    new_order,
    new_system,
    new_user,
    openssl,
)


@pytest.fixture
async def service(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> AsyncIterator[Service]:
    """One CA, the default label "bound", requiring channel binding."""
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("bound", ca_material.hierarchy, ca_material.passphrase, default=True)
        + "require_channel_binding = true\n"
    )
    settings = load_settings(config, {}, authorities_overrides(tmp_path, ca_material))
    opened = await Service.open(settings, clock=clock, create=True)
    yield await with_test_organisations(opened)
    await opened.close()


def bound_csr(key: rsa.RSAPrivateKey, password: bytes | None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bound client")])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _exchange(
    server: Server,
    cafile: Path,
    version: ssl.TLSVersion,
    csr_for: Callable[[bytes], bytes],
    authorization: tuple[str, str],
    operation: str = "simpleenroll",
) -> tuple[int, str]:
    """One TLS connection at `version`: read its tls-unique, make the CSR with `csr_for`, and
    POST it to `operation` on that same connection (blocking: run on a thread)."""
    host, port = server.https_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = context.maximum_version = version
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=60)
    try:
        connection.connect()
        assert isinstance(connection.sock, ssl.SSLSocket)
        assert connection.sock.version() == (
            "TLSv1.2" if version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
        )
        binding = connection.sock.get_channel_binding("tls-unique")
        assert binding is not None
        basic = base64.b64encode(":".join(authorization).encode()).decode()
        connection.request(
            "POST",
            f"/.well-known/est/{operation}",
            body=base64.encodebytes(csr_for(binding)),
            headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {basic}"},
        )
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, f"{response.getheader('Content-Type')}\n{body}"
    finally:
        connection.close()


def _session_binding(server: Server, cafile: Path) -> bytes:
    """The tls-unique of a TLS 1.2 connection that is then closed (another session)."""
    host, port = server.https_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cafile))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with context.wrap_socket(
        socket.create_connection((host, int(port))), server_hostname=host
    ) as connection:
        binding = connection.get_channel_binding("tls-unique")
    assert binding is not None
    return binding


async def exchange(
    server: Server,
    ca: CaMaterial,
    version: ssl.TLSVersion,
    csr_for: Callable[[bytes], bytes],
    authorization: tuple[str, str],
    operation: str = "simpleenroll",
) -> tuple[int, str]:
    return await asyncio.to_thread(
        _exchange, server, ca.tls_cert, version, csr_for, authorization, operation
    )


async def test_a_csr_bound_to_its_tls_1_2_session_enrolls(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    placed = await new_order(service, await new_user(service))
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)
    status, text = await exchange(
        server,
        ca_material,
        ssl.TLSVersion.TLSv1_2,
        lambda binding: bound_csr(key, base64.b64encode(binding)),
        credentials(placed),
    )
    assert status == 200, text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED


async def test_serverkeygen_checks_the_binding_of_the_clients_csr(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    """The client's CSR is the one bound to the session; the CSR the service builds for the key
    it generates is its own and carries no password."""
    placed = await new_order(service, await new_system(service))
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)
    status, text = await exchange(
        server,
        ca_material,
        ssl.TLSVersion.TLSv1_2,
        lambda binding: bound_csr(key, base64.b64encode(binding)),
        credentials(placed),
        "serverkeygen",
    )
    assert status == 200, text
    assert text.startswith("multipart/mixed; boundary=")


async def test_a_csr_bound_to_another_session_is_refused_and_the_order_stays(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    placed = await new_order(service, await new_user(service))
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)
    earlier = await asyncio.to_thread(_session_binding, server, ca_material.tls_cert)
    status, text = await exchange(
        server,
        ca_material,
        ssl.TLSVersion.TLSv1_2,
        lambda binding: bound_csr(key, base64.b64encode(earlier)),
        credentials(placed),
    )
    assert status == 400, text
    assert "not this TLS session's tls-unique" in text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING
    assert order.failed_attempts == 0


async def test_a_csr_without_a_challenge_password_is_refused(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    placed = await new_order(service, await new_user(service))
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)
    status, text = await exchange(
        server,
        ca_material,
        ssl.TLSVersion.TLSv1_2,
        lambda binding: bound_csr(key, None),
        credentials(placed),
    )
    assert status == 400, text
    assert "requires channel binding" in text
    assert "challengePassword" in text


async def test_tls_1_3_is_refused_with_a_request_for_tls_1_2(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    """Even with what CPython calls tls-unique on TLS 1.3 in the password."""
    placed = await new_order(service, await new_user(service))
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)
    status, text = await exchange(
        server,
        ca_material,
        ssl.TLSVersion.TLSv1_3,
        lambda binding: bound_csr(key, base64.b64encode(binding)),
        credentials(placed),
    )
    assert status == 400, text
    assert "only check on TLS 1.2" in text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING


async def test_an_openssl_made_challenge_password_is_read_and_a_wrong_one_refused(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """libest's client puts base64 tls-unique in challengePassword; openssl encodes the
    attribute its own way. The Python client above covers the right value (openssl cannot
    learn its own session's tls-unique); a wrong value here gets the binding refusal, so the
    attribute was found and read, not reported missing."""
    placed = await new_order(service, await new_user(service))
    config = tmp_path / "req.cnf"
    config.write_text(
        "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n"
        "[dn]\nCN = openssl client\n"
        "[attrs]\nchallengePassword = AAAAAAAAAAAAAAAA\n"
    )
    der = await openssl(
        "req", "-new", "-key", keys.rsa(0).path, "-config", config, "-outform", "DER"
    )
    body = tmp_path / "openssl.csr"
    body.write_bytes(base64.encodebytes(der))
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        *PKCS10,
        "--tls-max",
        "1.2",
        "-u",
        ":".join(credentials(placed)),
        trust=ca_material.tls_cert,
    )
    assert response.status == 400, response.text
    assert "not this TLS session's tls-unique" in response.text


async def test_csrattrs_asks_for_the_challenge_password(
    server: Server, ca_material: CaMaterial
) -> None:
    response = await curl(est_url(server, "csrattrs"), trust=ca_material.tls_cert)
    assert response.status == 200, response.text
    attributes = CsrAttrs.load(base64.b64decode(response.body))
    oids = [
        item.chosen.native for item in attributes if isinstance(item.chosen, core.ObjectIdentifier)
    ]
    assert CHALLENGE_PASSWORD in oids


async def test_an_approved_request_is_issued_to_its_retry_bound_to_the_new_session(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool
) -> None:
    """A retry after 202 comes on another connection, so its CSR carries that session's
    tls-unique: the request is the same (key, subject, extensions) and only the password
    differs. Matching the bytes made every approval under a binding label wait forever: the
    first CSR failed the binding, a newly bound one was 'another CSR' (409)."""
    placed = await new_order(service, await new_user(service), require_approval=True)
    key = keys.rsa(0).key
    assert isinstance(key, rsa.RSAPrivateKey)

    async def attempt() -> tuple[int, str]:
        return await exchange(
            server,
            ca_material,
            ssl.TLSVersion.TLSv1_2,
            lambda binding: bound_csr(key, base64.b64encode(binding)),
            credentials(placed),
        )

    status, text = await attempt()
    assert status == 202, text
    await service.registry.approve_request(ADMIN, placed.order.reference)
    status, text = await attempt()
    assert status == 200, text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED
