"""Each certificate type, enrolled with curl over EST, reads like OCES3 in `openssl x509 -text`."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from est_ca.registration.identities import IdentityType
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial
from tests.helpers import (
    PKCS10,
    KeyPool,
    credentials,
    curl_est,
    danish_identity,
    new_order,
    openssl,
)

# What `openssl x509 -text` must show for each type (ours and the samples alike).
EXPECTED = {
    IdentityType.USER: [
        "Signature Algorithm: rsassaPss",
        "Hash Algorithm: sha256",
        "Mask Algorithm: mgf1 with sha256",
        "Salt Length: 0x20",
        "Public-Key: (3072 bit)",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "X509v3 Subject Alternative Name: \n                email:soren@example.dk",
        "Policy: 0.4.0.2042.1.1\n                Policy: 1.2.208.169.1.1.1.2.7",
        "qcStatements:",
        "X509v3 Key Usage: critical\n"
        "                Digital Signature, Non Repudiation, Key Encipherment",
    ],
    IdentityType.ORGANISATION: [
        "Signature Algorithm: rsassaPss",
        "Policy: 0.4.0.2042.1.1\n                Policy: 1.2.208.169.1.1.1.3.7",
        "qcStatements:",
        "X509v3 Key Usage: critical\n"
        "                Digital Signature, Non Repudiation, Key Encipherment",
    ],
    IdentityType.SYSTEM: [
        "Signature Algorithm: rsassaPss",
        "Policy: 0.4.0.2042.1.1\n                Policy: 1.2.208.169.1.1.1.3.7",
        "qcStatements:",
        "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
    ],
}


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_curl_enrollment_gives_an_oces3_shaped_certificate(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    identity_type: IdentityType,
) -> None:
    identity = await danish_identity(service, identity_type)
    placed = await new_order(service, identity)
    der = await openssl("req", "-new", "-key", keys.rsa().path, "-subj", "/CN=x", "-outform", "DER")
    body = tmp_path / "csr.b64"
    body.write_bytes(base64.encodebytes(der))
    response = await curl_est(
        server,
        "simpleenroll",
        body,
        *PKCS10,
        "-u",
        ":".join(credentials(placed)),
        trust=ca_material.tls_cert,
    )
    assert response.status == 200, response.text
    pem = await openssl(
        "pkcs7", "-inform", "DER", "-print_certs", input=base64.b64decode(response.body)
    )
    text = (await openssl("x509", "-noout", "-text", "-nameopt", "utf8", input=pem)).decode()
    for expected in EXPECTED[identity_type]:
        assert expected in text
    base = service.publication.base_url
    assert f"CA Issuers - URI:{base}/cacert/issuing.cer" in text
    assert f"OCSP - URI:{base}/ocsp" in text
    assert f"URI:{base}/crl/issuing.crl" in text
    if identity_type is IdentityType.USER:
        names = (
            f"CN=Søren Ærø Ålborg, GN=Søren, SN=Ærø Ålborg, serialNumber=UI:DK-E:G:{identity.id}"
        )
    else:
        names = f"CN=ÆØÅ {identity_type.value}, serialNumber=UI:DK-O:G:{identity.id}"
    assert f"Subject: {names}, O=ÆØÅ ApS, organizationIdentifier=NTRDK-99999999, C=DK\n" in text
    print(text)  # the dump the closing note quotes (pytest -s shows it)
