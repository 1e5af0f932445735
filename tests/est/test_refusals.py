"""Every malformed or unentitled EST request gets a clear 4xx, over real TLS, from curl."""

from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.certificates import Serial
from est_ca.client import EstClient
from est_ca.clock import SettableClock
from est_ca.revocation.reasons import RevocationReason
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import (
    ADMIN,
    PKCS10,
    CurlResult,
    KeyPool,
    credentials,
    csr_base64,
    curl,
    curl_est,
    est_url,
    make_csr,
    new_order,
    new_user,
    pem,
    print_certs,
    require_tool,
    run,
)


def assert_plain_text_error(response: CurlResult, status: int, *fragments: str) -> None:
    assert response.status == status, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert len(response.body) < 400
    assert "Traceback" not in response.text
    for fragment in fragments:
        assert fragment in response.text


async def post_csr(
    server: Server, ca: CaMaterial, tmp: Path, body: bytes, *options: str, op: str = "simpleenroll"
) -> CurlResult:
    path = tmp / "body"
    path.write_bytes(body)
    return await curl_est(server, op, path, *options, trust=ca.tls_cert)


@pytest.fixture
async def pending(service: Service) -> tuple[str, str]:
    return credentials(await new_order(service, await new_user(service)))


async def test_no_credentials_is_401_with_a_basic_challenge_and_an_empty_body(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    response = await post_csr(
        server, ca_material, tmp_path, csr_base64(make_csr(keys.rsa().key)), *PKCS10
    )
    assert response.status == 401
    assert response.headers["www-authenticate"] == 'Basic realm="est-ca", charset="UTF-8"'
    assert response.headers["content-length"] == "0"
    assert response.body == b""


async def test_the_challenge_is_an_empty_401_to_a_plain_http_client(
    server: Server, ca_material: CaMaterial, keys: KeyPool
) -> None:
    """Some Java EST clients close the unread body of a challenge and then fail without ever
    reading the status: the challenge carries no body to leave unread."""
    context = ssl.create_default_context(cafile=str(ca_material.tls_cert))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.post(
            est_url(server, "simpleenroll"),
            data=csr_base64(make_csr(keys.rsa().key)),
            headers={"Content-Type": "application/pkcs10"},
        ) as response,
    ):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert response.content_length == 0
        assert await response.read() == b""


async def test_a_wrong_code_is_401_and_the_body_echoes_no_secret(
    server: Server,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    pending: tuple[str, str],
) -> None:
    reference, _ = pending
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa().key)),
        *PKCS10,
        "-u",
        f"{reference}:SECRT-GUESS-00000-00000",
    )
    assert_plain_text_error(response, 401, "wrong one-time code")
    assert "SECRT" not in response.text
    assert "www-authenticate" in response.headers


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xc3").decode(),
        "Bearer abc",
        "Basic " + "A" * 4000,
    ],
    ids=["bad-base64", "no-colon", "not-utf8", "other-scheme", "huge"],
)
async def test_a_malformed_authorization_header_is_401(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path, header: str
) -> None:
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa().key)),
        *PKCS10,
        "-H",
        f"Authorization: {header}",
    )
    assert_plain_text_error(response, 401)


async def test_a_second_use_of_an_order_with_another_key_is_403(
    server: Server,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    pending: tuple[str, str],
) -> None:
    options = (*PKCS10, "-u", ":".join(pending))
    first = csr_base64(make_csr(keys.rsa(0).key))
    assert (await post_csr(server, ca_material, tmp_path, first, *options)).status == 200
    other_key = csr_base64(make_csr(keys.rsa(1).key))
    second = await post_csr(server, ca_material, tmp_path, other_key, *options)
    assert_plain_text_error(second, 403, "already been used")


async def test_a_retry_of_an_order_with_the_same_key_returns_the_same_certificate(
    server: Server,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    pending: tuple[str, str],
) -> None:
    """The client lost the 200 (a dropped connection): asking again must not leave it with
    a consumed order and no certificate."""
    options = (*PKCS10, "-u", ":".join(pending))
    body = csr_base64(make_csr(keys.rsa(0).key))
    first = await post_csr(server, ca_material, tmp_path, body, *options)
    again = await post_csr(server, ca_material, tmp_path, body, *options)
    assert (first.status, again.status) == (200, 200), again.text
    assert again.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert await print_certs(again.body) == await print_certs(first.body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"@@@@", "not valid base64"),
        (base64.b64encode(b"\x30\x03\x02\x01\x00"), "not a DER PKCS#10"),
        (b"", "empty"),
    ],
    ids=["bad-base64", "not-a-csr", "empty"],
)
async def test_a_malformed_body_is_400(
    server: Server,
    ca_material: CaMaterial,
    tmp_path: Path,
    pending: tuple[str, str],
    body: bytes,
    message: str,
) -> None:
    response = await post_csr(server, ca_material, tmp_path, body, *PKCS10, "-u", ":".join(pending))
    assert_plain_text_error(response, 400, message)


async def test_a_csr_without_proof_of_possession_is_400(
    server: Server,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    pending: tuple[str, str],
) -> None:
    der = bytearray(make_csr(keys.rsa().key).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        base64.b64encode(bytes(der)),
        *PKCS10,
        "-u",
        ":".join(pending),
    )
    assert_plain_text_error(response, 400, "proof of possession")


async def test_the_wrong_content_type_is_415(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path, pending: tuple[str, str]
) -> None:
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa().key)),
        "-u",
        ":".join(pending),  # curl's default is application/x-www-form-urlencoded
    )
    assert_plain_text_error(response, 415, "application/pkcs10")


async def test_an_unreadable_content_type_is_415_and_not_echoed(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path, pending: tuple[str, str]
) -> None:
    """Found by the long wire fuzz: non-UTF-8 header bytes once made the error itself a 500."""
    raw = os.fsdecode(b"Content-Type: \xff\xfe")  # curl sends these two bytes as they are
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa().key)),
        "-H",
        raw,
        "-u",
        ":".join(pending),
    )
    assert_plain_text_error(response, 415, "application/pkcs10", "unreadable content type")
    assert b"\xff" not in response.body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_64_kib_is_413(
    server: Server, ca_material: CaMaterial, tmp_path: Path, pending: tuple[str, str], chunked: bool
) -> None:
    options = ("-H", "Transfer-Encoding: chunked") if chunked else ()
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        b"A" * (64 * 1024 + 1),
        *PKCS10,
        *options,
        "-u",
        ":".join(pending),
    )
    assert_plain_text_error(response, 413, "65536 bytes")


@pytest.mark.parametrize(
    ("method", "operation", "allowed"),
    [
        ("GET", "simpleenroll", "POST"),
        ("PUT", "simplereenroll", "POST"),
        ("POST", "cacerts", "GET"),
        ("POST", "csrattrs", "GET"),
    ],
)
async def test_the_wrong_method_is_405(
    server: Server, ca_material: CaMaterial, method: str, operation: str, allowed: str
) -> None:
    response = await curl(est_url(server, operation), "-X", method, trust=ca_material.tls_cert)
    assert_plain_text_error(response, 405, method)
    assert allowed in response.headers["allow"]


async def test_an_operation_we_do_not_offer_is_404(server: Server, ca_material: CaMaterial) -> None:
    response = await curl(est_url(server, "fullcmc"), "-X", "POST", trust=ca_material.tls_cert)
    assert_plain_text_error(response, 404)


async def test_a_404_for_a_huge_path_quotes_only_its_start(
    server: Server, ca_material: CaMaterial
) -> None:
    response = await curl(est_url(server, "x" * 8000), trust=ca_material.tls_cert)
    assert_plain_text_error(response, 404, "nothing is served at /.well-known/est/xxx")


async def test_basic_credentials_over_plain_http_are_refused_unread(
    server: Server, service: Service, keys: KeyPool, tmp_path: Path, pending: tuple[str, str]
) -> None:
    body = tmp_path / "csr"
    body.write_bytes(csr_base64(make_csr(keys.rsa().key)))
    response = await curl(
        f"{server.http_url}/.well-known/est/simpleenroll",
        *PKCS10,
        "-u",
        ":".join(pending),
        "--data-binary",
        f"@{body}",
    )
    assert_plain_text_error(response, 403, "HTTPS only")
    order = await service.registry.get_order(pending[0])
    assert order.failed_attempts == 0
    assert await service.registry.list_certificates() == []


# -- client certificates ------------------------------------------------------------------------


async def enrolled(
    server: Server, service: Service, ca: CaMaterial, keys: KeyPool, tmp: Path
) -> tuple[Path, x509.Certificate]:
    placed = await new_order(service, await new_user(service))
    response = await post_csr(
        server,
        ca,
        tmp,
        csr_base64(make_csr(keys.rsa(0).key)),
        *PKCS10,
        "-u",
        ":".join(credentials(placed)),
    )
    [certificate] = await print_certs(response.body)
    path = tmp / "client.pem"
    path.write_bytes(pem([certificate]))
    return path, certificate


async def post_as_holder(
    server: Server,
    ca: CaMaterial,
    tmp: Path,
    body: bytes,
    cert_file: Path,
    keys: KeyPool,
    *,
    op: str = "simplereenroll",
) -> CurlResult:
    """A CSR sent with the certificate from `enrolled` (and its key) as TLS client certificate."""
    return await post_csr(
        server,
        ca,
        tmp,
        body,
        *PKCS10,
        "--cert",
        str(cert_file),
        "--key",
        keys.rsa(0).pem_path,
        op=op,
    )


def renewal_csr(keys: KeyPool, current: x509.Certificate) -> bytes:
    san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return csr_base64(make_csr(keys.rsa(1).key, subject=current.subject, san=san))


async def test_reenroll_without_a_client_certificate_is_403(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    response = await post_csr(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa().key)),
        *PKCS10,
        op="simplereenroll",
    )
    assert_plain_text_error(response, 403, "TLS client certificate")


async def test_reenroll_with_another_subject_is_403(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    cert_file, _ = await enrolled(server, service, ca_material, keys, tmp_path)
    response = await post_as_holder(
        server, ca_material, tmp_path, csr_base64(make_csr(keys.rsa(1).key)), cert_file, keys
    )
    assert_plain_text_error(response, 403, "subject")


async def test_a_revoked_client_certificate_is_403_at_once(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    cert_file, current = await enrolled(server, service, ca_material, keys, tmp_path)
    await service.revocations.revoke_certificate(
        ADMIN, Serial(current.serial_number), RevocationReason.KEY_COMPROMISE
    )
    response = await post_as_holder(
        server, ca_material, tmp_path, renewal_csr(keys, current), cert_file, keys
    )
    assert_plain_text_error(response, 403, "revoked")


async def test_an_expired_client_certificate_reaches_the_service_and_is_403(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    clock: SettableClock,
) -> None:
    cert_file, current = await enrolled(server, service, ca_material, keys, tmp_path)
    clock.advance(dt.timedelta(days=1096))
    response = await post_as_holder(
        server, ca_material, tmp_path, renewal_csr(keys, current), cert_file, keys
    )
    assert_plain_text_error(response, 403, "expired")


async def test_a_client_certificate_from_another_ca_fails_the_handshake(
    server: Server, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    require_tool("curl")
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(ca_material.tls_cert.read_bytes())
    result = await run(
        "curl",
        "-sS",
        "--cacert",
        ca_material.tls_cert,
        "--cert",
        foreign,
        "--key",
        ca_material.tls_key,
        "-X",
        "POST",
        est_url(server, "simplereenroll"),
    )
    assert result.returncode != 0  # a TLS alert: the chain is not ours


async def test_requests_refused_while_parsing_are_audited_too(
    server: Server, service: Service, ca_material: CaMaterial, tmp_path: Path
) -> None:
    pending = credentials(await new_order(service, await new_user(service)))
    await post_csr(server, ca_material, tmp_path, b"x", "-u", ":".join(pending))
    await post_csr(server, ca_material, tmp_path, b"x", *PKCS10)
    await post_csr(server, ca_material, tmp_path, b"x", *PKCS10, op="simplereenroll")
    async with service.store.read() as tx:
        refusals = [
            (event.action, str(event.actor), (event.reason or "").split(":")[0])
            for event in await tx.list_audit()
            if event.outcome.value == "refused"
        ]
    assert refusals == [
        ("enroll.refused", f"order:{pending[0]}", "UnsupportedMediaType"),
        ("reenroll.refused", "anonymous:-", "NotEntitled"),
    ]


async def test_an_anonymous_first_request_is_a_challenge_and_not_audited_as_a_refusal(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """libest's estclient sends every enrollment first without credentials, gets the 401
    challenge and retries with them: one enrollment, so one audit event, an issuance."""
    placed = credentials(await new_order(service, await new_user(service)))
    body = csr_base64(make_csr(keys.rsa().key))
    challenge = await post_csr(server, ca_material, tmp_path, body, *PKCS10)
    retry = await post_csr(server, ca_material, tmp_path, body, *PKCS10, "-u", ":".join(placed))
    await service.guard.flush(everything=True)
    assert (challenge.status, retry.status) == (401, 200), retry.text
    async with service.store.read() as tx:
        actions = [event.action for event in await tx.list_audit()]
    assert "enroll.refused" not in actions
    assert "certificate.issued" in actions


async def test_curl_anyauth_enrolls_after_the_challenge_without_an_audited_refusal(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    """curl --anyauth asks without credentials first, as libest does, and learns Basic."""
    placed = credentials(await new_order(service, await new_user(service)))
    body = csr_base64(make_csr(keys.rsa().key))
    response = await post_csr(
        server, ca_material, tmp_path, body, *PKCS10, "--anyauth", "-u", ":".join(placed)
    )
    await service.guard.flush(everything=True)
    assert response.status == 200, response.text
    async with service.store.read() as tx:
        refusals = await tx.list_audit(action="enroll.refused")
    assert refusals == []


async def test_tls_authenticated_enroll_with_a_certificate_revoked_a_moment_ago_is_403(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    cert_file, current = await enrolled(server, service, ca_material, keys, tmp_path)
    record = await service.registry.get_certificate(Serial(current.serial_number))
    placed = await new_order(service, await service.registry.get_identity(record.identity_id))
    await service.revocations.revoke_certificate(
        ADMIN, record.serial, RevocationReason.KEY_COMPROMISE
    )
    response = await post_as_holder(
        server,
        ca_material,
        tmp_path,
        csr_base64(make_csr(keys.rsa(1).key)),
        cert_file,
        keys,
        op="simpleenroll",
    )
    assert_plain_text_error(response, 403, "revoked")
    order = await service.registry.get_order(placed.order.reference)
    assert order.failed_attempts == 0
    assert order.certificate_serial is None


async def test_control_characters_in_basic_credentials_are_a_401_on_either_database(
    open_service: OpenService, database_url: str, ca_material: CaMaterial
) -> None:
    """A NUL in the user name (which PostgreSQL text cannot hold) is refused as unknown, and
    the refusal is audited with the character escaped."""
    service = await open_service(database_url=database_url)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port, 0)
    try:
        reply = await EstClient(server.https_url, trust=ca_material.tls_cert).simpleenroll(
            make_csr(ec.generate_private_key(ec.SECP256R1())), ("AB\x00CD\x1b[2J", "code")
        )
        assert reply.status == 401, reply.text
        async with service.store.read() as tx:
            [refused] = await tx.list_audit(action="enroll.refused")
        assert "\x00" not in str(refused.actor)
        assert "\\x00" in refused.actor.name
    finally:
        await server.stop()
