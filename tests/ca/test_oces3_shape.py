"""Our certificates have the structure of real OCES3 certificates, field by field, and lint clean.

The reference certificates are the public samples in tests/vectors/oces3 (copied from the
project's reference material). What differs on purpose: names (ours are demo names), URLs
(ours), keys, serials and dates.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from est_ca.ca.qualified import QC_STATEMENTS_OID, read_semantics
from est_ca.registration.identities import IdentityType
from est_ca.service import Service
from tests.conftest import CaMaterial, OpenService
from tests.helpers import KeyPool, csr_der, danish_identity, make_csr, new_order
from tests.lint import blocking, detected_etsi_type, etsi_findings, rfc5280_findings

SAMPLES = Path(__file__).resolve().parents[1] / "vectors" / "oces3"
SAMPLE_OF_TYPE = {
    IdentityType.USER: "test-user.pem",
    IdentityType.ORGANISATION: "test-organisation.pem",
    IdentityType.SYSTEM: "test-system.pem",
}
ETSI_TYPE = {
    IdentityType.USER: "NCP_NATURAL_PERSON_CERTIFICATE",
    IdentityType.ORGANISATION: "NCP_LEGAL_PERSON_CERTIFICATE",
    IdentityType.SYSTEM: "NCP_LEGAL_PERSON_CERTIFICATE",
}


def sample(file_name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((SAMPLES / file_name).read_bytes())


async def issue(service: Service, keys: KeyPool, identity_type: IdentityType) -> x509.Certificate:
    """Enroll one identity of the type, with Danish letters in every name that allows them."""
    assert service.authority is not None
    identity = await danish_identity(service, identity_type, organisation_email=True)
    placed = await new_order(service, identity)
    index = list(IdentityType).index(identity_type)
    return await service.authority.enroll_with_order(
        placed.order.reference,
        placed.one_time_code,
        csr_der(make_csr(keys.rsa(index).key)),
        source="test",
    )


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def subject_shape(certificate: x509.Certificate) -> list[tuple[str, str]]:
    return [
        (attribute.oid.dotted_string, attribute._type.name)
        for rdn in certificate.subject.rdns
        for attribute in rdn
    ]


def extension_shape(certificate: x509.Certificate) -> list[tuple[str, bool]]:
    return [(e.oid.dotted_string, e.critical) for e in certificate.extensions]


def key_usage_bits(certificate: x509.Certificate) -> tuple[bool, ...]:
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    return (
        usage.digital_signature,
        usage.content_commitment,
        usage.key_encipherment,
        usage.data_encipherment,
        usage.key_agreement,
        usage.key_cert_sign,
        usage.crl_sign,
    )


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_the_certificate_has_the_structure_of_the_oces3_sample(
    service: Service, keys: KeyPool, identity_type: IdentityType
) -> None:
    ours = await issue(service, keys, identity_type)
    theirs = sample(SAMPLE_OF_TYPE[identity_type])
    assert subject_shape(ours) == subject_shape(theirs)
    assert extension_shape(ours) == extension_shape(theirs)
    assert key_usage_bits(ours) == key_usage_bits(theirs)
    policies = ours.extensions.get_extension_for_class(x509.CertificatePolicies).value
    expected = theirs.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [p.policy_identifier for p in expected]
    assert all(p.policy_qualifiers is None for p in policies)
    lifetime = ours.not_valid_after_utc - ours.not_valid_before_utc
    assert lifetime == theirs.not_valid_after_utc - theirs.not_valid_before_utc
    assert lifetime == dt.timedelta(days=1095) - dt.timedelta(seconds=1)
    assert len(ours.serial_number.to_bytes(20, "big").lstrip(b"\0")) == 20
    assert ours.version is theirs.version is x509.Version.v3


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_the_signature_is_rsassa_pss_sha256_mgf1_sha256_salt_32_like_the_sample(
    service: Service, keys: KeyPool, identity_type: IdentityType
) -> None:
    ours = await issue(service, keys, identity_type)
    theirs = sample(SAMPLE_OF_TYPE[identity_type])
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid
    parameters = ours.signature_algorithm_parameters
    assert isinstance(parameters, padding.PSS)
    assert ours.signature_hash_algorithm is not None
    assert ours.signature_hash_algorithm.name == "sha256"

    # The whole AlgorithmIdentifier is byte-equal: hash, MGF1 hash, salt 32, trailer default.
    def algorithm(certificate: x509.Certificate) -> bytes:
        parsed = asn1_x509.Certificate.load(der(certificate))
        return bytes(parsed["signature_algorithm"].dump())

    assert algorithm(ours) == algorithm(theirs)


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_qc_statements_match_the_sample_but_name_our_registration_authority(
    service: Service, keys: KeyPool, identity_type: IdentityType
) -> None:
    ours = await issue(service, keys, identity_type)
    theirs = sample(SAMPLE_OF_TYPE[identity_type])

    def statements(certificate: x509.Certificate) -> list[tuple[str, str | None, list[str]]]:
        value = certificate.extensions.get_extension_for_oid(QC_STATEMENTS_OID).value
        assert isinstance(value, x509.UnrecognizedExtension)
        return read_semantics(value.value)

    [(statement, semantics, authorities)] = statements(ours)
    [(their_statement, their_semantics, their_authorities)] = statements(theirs)
    assert (statement, semantics) == (their_statement, their_semantics)
    assert their_authorities == ["https://uid.gov.dk"]
    assert authorities == [service.publication.name_registration_authority]


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_urls_in_the_certificate_are_this_services(
    service: Service, keys: KeyPool, identity_type: IdentityType
) -> None:
    ours = await issue(service, keys, identity_type)
    access = ours.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in access] == [
        (AuthorityInformationAccessOID.CA_ISSUERS, service.publication.issuing_cert_url),
        (AuthorityInformationAccessOID.OCSP, service.publication.ocsp_url),
    ]
    points = ours.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [[n.value for n in p.full_name or []] for p in points] == [
        [service.publication.issuing_crl_url]
    ]
    assert service.publication.base_url.startswith("http://127.0.0.1:")


async def test_danish_letters_round_trip_exactly_as_utf8(service: Service, keys: KeyPool) -> None:
    user = await issue(service, keys, IdentityType.USER)
    organisation = await issue(service, keys, IdentityType.ORGANISATION)
    encoded = der(user)
    assert "Søren Ærø Ålborg".encode() in encoded
    assert "ÆØÅ ApS".encode() in der(organisation)
    values = {a.oid.dotted_string: a.value for rdn in user.subject.rdns for a in rdn}
    assert values["2.5.4.3"] == "Søren Ærø Ålborg"
    assert values["2.5.4.42"] == "Søren"
    assert values["2.5.4.4"] == "Ærø Ålborg"
    assert values["2.5.4.10"] == "ÆØÅ ApS"
    assert values["2.5.4.97"] == "NTRDK-99999999"
    assert values["2.5.4.6"] == "DK"


@pytest.mark.parametrize(
    ("identity_type", "emails"),
    [
        (IdentityType.USER, ["soren@example.dk"]),
        (IdentityType.ORGANISATION, ["post@example.dk"]),
        (IdentityType.SYSTEM, None),
    ],
    ids=["user", "organisation", "system"],
)
async def test_the_email_san_follows_the_profile(
    service: Service, keys: KeyPool, identity_type: IdentityType, emails: list[str] | None
) -> None:
    ours = await issue(service, keys, identity_type)
    try:
        san = ours.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found: list[str] | None = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        found = None
    assert found == emails


# ETSI EN 319 412 wants publicly resolvable names in certificate URLs (pkilint reports
# 127.0.0.1 and localhost as etsi.internal_domain_name, an error): lint as deployed.
PUBLIC_BASE_URL = "http://ca.est-ca-demo.dk"


@pytest.mark.parametrize("identity_type", list(IdentityType), ids=lambda t: t.value)
async def test_pkilint_finds_no_error_with_rfc5280_or_etsi_validators(
    open_service: OpenService, keys: KeyPool, identity_type: IdentityType
) -> None:
    service = await open_service(publication={"base_url": PUBLIC_BASE_URL})
    encoded = der(await issue(service, keys, identity_type))
    assert blocking(rfc5280_findings(encoded)) == []
    assert detected_etsi_type(encoded) == ETSI_TYPE[identity_type]
    findings = etsi_findings(encoded, ETSI_TYPE[identity_type])
    assert blocking(findings) == []
    # The same findings the real certificate of this type gets, and no others.
    theirs = etsi_findings(der(sample(SAMPLE_OF_TYPE[identity_type])), ETSI_TYPE[identity_type])
    assert {code for _, code, _ in findings} <= {code for _, code, _ in theirs}


def test_the_demo_ca_certificates_have_the_oces3_ca_shape(ca_material: CaMaterial) -> None:
    for ours_path, theirs_name, bits in (
        (ca_material.hierarchy.root_cert, "test-root-ca.pem", 4096),
        (ca_material.hierarchy.issuing_cert, "test-issuing-ca.pem", 3072),
    ):
        ours = x509.load_pem_x509_certificate(ours_path.read_bytes())
        theirs = sample(theirs_name)
        assert extension_shape(ours) == extension_shape(theirs)
        assert subject_shape(ours) == subject_shape(theirs)
        assert key_usage_bits(ours) == key_usage_bits(theirs)
        key = ours.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == bits
        assert ours.signature_hash_algorithm is not None
        assert ours.signature_hash_algorithm.name == "sha512"
        parameters = ours.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        assert isinstance(parameters, x509.BasicConstraints)
        expected = theirs.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert parameters == expected
        assert blocking(rfc5280_findings(der(ours))) == []
