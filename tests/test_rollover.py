"""A rollover of the issuing CA, the whole story, with real clients on both generations
(issue 12, item 4): curl enrolls and renews; openssl ocsp and openssl verify -crl_check are
the relying parties; the service restarts in between, as an operator's would."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from est_ca.ca.authority import issuer_key_id, key_identifier
from est_ca.ca.certificates import KeyId, Serial
from est_ca.ca.hierarchy import HierarchyFiles, build_issuing, write_private_key
from est_ca.ca.publication import Publication
from est_ca.ca.signing import KeyFileSigner
from est_ca.cli import main
from est_ca.clock import SettableClock
from est_ca.config import MANAGED_AUTHORITIES, load_settings
from est_ca.errors import BadRequest, ConfigurationError
from est_ca.private_files import write_private
from est_ca.revocation.reasons import RevocationReason
from est_ca.rollover import SuppliedCa
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import (
    CaMaterial,
    authorities_overrides,
    make_settings,
    with_test_organisations,
)
from tests.est.test_real_clients import enroll_with_curl, rekey_request
from tests.helpers import (
    ADMIN,
    PKCS10,
    KeyPool,
    authority_entry,
    curl,
    curl_est,
    est_url,
    new_order,
    new_user,
    pem,
    print_certs,
    run,
)


@dataclasses.dataclass
class Generation:
    """What a relying party knows of one issuing CA: its certificate and where its CRL is."""

    certificate: x509.Certificate
    crl_url: str

    @property
    def key_id(self) -> KeyId:
        return KeyId.of(key_identifier(self.certificate))


Running = Callable[[], Awaitable[tuple[Service, Server]]]


@pytest.fixture
async def running(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> AsyncIterator[Running]:
    """Start the service on one data directory, stopping the previous one first (a restart)."""
    started: list[tuple[Service, Server]] = []

    async def start() -> tuple[Service, Server]:
        if started:
            service, server = started.pop()
            await server.stop()
            await service.close()
        settings = make_settings(tmp_path / "data", ca_material)
        service = await with_test_organisations(
            await Service.open(settings, clock=clock, create=True)
        )
        server = Server(service)
        await server.start("127.0.0.1", 0, settings.service.http_port)
        started.append((service, server))
        return service, server

    yield start
    for service, server in started:
        await server.stop()
        await service.close()


def _read(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _crl_url(certificate: x509.Certificate) -> str:
    points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    (name,) = points[0].full_name or []
    assert isinstance(name, x509.UniformResourceIdentifier)
    return str(name.value)


async def _ocsp(service: Service, leaf: Path, issuer: Path, root: Path) -> str:
    result = await run(
        "openssl",
        "ocsp",
        "-issuer",
        issuer,
        "-cert",
        leaf,
        "-url",
        service.publication.ocsp_url,
        "-CAfile",
        root,
    )
    assert result.returncode == 0, result.stderr.decode()
    return (result.stdout + result.stderr).decode()


async def _verify_with_crl(leaf: Path, issuer: Path, root: Path, tmp: Path) -> tuple[int, str]:
    """`openssl verify -crl_check` with the CRL fetched from the URL the leaf names."""
    fetched = await curl(_crl_url(_read(leaf)))
    assert fetched.status == 200
    crl = tmp / f"{leaf.stem}.crl.pem"
    crl.write_bytes(x509.load_der_x509_crl(fetched.body).public_bytes(serialization.Encoding.PEM))
    result = await run(
        "openssl",
        "verify",
        "-crl_check",
        "-CRLfile",
        crl,
        "-CAfile",
        root,
        "-untrusted",
        issuer,
        leaf,
    )
    return result.returncode, (result.stdout + result.stderr).decode()


async def test_after_a_rollover_the_new_ca_enrolls_and_renews_and_the_old_one_stays_checkable(
    running: Running, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    root = ca_material.hierarchy.root_cert
    service, server = await running()
    assert service.ca is not None
    old = Generation(service.ca.certificate, service.publication.issuing_crl_url)
    old_issuer = tmp_path / "old-issuer.pem"
    old_issuer.write_bytes(pem([old.certificate]))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    renewing = await enroll_with_curl(
        server, service, ca_material, keys.rsa(0).path, tmp_path / "a"
    )
    staying = await enroll_with_curl(server, service, ca_material, keys.rsa(1).path, tmp_path / "b")

    done = await service.roll_over(ADMIN)
    assert done.retired.retired
    assert not done.new.retired
    service, server = await running()
    assert service.ca is not None
    new = Generation(service.ca.certificate, service.publication.issuing_crl_url)
    new_issuer = tmp_path / "new-issuer.pem"
    new_issuer.write_bytes(pem([new.certificate]))
    assert new.key_id != old.key_id
    assert new.crl_url != old.crl_url

    # cacerts serves the new chain, under the same root.
    response = await curl(est_url(server, "cacerts"), trust=ca_material.tls_cert)
    served = await print_certs(response.body)
    assert served[0] == new.certificate
    assert served[-1] == x509.load_pem_x509_certificate(root.read_bytes())

    # A new enrollment gets the new CA.
    (tmp_path / "c").mkdir()
    fresh = await enroll_with_curl(server, service, ca_material, keys.rsa(2).path, tmp_path / "c")
    assert issuer_key_id(_read(fresh)) == new.key_id

    # A certificate of the old CA authenticates over TLS and renews, to the new CA.
    body = tmp_path / "renew.b64"
    body.write_bytes(base64.encodebytes(await rekey_request(renewing, keys.rsa(3).path)))
    renewed = await curl_est(
        server,
        "simplereenroll",
        body,
        "--cert",
        renewing,
        "--key",
        keys.rsa(0).path,
        *PKCS10,
        trust=ca_material.tls_cert,
    )
    assert renewed.status == 200, renewed.text
    (renewal,) = await print_certs(renewed.body)
    assert issuer_key_id(renewal) == new.key_id

    # Status tells the operator the retired CA still has live certificates.
    overview = {row["name"]: row for row in await service.authority_overview()}
    assert overview["issuing"]["state"] == "retired"
    assert overview["issuing"]["live_certificates"] == 2
    assert overview["issuing-2"]["state"] == "enrolls"
    assert overview["issuing-2"]["live_certificates"] == 2

    # The old CA's certificates keep valid OCSP answers and CRLs.
    answer = await _ocsp(service, staying, old_issuer, root)
    assert "Response verify OK" in answer
    assert f"{staying}: good" in answer
    status, output = await _verify_with_crl(staying, old_issuer, root, tmp_path)
    assert status == 0, output
    await service.revocations.revoke_certificate(
        ADMIN,
        Serial(_read(staying).serial_number),
        RevocationReason.KEY_COMPROMISE,
    )
    assert service.publishing is not None
    await service.publishing.check()
    answer = await _ocsp(service, staying, old_issuer, root)
    assert "Response verify OK" in answer
    assert f"{staying}: revoked" in answer
    status, output = await _verify_with_crl(staying, old_issuer, root, tmp_path)
    assert status != 0
    assert "certificate revoked" in output

    # And the new generation's are checkable the same way, against its own CRL.
    answer = await _ocsp(service, fresh, new_issuer, root)
    assert "Response verify OK" in answer
    assert f"{fresh}: good" in answer
    status, output = await _verify_with_crl(fresh, new_issuer, root, tmp_path)
    assert status == 0, output


async def test_a_rollover_without_the_root_key_asks_for_the_new_cas_files(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    configured = make_settings(tmp_path / "data", ca_material)
    settings = dataclasses.replace(
        configured, ca=dataclasses.replace(configured.ca, root_key_file="")
    )
    service = await Service.open(settings, clock=clock, with_ca=False, create=True)
    try:
        with pytest.raises(ConfigurationError, match="give its --certificate, --chain and --key"):
            await service.roll_over(ADMIN)
    finally:
        await service.close()
    assert not (tmp_path / "data" / MANAGED_AUTHORITIES).exists()


def test_the_command_line_rolls_the_demo_ca_over_and_says_what_happens_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "demo")
    assert main(["--data-dir", data, "init"]) == 0
    capsys.readouterr()
    assert main(["--data-dir", data, "ca", "rollover"]) == 0
    said = capsys.readouterr().out
    assert "label 'issuing': issuing-2" in said
    assert "Issuing CA 2" in said
    assert "restart est-ca serve" in said
    assert main(["--data-dir", data, "status"]) == 0
    assert "CN=est-ca Demo Issuing CA 2" in capsys.readouterr().out


def _issuing_signed_by(
    hierarchy: HierarchyFiles,
    directory: Path,
    passphrase: bytes,
    number: int,
    key: rsa.RSAPrivateKey | None = None,
) -> SuppliedCa:
    """A new issuing CA the operator's own root signed (here: the hierarchy's root key)."""
    directory.mkdir()
    root = x509.load_pem_x509_certificate(hierarchy.root_cert.read_bytes())
    root_signer = KeyFileSigner.load(hierarchy.root_key, passphrase)
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=3072)
    base = "http://127.0.0.1:1"
    certificate = build_issuing(
        key.public_key(),
        root,
        root_signer,
        dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        Publication(base_url=base, name_registration_authority=base),
        number,
    )
    supplied = SuppliedCa(
        certificate=directory / "issuing.pem",
        chain=directory / "chain.pem",
        key=directory / "issuing.key",
        passphrase_file=directory / "passphrase",
    )
    write_private_key(supplied.key, key, passphrase)
    write_private(directory / "passphrase", passphrase + b"\n")
    supplied.certificate.write_bytes(pem([certificate]))
    supplied.chain.write_bytes(hierarchy.root_cert.read_bytes())
    return supplied


async def test_an_operator_rolls_a_label_over_to_a_ca_their_own_root_signed(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("test", second_hierarchy, ca_material.passphrase, default=False)
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    supplied = _issuing_signed_by(second_hierarchy, tmp_path / "new", b"test passphrase", 2)
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    try:
        done = await service.roll_over(ADMIN, label="test", supplied=supplied)
    finally:
        await service.close()
    assert (done.label, done.retired.name, done.new.name) == ("test", "test", "test-2")
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        served = await print_certs(
            (await curl(est_url(server, "test/cacerts"), trust=ca_material.tls_cert)).body
        )
        prod = await print_certs(
            (await curl(est_url(server, "cacerts"), trust=ca_material.tls_cert)).body
        )
        overview = {row["name"]: row for row in await service.authority_overview()}
        old_crl = await curl(f"{service.publication.base_url}/crl/test.crl")
    finally:
        await server.stop()
        await service.close()
    assert served[0] == _read(supplied.certificate)
    assert prod[0] == _read(ca_material.hierarchy.issuing_cert)
    assert overview["test"]["state"] == "retired"
    assert overview["test-2"]["state"] == "enrolls"
    assert overview["prod"]["default"] is True
    assert old_crl.status == 200


async def test_a_rollover_to_a_ca_with_a_served_key_is_refused(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    settings = make_settings(tmp_path / "data", ca_material)
    service = await Service.open(settings, clock=clock, with_ca=False, create=True)
    same_key = SuppliedCa(
        certificate=ca_material.hierarchy.issuing_cert,
        chain=ca_material.hierarchy.issuing_chain,
        key=ca_material.hierarchy.issuing_key,
        passphrase_file=ca_material.passphrase,
    )
    try:
        with pytest.raises(ConfigurationError, match="a rollover needs a new key"):
            await service.roll_over(ADMIN, supplied=same_key)
    finally:
        await service.close()
    assert not (tmp_path / "data" / MANAGED_AUTHORITIES).exists()


async def test_a_rollover_to_a_ca_that_cannot_sign_the_labels_profiles_is_refused(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    """The shipped profiles sign with RSA-PSS: an elliptic-curve CA recorded for "test"
    would stop every later start; the rollover refuses it and records nothing."""
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("test", second_hierarchy, ca_material.passphrase, default=False)
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    # build_issuing and write_private_key only use what every private key type has.
    ec_key = cast(rsa.RSAPrivateKey, ec.generate_private_key(ec.SECP384R1()))
    supplied = _issuing_signed_by(
        second_hierarchy, tmp_path / "new", b"test passphrase", 2, key=ec_key
    )
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    try:
        with pytest.raises(ConfigurationError, match="cannot do"):
            await service.roll_over(ADMIN, label="test", supplied=supplied)
    finally:
        await service.close()
    assert not (tmp_path / "data" / MANAGED_AUTHORITIES).exists()
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    await service.close()


async def test_the_managed_file_keeps_any_path_the_operator_gives_readable_at_the_next_start(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    """Quotes, a backslash and a character outside the Basic Multilingual Plane in the new
    CA's directory: the managed file is valid TOML and names the files as given."""
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("test", second_hierarchy, ca_material.passphrase, default=False)
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    directory = tmp_path / 'new "CA" \\ 🔑'
    supplied = _issuing_signed_by(second_hierarchy, directory, b"test passphrase", 2)
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    try:
        await service.roll_over(ADMIN, label="test", supplied=supplied)
    finally:
        await service.close()
    settings = load_settings(config, {}, overrides)
    new = next(entry for entry in settings.authorities if entry.name == "test-2")
    assert Path(new.certificate) == supplied.certificate


@pytest.mark.parametrize(
    "leftover",
    ["ca/issuing-2/issuing.key", "ca/authorities.tmp"],
    ids=["new-ca-directory", "managed-file-temporary"],
)
def test_a_rollover_interrupted_before_it_was_recorded_does_not_block_the_next_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], leftover: str
) -> None:
    """What a rollover killed part-way leaves (the new CA's directory with its key written, or
    the managed file's temporary copy) is not recorded; running it again brings a CA in."""
    data = tmp_path / "demo"
    assert main(["--data-dir", str(data), "init"]) == 0
    (data / leftover).parent.mkdir(mode=0o700, exist_ok=True)
    (data / leftover).write_bytes(b"half written")
    capsys.readouterr()
    assert main(["--data-dir", str(data), "ca", "rollover"]) == 0
    assert main(["--data-dir", str(data), "status"]) == 0
    assert "Issuing CA" in capsys.readouterr().out
    assert load_settings(None, {}, {"data_dir": str(data)}).authorities[-1].retired is False


async def test_after_a_rollover_the_profiles_the_operator_configures_for_the_label_apply(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    """The operator restricts "test" to system certificates in their configuration after its
    rollover: the label's new generation (in the managed file) issues no user certificates."""
    config = tmp_path / "cas.toml"

    def configure(profiles: list[str]) -> None:
        config.write_text(
            authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
            + authority_entry(
                "test", second_hierarchy, ca_material.passphrase, default=False, profiles=profiles
            )
        )

    configure([])
    overrides = authorities_overrides(tmp_path, ca_material)
    supplied = _issuing_signed_by(second_hierarchy, tmp_path / "new", b"test passphrase", 2)
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    try:
        await service.roll_over(ADMIN, label="test", supplied=supplied)
    finally:
        await service.close()
    configure(["system"])
    service = await with_test_organisations(
        await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    )
    try:
        with pytest.raises(BadRequest, match="does not issue profile 'user'"):
            await new_order(service, await new_user(service), ca_label="test")
    finally:
        await service.close()


async def test_a_rollover_to_a_ca_its_chains_root_did_not_sign_is_refused_naming_the_break(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    """Both demo roots have one subject: a CA the first signed, given with the second's
    chain, is a broken chain (ConfigurationError), not a bare InvalidSignature."""
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("test", second_hierarchy, ca_material.passphrase, default=False)
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    supplied = _issuing_signed_by(ca_material.hierarchy, tmp_path / "new", b"test passphrase", 2)
    supplied.chain.write_bytes(second_hierarchy.root_cert.read_bytes())
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    try:
        with pytest.raises(ConfigurationError, match="the CA chain is broken"):
            await service.roll_over(ADMIN, label="test", supplied=supplied)
    finally:
        await service.close()
    assert not (tmp_path / "data" / MANAGED_AUTHORITIES).exists()


async def test_a_rollover_that_another_one_overtook_records_nothing(
    tmp_path: Path, ca_material: CaMaterial, clock: SettableClock
) -> None:
    """Two shells roll the same label over from the same starting point: the second stops
    instead of leaving two generations enrolling under one label."""
    settings = make_settings(tmp_path / "data", ca_material)
    first = await Service.open(settings, clock=clock, with_ca=False, create=True)
    second = await Service.open(settings, clock=clock, with_ca=False, create=True)
    try:
        await first.roll_over(ADMIN)
        recorded = (tmp_path / "data" / MANAGED_AUTHORITIES).read_text()
        with pytest.raises(ConfigurationError, match="was rolled over meanwhile"):
            await second.roll_over(ADMIN)
    finally:
        await first.close()
        await second.close()
    assert (tmp_path / "data" / MANAGED_AUTHORITIES).read_text() == recorded
    reopened = await Service.open(make_settings(tmp_path / "data", ca_material), clock=clock)
    try:
        states = {row["name"]: row["state"] for row in await reopened.authority_overview()}
    finally:
        await reopened.close()
    assert states == {"issuing-2": "enrolls", "issuing": "retired"}
