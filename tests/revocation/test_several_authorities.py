"""Two listed CAs served side by side: each its own CRL at its own URL, with its own cRLNumber,
and OCSP answering for a certificate of each from the one /ocsp (issue 12, item 2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from est_ca.ca.authority import key_identifier
from est_ca.ca.certificates import KeyId, Serial
from est_ca.ca.hierarchy import HierarchyFiles
from est_ca.clock import SettableClock
from est_ca.config import load_settings
from est_ca.errors import ConfigurationError
from est_ca.revocation.reasons import RevocationReason
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, authorities_overrides, with_test_organisations
from tests.helpers import ADMIN, KeyPool, authority_entry, curl, run
from tests.revocation.helpers import issue, record_under_other_issuer

PASSPHRASE = b"test passphrase"


@pytest.fixture
async def service(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> AsyncIterator[Service]:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("first", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("second", second_hierarchy, ca_material.passphrase, default=False)
    )
    settings = load_settings(config, {}, authorities_overrides(tmp_path, ca_material))
    opened = await Service.open(settings, clock=clock, create=True)
    yield await with_test_organisations(opened)
    await opened.close()


def _issuing(hierarchy: HierarchyFiles) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    certificate = x509.load_pem_x509_certificate(hierarchy.issuing_cert.read_bytes())
    key = serialization.load_pem_private_key(hierarchy.issuing_key.read_bytes(), PASSPHRASE)
    assert isinstance(key, rsa.RSAPrivateKey)
    return certificate, key


def _signed_by(issuer: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A subscriber certificate the second CA signed (its issuance is not what is tested)."""
    now = dt.datetime.now(dt.UTC)
    subject_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "second CA's subscriber")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(subject_key.public_key())
        .serial_number(Serial.random().value)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


async def _crl_number(url: str, tmp: Path, name: str) -> int:
    """The CRL fetched over HTTP, its number as `openssl crl` reads it."""
    fetched = await curl(url)
    assert fetched.status == 200, url
    path = tmp / f"{name}.crl"
    path.write_bytes(fetched.body)
    result = await run("openssl", "crl", "-inform", "DER", "-in", path, "-noout", "-crlnumber")
    assert result.returncode == 0, result.stderr.decode()
    return int(result.stdout.decode().strip().split("=")[1], 16)


async def _ocsp_status(
    service: Service, tmp: Path, issuer: Path, leaf: x509.Certificate, root: Path
) -> str:
    path = tmp / f"leaf-{leaf.serial_number}.pem"
    path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    result = await run(
        "openssl", "ocsp", "-issuer", issuer, "-cert", path,
        "-url", service.publication.ocsp_url, "-CAfile", root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return (result.stdout + result.stderr).decode()


async def test_each_listed_ca_has_its_own_crl_url_and_number_and_ocsp_answers_for_both(
    service: Service,
    server: Server,
    keys: KeyPool,
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
) -> None:
    assert service.publishing is not None
    base = service.publication.base_url
    first_number = await _crl_number(f"{base}/crl/first.crl", tmp_path, "first")
    second_number = await _crl_number(f"{base}/crl/second.crl", tmp_path, "second")

    second_ca, second_key = _issuing(second_hierarchy)
    theirs = _signed_by(second_ca, second_key)
    await record_under_other_issuer(
        service,
        Serial(theirs.serial_number),
        issuer=KeyId.of(key_identifier(second_ca)),
        der=theirs.public_bytes(serialization.Encoding.DER),
    )
    ours = await issue(service, keys)  # by the default authority, naming its own CRL
    points = ours.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [name.value for point in points for name in point.full_name or ()] == [
        f"{base}/crl/first.crl"
    ]
    assert "good" in await _ocsp_status(
        service, tmp_path, second_hierarchy.issuing_cert, theirs, second_hierarchy.root_cert
    )

    await service.revocations.revoke_certificate(
        ADMIN,
        Serial(theirs.serial_number),
        RevocationReason.KEY_COMPROMISE,
        issuer=KeyId.of(key_identifier(second_ca)),
    )
    await service.publishing.check()

    assert await _crl_number(f"{base}/crl/second.crl", tmp_path, "second") > second_number
    assert await _crl_number(f"{base}/crl/first.crl", tmp_path, "first") == first_number
    assert "revoked" in await _ocsp_status(
        service, tmp_path, second_hierarchy.issuing_cert, theirs, second_hierarchy.root_cert
    )
    assert ": good" in await _ocsp_status(
        service, tmp_path, ca_material.hierarchy.issuing_cert, ours, ca_material.hierarchy.root_cert
    )
    cacert = await curl(f"{base}/cacert/second.cer")
    assert x509.load_der_x509_certificate(cacert.body) == second_ca


async def test_the_same_ca_listed_twice_is_refused(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("first", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("again", ca_material.hierarchy, ca_material.passphrase, default=False)
    )
    with pytest.raises(ConfigurationError, match="same CA"):
        await Service.open(
            load_settings(config, {}, authorities_overrides(tmp_path, ca_material)),
            clock=clock,
            create=True,
        )
