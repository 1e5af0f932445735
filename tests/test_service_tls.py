"""The service's own TLS certificate: with no operator certificate the default issuing CA
issues it (recorded before the listener serves it), so a client that bootstraps trust from
/cacerts (RFC 7030 4.1.1) needs no second trust anchor; an operator's certificate still wins.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from est_ca.ca.certificates import Serial
from est_ca.clock import SettableClock
from est_ca.errors import ConfigurationError
from est_ca.server import Server
from est_ca.service import Service
from est_ca.tls_files import generate_self_signed
from tests.conftest import CaMaterial, make_settings, with_test_organisations
from tests.helpers import (
    PKCS10,
    KeyPool,
    credentials,
    curl,
    curl_est,
    est_url,
    new_order,
    new_user,
    pem,
    print_certs,
    require_tool,
    run,
)

ISSUED = "service_certificate.issued"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def _settings(data_dir: Path, material: CaMaterial, **tls: Any) -> Any:
    return make_settings(data_dir, material, tls={"cert_file": "", "key_file": "", **tls})


async def _open(settings: Any, clock: SettableClock) -> Service:
    return await Service.open(settings, clock=clock, create=True)


def _served(data_dir: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((data_dir / "tls" / "server.pem").read_bytes())


def _issuing(material: CaMaterial) -> x509.Certificate:
    return x509.load_pem_x509_certificate(material.hierarchy.issuing_cert.read_bytes())


async def _issued_count(service: Service) -> int:
    return len(await service.audit.events(action=ISSUED))


async def test_without_an_operator_certificate_the_default_ca_issues_the_listeners(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    service = await _open(_settings(data_dir, ca_material, names=["est.example.dk"]), clock)
    await service.close()
    issuing = _issuing(ca_material)
    leaf, *rest = _served(data_dir)
    assert rest == [issuing]  # leaf then issuing CA; the root stays the client's anchor
    leaf.verify_directly_issued_by(issuing)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "est.example.dk"]
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime <= dt.timedelta(days=365)
    assert leaf.not_valid_after_utc <= issuing.not_valid_after_utc
    key_file = data_dir / "tls" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_a_host_name_is_a_dns_name_and_validity_stops_at_the_cas_end(
    data_dir: Path, ca_material: CaMaterial
) -> None:
    issuing = _issuing(ca_material)
    near_the_end = SettableClock(issuing.not_valid_after_utc - dt.timedelta(days=100))
    settings = make_settings(
        data_dir,
        ca_material,
        tls={"cert_file": "", "key_file": ""},
        service={"host": "est.example.dk"},
    )
    await (await _open(settings, near_the_end)).close()
    leaf = _served(data_dir)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["est.example.dk", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert leaf.not_valid_after_utc == issuing.not_valid_after_utc


async def test_the_certificate_is_recorded_before_the_listener_serves_it(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    service = await _open(_settings(data_dir, ca_material), clock)
    try:
        # Opened, no listener started yet: the store already knows the certificate.
        leaf = _served(data_dir)[0]
        assert service.ca is not None
        async with service.store.read() as tx:
            recorded = await tx.is_service_certificate(
                service.ca.key_id.hex, Serial(leaf.serial_number)
            )
        assert recorded
        [event] = await service.audit.events(action=ISSUED)
        assert event.serial == Serial(leaf.serial_number).hex
    finally:
        await service.close()


async def test_ocsp_answers_good_for_the_listeners_certificate(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock, tmp_path: Path
) -> None:
    service = await _open(_settings(data_dir, ca_material), clock)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        leaf_file = tmp_path / "leaf.pem"
        leaf_file.write_bytes(pem(_served(data_dir)[:1]))
        result = await run(
            "openssl", "ocsp", "-issuer", ca_material.hierarchy.issuing_cert,
            "-cert", leaf_file, "-url", service.publication.ocsp_url,
            "-CAfile", ca_material.hierarchy.root_cert,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, output
        assert f"{leaf_file}: good" in output
        assert "Response verify OK" in output
    finally:
        await server.stop()
        await service.close()


async def test_a_client_enrolls_trusting_only_the_root_it_took_from_cacerts(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock, keys: KeyPool, tmp_path: Path
) -> None:
    """RFC 7030 4.1.1 bootstrap: /cacerts fetched without verifying the server (`-k`), the
    root taken from it, then the listener verified and an enrollment made with that root."""
    require_tool("openssl")
    service = await with_test_organisations(await _open(_settings(data_dir, ca_material), clock))
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        unverified = await curl(est_url(server, "cacerts"), "-k")
        assert unverified.status == 200, unverified.text
        [root] = [c for c in await print_certs(unverified.body) if c.issuer == c.subject]
        root_file = tmp_path / "root.pem"
        root_file.write_bytes(pem([root]))

        handshake = await run(
            "openssl", "s_client", "-connect", server.https_url.removeprefix("https://"),
            "-verify_return_error", "-CAfile", root_file, "-servername", "localhost",
            input=b"",
        )  # fmt: skip
        shown = handshake.stdout.decode() + handshake.stderr.decode()
        assert handshake.returncode == 0, shown
        assert "Verify return code: 0 (ok)" in shown

        reference, code = credentials(await new_order(service, await new_user(service)))
        csr = tmp_path / "csr.b64"
        csr.write_bytes(await _csr_base64(keys.rsa().path))
        enrolled = await curl_est(
            server, "simpleenroll", csr, "-u", f"{reference}:{code}", *PKCS10, trust=root_file
        )
        assert enrolled.status == 200, enrolled.text
    finally:
        await server.stop()
        await service.close()


async def _csr_base64(key: Path) -> bytes:
    result = await run(
        "openssl", "req", "-new", "-key", key, "-subj", "/CN=bootstrap", "-outform", "DER"
    )
    assert result.returncode == 0, result.stderr.decode()
    return base64.b64encode(result.stdout)


async def test_a_restart_reuses_the_certificate(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    settings = _settings(data_dir, ca_material)
    await (await _open(settings, clock)).close()
    first = (data_dir / "tls" / "server.pem").read_bytes()
    clock.advance(dt.timedelta(days=300))  # 65 days left: more than the 30 that renew it
    service = await _open(settings, clock)
    try:
        assert (data_dir / "tls" / "server.pem").read_bytes() == first
        assert await _issued_count(service) == 1
    finally:
        await service.close()


async def test_within_30_days_of_its_end_it_is_issued_again(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    settings = _settings(data_dir, ca_material)
    await (await _open(settings, clock)).close()
    first = _served(data_dir)[0]
    clock.advance(dt.timedelta(days=336))  # 29 days left
    await (await _open(settings, clock)).close()
    second = _served(data_dir)[0]
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc > first.not_valid_after_utc


async def test_changed_names_issue_it_again(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    await (await _open(_settings(data_dir, ca_material), clock)).close()
    first = _served(data_dir)[0]
    service = await _open(_settings(data_dir, ca_material, names=["est.example.dk"]), clock)
    try:
        second = _served(data_dir)[0]
        assert second.serial_number != first.serial_number
        san = second.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "est.example.dk" in san.get_values_for_type(x509.DNSName)
        assert await _issued_count(service) == 2
    finally:
        await service.close()


async def test_a_self_signed_certificate_of_an_earlier_version_is_replaced(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    _self_signed_in(data_dir)
    await (await _open(_settings(data_dir, ca_material), clock)).close()
    leaf = _served(data_dir)[0]
    leaf.verify_directly_issued_by(_issuing(ca_material))


async def test_a_certificate_the_store_does_not_know_is_replaced(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock, tmp_path: Path
) -> None:
    """Its files beside another database (a data directory restored apart, say): OCSP would
    call it "unknown", so it is issued again and recorded."""
    await (await _open(_settings(data_dir, ca_material), clock)).close()
    first = _served(data_dir)[0]
    other = tmp_path / "other"
    _copy_tls_files(data_dir, other)
    await (await _open(_settings(other, ca_material), clock)).close()
    assert _served(other)[0].serial_number != first.serial_number


def _copy_tls_files(source: Path, data_dir: Path) -> None:
    (data_dir / "tls").mkdir(mode=0o700, parents=True)
    data_dir.chmod(0o700)
    for name in ("server.pem", "server.key"):
        shutil.copy2(source / "tls" / name, data_dir / "tls" / name)


def _self_signed_in(data_dir: Path) -> None:
    """What earlier versions wrote at a first start."""
    (data_dir / "tls").mkdir(mode=0o700, parents=True)
    data_dir.chmod(0o700)
    generate_self_signed(data_dir / "tls" / "server.pem", data_dir / "tls" / "server.key", [])


async def test_an_operator_certificate_overrides_it_and_nothing_is_issued(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    before = ca_material.tls_cert.read_bytes()
    service = await _open(make_settings(data_dir, ca_material), clock)
    try:
        assert service.files.tls_cert == ca_material.tls_cert
        assert ca_material.tls_cert.read_bytes() == before
        assert not (data_dir / "tls").exists()
        assert await _issued_count(service) == 0
    finally:
        await service.close()


async def test_an_operator_key_without_its_certificate_is_refused_and_left_alone(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    before = ca_material.tls_key.read_bytes()
    settings = _settings(data_dir, ca_material, key_file=str(ca_material.tls_key))
    with pytest.raises(ConfigurationError, match="go together"):
        await _open(settings, clock)
    assert ca_material.tls_key.read_bytes() == before


async def test_a_name_that_is_no_host_name_is_refused_with_its_setting(
    data_dir: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    settings = _settings(data_dir, ca_material, names=["bad name"])
    with pytest.raises(ConfigurationError, match=r"'bad name'.*tls\.names"):
        await _open(settings, clock)


async def test_near_the_cas_end_a_restart_reuses_the_certificate_that_ends_with_it(
    data_dir: Path, ca_material: CaMaterial
) -> None:
    """With 20 days left of the issuing CA, the listener's certificate ends with the CA and a
    new one would end no later: a restart keeps it rather than issue one at every start."""
    issuing = _issuing(ca_material)
    near_the_end = SettableClock(issuing.not_valid_after_utc - dt.timedelta(days=20))
    settings = _settings(data_dir, ca_material)
    await (await _open(settings, near_the_end)).close()
    first = _served(data_dir)[0]
    near_the_end.advance(dt.timedelta(hours=1))
    service = await _open(settings, near_the_end)
    try:
        assert _served(data_dir)[0].serial_number == first.serial_number
        assert await _issued_count(service) == 1
    finally:
        await service.close()
