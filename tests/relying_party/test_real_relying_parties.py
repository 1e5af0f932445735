"""Relying parties that strict people use: openssl ocsp, openssl verify -crl_check, and
pyhanko-certvalidator fetching OCSP and CRLs from the running service over HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)

from est_ca.ca.certificates import Serial
from est_ca.revocation.reasons import RevocationReason
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import ADMIN, KeyPool, curl, pem, require_tool, run
from tests.revocation.helpers import issue


def write(tmp: Path, name: str, certificates: list[x509.Certificate]) -> Path:
    path = tmp / name
    path.write_bytes(pem(certificates))
    return path


async def openssl_ocsp(service: Service, leaf: Path | list[Path], tmp: Path, ca: CaMaterial) -> str:
    """`openssl ocsp` asking about `leaf` (several leaves: one request, one CertID each)."""
    require_tool("openssl")
    assert service.ca is not None
    issuer = write(tmp, "issuer.pem", [service.ca.certificate])
    leaves = leaf if isinstance(leaf, list) else [leaf]
    result = await run(
        "openssl",
        "ocsp",
        "-issuer",
        issuer,
        *(option for path in leaves for option in ("-cert", path)),
        "-url",
        service.publication.ocsp_url,
        "-CAfile",
        ca.hierarchy.root_cert,
    )
    assert result.returncode == 0, result.stderr.decode()
    return (result.stdout + result.stderr).decode()


async def test_openssl_ocsp_reports_good_then_revoked_with_reason_and_verifies(
    server: Server, service: Service, keys: KeyPool, tmp_path: Path, ca_material: CaMaterial
) -> None:
    certificate = await issue(service, keys)
    leaf = write(tmp_path, "leaf.pem", [certificate])
    before = await openssl_ocsp(service, leaf, tmp_path, ca_material)
    assert "Response verify OK" in before
    assert f"{leaf}: good" in before
    await service.revocations.revoke_certificate(
        ADMIN, Serial(certificate.serial_number), RevocationReason.KEY_COMPROMISE
    )
    after = await openssl_ocsp(service, leaf, tmp_path, ca_material)
    assert "Response verify OK" in after
    assert f"{leaf}: revoked" in after
    assert "Reason: keyCompromise" in after
    assert "Revocation Time:" in after


async def test_openssl_ocsp_asks_about_several_certificates_in_one_request(
    server: Server, service: Service, keys: KeyPool, tmp_path: Path, ca_material: CaMaterial
) -> None:
    live = write(tmp_path, "live.pem", [await issue(service, keys, 0)])
    revoked_certificate = await issue(service, keys, 1)
    revoked = write(tmp_path, "revoked.pem", [revoked_certificate])
    await service.revocations.revoke_certificate(
        ADMIN, Serial(revoked_certificate.serial_number), RevocationReason.KEY_COMPROMISE
    )
    output = await openssl_ocsp(service, [live, revoked, live], tmp_path, ca_material)
    assert "Response verify OK" in output
    assert output.count(f"{live}: good") == 2
    assert f"{revoked}: revoked" in output
    assert "Reason: keyCompromise" in output


async def test_openssl_verify_with_the_crl_accepts_live_and_rejects_revoked(
    server: Server, service: Service, keys: KeyPool, tmp_path: Path, ca_material: CaMaterial
) -> None:
    assert service.ca is not None
    assert service.publishing is not None
    live = await issue(service, keys, 0)
    revoked = await issue(service, keys, 1)
    await service.revocations.revoke_certificate(
        ADMIN, Serial(revoked.serial_number), RevocationReason.CESSATION_OF_OPERATION
    )
    await service.publishing.check()
    crl_der = (await curl(service.publication.issuing_crl_url)).body
    crl_pem = tmp_path / "issuing.crl.pem"
    crl_pem.write_bytes(x509.load_der_x509_crl(crl_der).public_bytes(serialization.Encoding.PEM))
    chain = write(tmp_path, "issuing.pem", [service.ca.certificate])
    verdicts = {}
    for name, certificate in (("live", live), ("revoked", revoked)):
        leaf = write(tmp_path, f"{name}.pem", [certificate])
        result = await run(
            "openssl",
            "verify",
            "-crl_check",
            "-CRLfile",
            crl_pem,
            "-CAfile",
            ca_material.hierarchy.root_cert,
            "-untrusted",
            chain,
            leaf,
        )
        verdicts[name] = (result.returncode, (result.stdout + result.stderr).decode())
    assert verdicts["live"][0] == 0
    assert verdicts["live"][1].strip().endswith("live.pem: OK")
    assert verdicts["revoked"][0] != 0
    assert "certificate revoked" in verdicts["revoked"][1]


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


RULES = {
    "ocsp": RevocationCheckingRule.OCSP_REQUIRED,
    "crl": RevocationCheckingRule.CRL_REQUIRED,
    "both": RevocationCheckingRule.CRL_AND_OCSP_REQUIRED,
}


async def _validate(service: Service, certificate: x509.Certificate, mode: str) -> object:
    """pyhanko-certvalidator with revocation checking required on every certificate of the
    path (the leaf and the issuing CA) by `mode`; it fetches OCSP and CRLs over HTTP itself."""
    assert service.ca is not None
    context = ValidationContext(
        trust_roots=[_asn1(service.ca.root)],
        allow_fetching=True,
        revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(
                ee_certificate_rule=RULES[mode], intermediate_ca_cert_rule=RULES[mode]
            )
        ),
    )
    validator = CertificateValidator(
        _asn1(certificate),
        intermediate_certs=[_asn1(service.ca.certificate)],
        validation_context=context,
    )
    return await validator.async_validate_usage(set())  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("mode", list(RULES))
async def test_pyhanko_certvalidator_validates_with_revocation_checks_and_sees_revocation(
    server: Server, service: Service, keys: KeyPool, mode: str
) -> None:
    assert service.publishing is not None
    live = await issue(service, keys, 0)
    revoked = await issue(service, keys, 1)
    path = await _validate(service, live, mode)
    assert path is not None
    await service.revocations.revoke_certificate(
        ADMIN, Serial(revoked.serial_number), RevocationReason.KEY_COMPROMISE
    )
    await service.publishing.check()  # the CRL now lists it (the task would within a second)
    with pytest.raises(RevokedError):
        await _validate(service, revoked, mode)
    await _validate(service, live, mode)  # the live one is still fine


async def test_a_revocation_made_by_the_cli_is_answered_within_the_poll_bound(
    open_service: OpenService, keys: KeyPool, ca_material: CaMaterial, tmp_path: Path
) -> None:
    """Another process revokes (the CLI, like a second instance would): this instance stops
    answering "good" within revocation.poll_seconds (1 s here), plus a response's signing."""
    service = await open_service(revocation={"poll_seconds": 1})
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        certificate = await issue(service, keys)
        leaf = write(tmp_path, "leaf.pem", [certificate])
        assert ": good" in await openssl_ocsp(service, leaf, tmp_path, ca_material)
        environment = {
            **os.environ,
            "EST_CA_DATA_DIR": str(service.settings.data_dir),
            "EST_CA_DATABASE_URL": service.settings.database_url,
            "EST_CA_CA_CERT_FILE": str(ca_material.hierarchy.issuing_cert),
            "EST_CA_CA_CHAIN_FILE": str(ca_material.hierarchy.issuing_chain),
            "EST_CA_CA_KEY_FILE": str(ca_material.hierarchy.issuing_key),
            "EST_CA_CA_KEY_PASSPHRASE_FILE": str(ca_material.passphrase),
            "EST_CA_CA_GENERATE_DEMO": "false",
            "EST_CA_SERVICE_HTTP_PORT": str(service.settings.service.http_port),
        }
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "est_ca",
            "certificate",
            "revoke",
            format(certificate.serial_number, "x"),
            "--reason",
            "keyCompromise",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await cli.communicate()
        assert cli.returncode == 0, stderr.decode()
        revoked_at = time.monotonic()
        while ": revoked" not in await openssl_ocsp(service, leaf, tmp_path, ca_material):
            assert time.monotonic() - revoked_at < 5, "still good 5 s after the revocation"
            await asyncio.sleep(0.1)
        while True:
            crl_der = (await curl(service.publication.issuing_crl_url)).body
            crl = x509.load_der_x509_crl(crl_der)
            if crl.get_revoked_certificate_by_serial_number(certificate.serial_number):
                break
            assert time.monotonic() - revoked_at < 5, "not on the CRL 5 s after the revocation"
            await asyncio.sleep(0.1)
    finally:
        await server.stop()
