"""EST over real TLS with the clients people use: curl, openssl, and a Python client."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.ca.certificates import Serial
from est_ca.client import EstClient
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial
from tests.helpers import (
    PKCS10,
    KeyPool,
    credentials,
    curl,
    curl_est,
    est_url,
    make_csr,
    new_order,
    new_system,
    new_user,
    openssl,
    pem,
    pki,
    print_certs,
)


async def openssl_csr_base64(key: Path, *, line_breaks: bool = True) -> bytes:
    """A CSR made by `openssl req`, base64-encoded by `openssl base64` (64-column lines)."""
    der = await openssl(
        "req", "-new", "-key", key, "-subj", "/CN=made by openssl", "-outform", "DER"
    )
    if line_breaks:
        return await openssl("base64", input=der)
    return base64.b64encode(der)


async def verify_with_openssl(certificate: x509.Certificate, ca: CaMaterial, tmp: Path) -> str:
    leaf = tmp / "leaf.pem"
    leaf.write_bytes(pem([certificate]))
    output = await openssl(
        "verify",
        "-CAfile",
        ca.hierarchy.root_cert,
        "-untrusted",
        ca.hierarchy.issuing_cert,
        leaf,
    )
    return output.decode()


async def test_cacerts_returns_the_issuing_ca_and_root_as_base64_certs_only(
    server: Server, ca_material: CaMaterial
) -> None:
    response = await curl(est_url(server, "cacerts"), trust=ca_material.tls_cert)
    assert response.status == 200
    assert response.headers["content-type"] == "application/pkcs7-mime"
    assert response.headers["content-transfer-encoding"] == "base64"
    assert int(response.headers["content-length"]) == len(response.body)
    assert b"\x00" not in response.body
    certificates = await print_certs(response.body)
    expected = [
        x509.load_pem_x509_certificate(path.read_bytes())
        for path in (ca_material.hierarchy.issuing_cert, ca_material.hierarchy.root_cert)
    ]
    assert certificates == expected


async def test_a_client_that_names_itself_gets_base64_in_mime_lines_as_openssl_reads_it(
    server: Server, ca_material: CaMaterial
) -> None:
    """curl sends a User-Agent, as libest does; `openssl base64 -d` decodes as libest's client
    does (OpenSSL's base64 BIO, default mode), which needs a line break early in the body."""
    response = await curl(est_url(server, "cacerts"), trust=ca_material.tls_cert)
    lines = response.body.split(b"\n")
    assert lines[-1] == b""
    assert all(0 < len(line) <= 76 for line in lines[:-1])
    der = await openssl("base64", "-d", input=response.body)
    assert der == base64.b64decode(response.body)


@pytest.mark.parametrize("operation", ["cacerts", "csrattrs", "simpleenroll"])
async def test_a_client_without_a_user_agent_gets_base64_in_one_line(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    operation: str,
) -> None:
    """strongSwan's pki 5.9.8 sends no User-Agent and decodes line breaks as data."""
    no_user_agent = ("-H", "User-Agent:")
    if operation != "simpleenroll":
        response = await curl(
            est_url(server, operation), *no_user_agent, trust=ca_material.tls_cert
        )
    else:
        body = tmp_path / "csr.b64"
        body.write_bytes(await openssl_csr_base64(keys.rsa().path, line_breaks=False))
        order = credentials(await new_order(service, await new_user(service)))
        response = await curl_est(
            server,
            operation,
            body,
            "-u",
            ":".join(order),
            *PKCS10,
            *no_user_agent,
            trust=ca_material.tls_cert,
        )
    assert response.status == 200, response.text
    assert response.headers["content-transfer-encoding"] == "base64"
    assert int(response.headers["content-length"]) == len(response.body)
    assert base64.b64encode(base64.b64decode(response.body, validate=True)) == response.body


@pytest.mark.parametrize(
    "variant", ["line-breaks", "one-line", "transfer-encoding-header", "chunked"]
)
async def test_curl_enrolls_a_csr_made_by_openssl(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    variant: str,
) -> None:
    identity = await new_user(service, given_name="Søren", surname="Ærø Ålborg")
    reference, code = credentials(await new_order(service, identity))
    body = tmp_path / "csr.b64"
    body.write_bytes(await openssl_csr_base64(keys.rsa().path, line_breaks=variant != "one-line"))
    extra: tuple[str, ...] = ()
    if variant == "transfer-encoding-header":
        extra = ("-H", "Content-Transfer-Encoding: base64")
    elif variant == "chunked":
        extra = ("-H", "Transfer-Encoding: chunked")
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        "-u",
        f"{reference}:{code}",
        *PKCS10,
        *extra,
        trust=ca_material.tls_cert,
    )
    assert response.status == 200, response.text
    assert response.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert response.headers["content-transfer-encoding"] == "base64"
    [certificate] = await print_certs(response.body)
    assert certificate.subject.rfc4514_string().endswith("CN=Søren Ærø Ålborg")
    assert (await verify_with_openssl(certificate, ca_material, tmp_path)).endswith(": OK\n")


async def enroll_with_curl(
    server: Server, service: Service, ca: CaMaterial, key: Path, tmp: Path
) -> Path:
    """Enroll a system identity with curl; returns the certificate's PEM file."""
    reference, code = credentials(await new_order(service, await new_system(service)))
    body = tmp / "enroll.b64"
    body.write_bytes(await openssl_csr_base64(key))
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        "-u",
        f"{reference}:{code}",
        *PKCS10,
        trust=ca.tls_cert,
    )
    assert response.status == 200, response.text
    certificate = tmp / "current.pem"
    certificate.write_bytes(pem(await print_certs(response.body)))
    return certificate


async def rekey_request(current: Path, new_key: Path) -> bytes:
    """A DER renewal CSR for `new_key`, its subject and extensions copied from the current
    certificate by openssl (the x509toreq trick the demo recipe uses too)."""
    request = await openssl(
        "x509", "-x509toreq", "-in", current, "-signkey", new_key, "-copy_extensions", "copy"
    )
    return await openssl("req", "-outform", "DER", input=request)


async def test_curl_renews_with_its_certificate_and_a_new_key(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    current = await enroll_with_curl(server, service, ca_material, keys.rsa(0).path, tmp_path)
    der = await rekey_request(current, keys.rsa(1).path)
    body = tmp_path / "renew.b64"
    body.write_bytes(base64.encodebytes(der))
    response = await curl_est(
        server,
        "simplereenroll",
        body,
        "--cert",
        current,
        "--key",
        keys.rsa(0).path,
        *PKCS10,
        trust=ca_material.tls_cert,
    )
    assert response.status == 200, response.text
    [renewed] = await print_certs(response.body)
    old = x509.load_pem_x509_certificate(current.read_bytes())
    assert renewed.subject == old.subject
    assert renewed.serial_number != old.serial_number
    assert renewed.public_key() == keys.rsa(1).key.public_key()
    assert (await verify_with_openssl(renewed, ca_material, tmp_path)).endswith(": OK\n")


async def test_curl_enrolls_with_a_client_certificate_for_a_pending_order(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    current = await enroll_with_curl(server, service, ca_material, keys.rsa(0).path, tmp_path)
    serial = Serial(x509.load_pem_x509_certificate(current.read_bytes()).serial_number)
    identity_id = (await service.registry.get_certificate(serial)).identity_id
    placed = await new_order(service, await service.registry.get_identity(identity_id))
    body = tmp_path / "second.b64"
    body.write_bytes(await openssl_csr_base64(keys.rsa(1).path))
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        "--cert",
        current,
        "--key",
        keys.rsa(0).path,
        *PKCS10,
        trust=ca_material.tls_cert,
    )
    assert response.status == 200, response.text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.CONSUMED


async def test_the_python_client_enrolls_and_renews(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    placed = await new_order(service, await new_user(service))
    client = EstClient(server.https_url, trust=ca_material.tls_cert)
    chain = (await client.cacerts()).certificates()
    assert len(chain) == 2
    enrolled = await client.simpleenroll(make_csr(keys.rsa(0).key), auth=credentials(placed))
    assert enrolled.status == 200, enrolled.text
    [certificate] = enrolled.certificates()
    certificate.verify_directly_issued_by(chain[0])

    cert_file = tmp_path / "client.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    renewing = EstClient(
        server.https_url,
        trust=ca_material.tls_cert,
        client_cert=cert_file,
        client_key=keys.rsa(0).path,
    )
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    renewed = await renewing.simplereenroll(
        make_csr(keys.rsa(1).key, subject=certificate.subject, san=san)
    )
    assert renewed.status == 200, renewed.text
    assert renewed.certificates()[0].subject == certificate.subject


# strongSwan's pki (5.9.8 in Debian 12): an EST client written without knowing this service.
# --cacert takes the TLS trust anchor and the CA certificates the issued one must chain to;
# the URL is the server's base (pki adds /.well-known/est/<operation> itself).


def pki_trust(ca: CaMaterial) -> list[str | Path]:
    return [
        "--cacert",
        ca.tls_cert,
        "--cacert",
        ca.hierarchy.issuing_cert,
        "--cacert",
        ca.hierarchy.root_cert,
    ]


def pki_report(result: subprocess.CompletedProcess[bytes]) -> str:
    return f"pki exited {result.returncode}: {(result.stdout + result.stderr).decode()}"


async def openssl_csr_der(key: Path, tmp: Path) -> Path:
    path = tmp / "request.der"
    path.write_bytes(
        await openssl("req", "-new", "-key", key, "-subj", "/CN=made by openssl", "-outform", "DER")
    )
    return path


async def test_strongswan_pki_reads_the_ca_chain_from_cacerts(
    server: Server, ca_material: CaMaterial, tmp_path: Path
) -> None:
    result = await pki(
        "--estca",
        "--url",
        server.https_url,
        "--cacert",
        ca_material.tls_cert,
        "--caout",
        tmp_path / "ca.pem",
        "--outform",
        "pem",
    )
    assert result.returncode == 0, pki_report(result)
    # pki writes the chain's certificates as ca.pem, ca-1.pem, ...
    written = (tmp_path / "ca.pem", tmp_path / "ca-1.pem")
    received = {x509.load_pem_x509_certificate(path.read_bytes()) for path in written}
    expected = {
        x509.load_pem_x509_certificate(path.read_bytes())
        for path in (ca_material.hierarchy.issuing_cert, ca_material.hierarchy.root_cert)
    }
    assert received == expected


async def pki_enroll(
    server: Server, service: Service, ca: CaMaterial, key: Path, tmp: Path
) -> tuple[subprocess.CompletedProcess[bytes], tuple[str, str]]:
    order = credentials(await new_order(service, await new_system(service)))
    result = await pki(
        "--est",
        "--url",
        server.https_url,
        *pki_trust(ca),
        "--userpass",
        ":".join(order),
        "--in",
        await openssl_csr_der(key, tmp),
        "--outform",
        "pem",
    )
    return result, order


async def test_strongswan_pki_enrolls_with_order_credentials(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    result, (reference, _) = await pki_enroll(
        server, service, ca_material, keys.rsa(0).path, tmp_path
    )
    assert result.returncode == 0, pki_report(result)
    certificate = x509.load_pem_x509_certificate(result.stdout)
    assert certificate.public_key() == keys.rsa(0).key.public_key()
    order = await service.registry.get_order(reference)
    assert order.certificate_serial == Serial(certificate.serial_number)


async def test_strongswan_pki_renews_with_its_certificate_and_a_new_key(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    enrolled, _ = await pki_enroll(server, service, ca_material, keys.rsa(0).path, tmp_path)
    assert enrolled.returncode == 0, pki_report(enrolled)
    current = tmp_path / "current.pem"
    current.write_bytes(enrolled.stdout)
    renewal = tmp_path / "renewal.der"
    renewal.write_bytes(await rekey_request(current, keys.rsa(1).path))
    result = await pki(
        "--est",
        "--url",
        server.https_url,
        *pki_trust(ca_material),
        "--cert",
        current,
        "--key",
        keys.rsa(0).path,
        "--in",
        renewal,
        "--outform",
        "pem",
    )
    assert result.returncode == 0, pki_report(result)
    renewed = x509.load_pem_x509_certificate(result.stdout)
    old = x509.load_pem_x509_certificate(current.read_bytes())
    assert renewed.subject == old.subject
    assert renewed.serial_number != old.serial_number
    assert renewed.public_key() == keys.rsa(1).key.public_key()
