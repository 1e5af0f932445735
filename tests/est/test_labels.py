"""CA labels (RFC 7030 3.2.2): two hierarchies served side by side, each under its own label,
over real TLS with curl; the unlabelled path is the default CA (issue 12, item 3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from est_ca.ca.authority import issuer_key_id, key_identifier
from est_ca.ca.certificates import KeyId
from est_ca.ca.hierarchy import HierarchyFiles
from est_ca.clock import SettableClock
from est_ca.config import Settings, load_settings, shipped_config_dir
from est_ca.errors import BadRequest, ConfigurationError
from est_ca.registration.orders import OrderStatus
from est_ca.server import Server
from est_ca.service import Service
from tests.conftest import CaMaterial, authorities_overrides, with_test_organisations
from tests.est.test_csrattrs import asn1parse
from tests.est.test_real_clients import (
    openssl_csr_base64,
    openssl_csr_der,
    pki_report,
    rekey_request,
)
from tests.helpers import (
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
    pem,
    pki,
    print_certs,
)


def _key_id(path: Path) -> KeyId:
    return KeyId.of(key_identifier(x509.load_pem_x509_certificate(path.read_bytes())))


@pytest.fixture
async def service(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> AsyncIterator[Service]:
    """ "prod" (the default, every profile) and "test" (a hierarchy of its own, system
    certificates only)."""
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry(
            "test",
            second_hierarchy,
            ca_material.passphrase,
            default=False,
            profiles=["system"],
        )
    )
    settings = load_settings(config, {}, authorities_overrides(tmp_path, ca_material))
    opened = await Service.open(settings, clock=clock, create=True)
    yield await with_test_organisations(opened)
    await opened.close()


async def _enroll(
    server: Server,
    operation: str,
    csr: Path,
    *options: str | Path,
    ca_material: CaMaterial,
) -> tuple[int, str, list[x509.Certificate]]:
    response = await curl_est(server, operation, csr, *options, *PKCS10, trust=ca_material.tls_cert)
    issued = await print_certs(response.body) if response.status == 200 else []
    return response.status, response.text, issued


async def _csr(keys: KeyPool, tmp_path: Path, index: int) -> Path:
    body = tmp_path / f"csr-{index}.b64"
    body.write_bytes(await openssl_csr_base64(keys.rsa(index).path))
    return body


async def test_each_label_serves_its_own_ca_chain_and_the_unlabelled_path_the_default(
    server: Server, ca_material: CaMaterial, second_hierarchy: HierarchyFiles
) -> None:
    chains = {}
    for path in ("cacerts", "prod/cacerts", "test/cacerts"):
        response = await curl(est_url(server, path), trust=ca_material.tls_cert)
        assert response.status == 200, (path, response.text)
        chains[path] = await print_certs(response.body)
    first = [
        x509.load_pem_x509_certificate(p.read_bytes())
        for p in (ca_material.hierarchy.issuing_cert, ca_material.hierarchy.root_cert)
    ]
    second = [
        x509.load_pem_x509_certificate(p.read_bytes())
        for p in (second_hierarchy.issuing_cert, second_hierarchy.root_cert)
    ]
    assert chains["cacerts"] == first
    assert chains["prod/cacerts"] == first
    assert chains["test/cacerts"] == second


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("GET", "cacerts"),
        ("GET", "csrattrs"),
        ("POST", "simpleenroll"),
        ("POST", "simplereenroll"),
    ],
)
async def test_an_unknown_label_is_not_found(
    server: Server, ca_material: CaMaterial, method: str, operation: str
) -> None:
    response = await curl(
        est_url(server, f"staging/{operation}"), "-X", method, trust=ca_material.tls_cert
    )
    assert response.status == 404
    assert "no CA label 'staging'" in response.text


async def test_an_order_for_a_label_is_issued_by_that_labels_ca(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    placed = await new_order(service, await new_system(service), ca_label="test")
    status, text, issued = await _enroll(
        server,
        "test/simpleenroll",
        await _csr(keys, tmp_path, 0),
        "-u",
        ":".join(credentials(placed)),
        ca_material=ca_material,
    )
    assert status == 200, text
    assert issuer_key_id(issued[0]) == _key_id(second_hierarchy.issuing_cert)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pem(issued))
    verified = await openssl(
        "verify",
        "-CAfile",
        second_hierarchy.root_cert,
        "-untrusted",
        second_hierarchy.issuing_cert,
        leaf,
    )
    assert b"OK" in verified


@pytest.mark.parametrize("path", ["simpleenroll", "prod/simpleenroll"])
async def test_an_order_enrolled_under_another_label_is_forbidden_and_stays_usable(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    keys: KeyPool,
    tmp_path: Path,
    path: str,
) -> None:
    placed = await new_order(service, await new_system(service), ca_label="test")
    csr = await _csr(keys, tmp_path, 0)
    login = ":".join(credentials(placed))
    status, text, _ = await _enroll(server, path, csr, "-u", login, ca_material=ca_material)
    assert status == 403
    assert f"order {placed.order.reference} is for the CA label 'test'" in text
    assert "/.well-known/est/test/" in text
    order = await service.registry.get_order(placed.order.reference)
    assert order.status is OrderStatus.PENDING
    status, text, _ = await _enroll(
        server, "test/simpleenroll", csr, "-u", login, ca_material=ca_material
    )
    assert status == 200, text


async def test_an_order_without_a_label_is_for_the_default_ca_and_its_label(
    server: Server, service: Service, ca_material: CaMaterial, keys: KeyPool, tmp_path: Path
) -> None:
    placed = await new_order(service, await new_user(service))
    assert placed.order.ca_label == "prod"
    status, text, issued = await _enroll(
        server,
        "simpleenroll",
        await _csr(keys, tmp_path, 1),
        "-u",
        ":".join(credentials(placed)),
        ca_material=ca_material,
    )
    assert status == 200, text
    assert issuer_key_id(issued[0]) == _key_id(ca_material.hierarchy.issuing_cert)


async def test_a_certificate_renews_under_its_own_label_only(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    placed = await new_order(service, await new_system(service), ca_label="test")
    csr = await _csr(keys, tmp_path, 0)
    _, _, issued = await _enroll(
        server,
        "test/simpleenroll",
        csr,
        "-u",
        ":".join(credentials(placed)),
        ca_material=ca_material,
    )
    current = tmp_path / "current.pem"
    current.write_bytes(pem(issued))
    renewal_csr = tmp_path / "renewal.b64"
    renewal_csr.write_bytes(
        await openssl("base64", input=await rekey_request(current, keys.rsa(0).path))
    )
    tls_client = ("--cert", current, "--key", keys.rsa(0).path)
    status, text, _ = await _enroll(
        server, "simplereenroll", renewal_csr, *tls_client, ca_material=ca_material
    )
    assert status == 403
    assert "not issued under the CA label 'prod'" in text
    assert "/.well-known/est/test/" in text
    status, text, renewed = await _enroll(
        server, "test/simplereenroll", renewal_csr, *tls_client, ca_material=ca_material
    )
    assert status == 200, text
    assert issuer_key_id(renewed[0]) == _key_id(second_hierarchy.issuing_cert)
    assert renewed[0].subject == issued[0].subject


async def test_a_label_issues_only_the_profiles_it_lists(service: Service) -> None:
    with pytest.raises(BadRequest, match="does not issue profile 'user'"):
        await new_order(service, await new_user(service), ca_label="test")


async def test_an_order_for_an_unknown_label_is_refused(service: Service) -> None:
    with pytest.raises(BadRequest, match="no CA label 'staging'"):
        await new_order(service, await new_system(service), ca_label="staging")


async def test_csrattrs_is_served_per_label(server: Server, ca_material: CaMaterial) -> None:
    for path in ("csrattrs", "prod/csrattrs", "test/csrattrs"):
        response = await curl(est_url(server, path), trust=ca_material.tls_cert)
        assert response.status == 200, (path, response.text)
        assert response.headers["content-type"] == "application/csrattrs"


def test_two_active_authorities_cannot_share_a_label(
    tmp_path: Path, ca_material: CaMaterial, second_hierarchy: HierarchyFiles
) -> None:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("a", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry("b", second_hierarchy, ca_material.passphrase, default=False, label="a")
    )
    with pytest.raises(ConfigurationError, match="label 'a' needs exactly one authority"):
        load_settings(config, {}, authorities_overrides(tmp_path, ca_material))


def test_a_retired_authority_cannot_be_the_default(
    tmp_path: Path, ca_material: CaMaterial, second_hierarchy: HierarchyFiles
) -> None:
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry(
            "old", ca_material.hierarchy, ca_material.passphrase, default=True, retired=True
        )
        + authority_entry(
            "new", second_hierarchy, ca_material.passphrase, default=False, label="old"
        )
    )
    with pytest.raises(ConfigurationError, match="is retired: it cannot be the default"):
        load_settings(config, {}, authorities_overrides(tmp_path, ca_material))


async def test_csrattrs_of_a_label_describe_only_the_profiles_it_issues(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
) -> None:
    """The system profile takes P-256 keys only, the others RSA: the "test" label (system
    only) names P-256; the default label, with no key every profile accepts, names none."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (shipped_config_dir() / "profiles" / "system.toml").read_text()
    text = text.replace("rsa_sizes = [3072, 4096]", "rsa_sizes = []")
    (profiles / "system.toml").write_text(text.replace("ec_curves = []", 'ec_curves = ["P-256"]'))
    config = tmp_path / "cas.toml"
    config.write_text(
        authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
        + authority_entry(
            "test", second_hierarchy, ca_material.passphrase, default=False, profiles=["system"]
        )
    )
    overrides = authorities_overrides(tmp_path, ca_material)
    overrides["profiles"] = {"extra_dirs": [str(profiles)]}
    service = await Service.open(load_settings(config, {}, overrides), clock=clock, create=True)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        unlabelled = await curl(est_url(server, "csrattrs"), trust=ca_material.tls_cert)
        labelled = await curl(est_url(server, "test/csrattrs"), trust=ca_material.tls_cert)
    finally:
        await server.stop()
        await service.close()
    assert labelled.status == 200
    parsed = await asn1parse(labelled.body)
    assert ":prime256v1" in parsed
    assert ":rsaEncryption" not in parsed
    assert unlabelled.status == 200
    common = await asn1parse(unlabelled.body)
    assert ":prime256v1" not in common
    assert ":rsaEncryption" not in common


async def test_strongswan_pki_reads_a_labels_chain_and_enrolls_under_it(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    keys: KeyPool,
    tmp_path: Path,
) -> None:
    """pki 5.9.8 has no label option and asks <url>/.well-known/est/<operation>: given
    https://host/test it reaches the label through the path-prefix form."""
    url = f"{server.https_url}/test"
    trust: list[str | Path] = ["--cacert", ca_material.tls_cert]
    chain = await pki("--estca", "--url", url, *trust, "--caout", tmp_path / "ca.pem")
    assert chain.returncode == 0, pki_report(chain)
    received = {
        x509.load_der_x509_certificate(path.read_bytes())
        for path in (tmp_path / "ca.pem", tmp_path / "ca-1.pem")
    }
    assert received == {
        x509.load_pem_x509_certificate(path.read_bytes())
        for path in (second_hierarchy.issuing_cert, second_hierarchy.root_cert)
    }
    placed = await new_order(service, await new_system(service), ca_label="test")
    enrolled = await pki(
        "--est",
        "--url",
        url,
        *trust,
        "--cacert",
        second_hierarchy.issuing_cert,
        "--cacert",
        second_hierarchy.root_cert,
        "--userpass",
        ":".join(credentials(placed)),
        "--in",
        await openssl_csr_der(keys.rsa(0).path, tmp_path),
        "--outform",
        "pem",
    )
    assert enrolled.returncode == 0, pki_report(enrolled)
    certificate = x509.load_pem_x509_certificate(enrolled.stdout)
    assert issuer_key_id(certificate) == _key_id(second_hierarchy.issuing_cert)


async def test_a_renewal_under_a_label_that_no_longer_issues_its_profile_is_forbidden(
    tmp_path: Path,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    clock: SettableClock,
    keys: KeyPool,
) -> None:
    """A user certificate issued under "test" while it issued every profile does not renew
    there once the operator restricted "test" to system certificates (as an order would not)."""
    config = tmp_path / "cas.toml"

    def configure(profiles: list[str]) -> Settings:
        config.write_text(
            authority_entry("prod", ca_material.hierarchy, ca_material.passphrase, default=True)
            + authority_entry(
                "test", second_hierarchy, ca_material.passphrase, default=False, profiles=profiles
            )
        )
        return load_settings(config, {}, authorities_overrides(tmp_path, ca_material))

    service = await with_test_organisations(
        await Service.open(configure([]), clock=clock, create=True)
    )
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        placed = await new_order(service, await new_user(service), ca_label="test")
        status, text, issued = await _enroll(
            server,
            "test/simpleenroll",
            await _csr(keys, tmp_path, 1),
            "-u",
            ":".join(credentials(placed)),
            ca_material=ca_material,
        )
        assert status == 200, text
    finally:
        await server.stop()
        await service.close()
    current = tmp_path / "current.pem"
    current.write_bytes(pem(issued))
    renewal_csr = tmp_path / "renewal.b64"
    renewal_csr.write_bytes(
        await openssl("base64", input=await rekey_request(current, keys.rsa(1).path))
    )
    service = await Service.open(configure(["system"]), clock=clock, create=True)
    server = Server(service)
    await server.start("127.0.0.1", 0, service.settings.service.http_port)
    try:
        status, text, renewed = await _enroll(
            server,
            "test/simplereenroll",
            renewal_csr,
            "--cert",
            current,
            "--key",
            keys.rsa(1).path,
            ca_material=ca_material,
        )
    finally:
        await server.stop()
        await service.close()
    assert status == 403, [c.subject.rfc4514_string() for c in renewed]
    assert "no longer issues profile 'user'" in text


async def test_a_certificate_enrolling_under_a_label_claims_its_identitys_order_for_that_label(
    server: Server,
    service: Service,
    ca_material: CaMaterial,
    second_hierarchy: HierarchyFiles,
    keys: KeyPool,
    tmp_path: Path,
    clock: SettableClock,
) -> None:
    """The identity has an older order for "prod" and a newer one for "test": simpleenroll
    under "test" with its certificate takes the "test" order, not the older one."""
    system = await new_system(service)
    first = await new_order(service, system, ca_label="test")
    _, _, issued = await _enroll(
        server,
        "test/simpleenroll",
        await _csr(keys, tmp_path, 0),
        "-u",
        ":".join(credentials(first)),
        ca_material=ca_material,
    )
    current = tmp_path / "current.pem"
    current.write_bytes(pem(issued))
    older = await new_order(service, system, ca_label="prod")
    clock.advance(dt.timedelta(seconds=1))
    newer = await new_order(service, system, ca_label="test")
    status, text, enrolled = await _enroll(
        server,
        "test/simpleenroll",
        await _csr(keys, tmp_path, 1),
        "--cert",
        current,
        "--key",
        keys.rsa(0).path,
        ca_material=ca_material,
    )
    assert status == 200, text
    assert issuer_key_id(enrolled[0]) == _key_id(second_hierarchy.issuing_cert)
    assert (await service.registry.get_order(newer.order.reference)).status is (
        OrderStatus.CONSUMED
    )
    assert (await service.registry.get_order(older.order.reference)).status is (OrderStatus.PENDING)
