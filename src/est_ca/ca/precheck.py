"""Pre-issuance checks: the draft certificate (signed by a throwaway key) against its profile.

These run before the CA key signs anything, so a bug in a profile or in the building code can
never produce a malformed certificate. They are deliberately written apart from building.py,
from the profile's facts, so the two do not share a mistake.
"""

from __future__ import annotations

from asn1crypto import crl as asn1_crl
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.building import IssuanceRequest
from est_ca.ca.publication import Publication
from est_ca.ca.qualified import PKIX_QC_SYNTAX_V2, QC_STATEMENTS_OID, read_semantics
from est_ca.ca.spki import public_key_der, subject_public_key_bits
from est_ca.errors import IssuanceFailed

_STRING_TYPES = {
    NameOID.COUNTRY_NAME: x509.name._ASN1Type.PrintableString,
    NameOID.SERIAL_NUMBER: x509.name._ASN1Type.PrintableString,
}
_ATTRIBUTE_OIDS = {
    "country": NameOID.COUNTRY_NAME,
    "organization_identifier": NameOID.ORGANIZATION_IDENTIFIER,
    "organization": NameOID.ORGANIZATION_NAME,
    "serial_number": NameOID.SERIAL_NUMBER,
    "surname": NameOID.SURNAME,
    "given_name": NameOID.GIVEN_NAME,
    "common_name": NameOID.COMMON_NAME,
}


def expected_extensions(request: IssuanceRequest) -> list[tuple[x509.ObjectIdentifier, bool]]:
    """(OID, critical) in the order OCES3 certificates carry them."""
    profile = request.profile
    has_email = profile.email_san != "never" and request.identity.email is not None
    expected = [
        (ExtensionOID.BASIC_CONSTRAINTS, True),
        (ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False),
        (ExtensionOID.AUTHORITY_INFORMATION_ACCESS, False),
    ]
    if has_email:
        expected.append((ExtensionOID.SUBJECT_ALTERNATIVE_NAME, False))
    expected.append((ExtensionOID.CERTIFICATE_POLICIES, False))
    if profile.qc_semantics_identifier:
        expected.append((QC_STATEMENTS_OID, False))
    expected += [
        (ExtensionOID.CRL_DISTRIBUTION_POINTS, False),
        (ExtensionOID.SUBJECT_KEY_IDENTIFIER, False),
        (ExtensionOID.KEY_USAGE, True),
    ]
    if profile.extended_key_usage:
        expected.append((ExtensionOID.EXTENDED_KEY_USAGE, False))
    return expected


def problems(
    draft: x509.Certificate,
    request: IssuanceRequest,
    ca: CertificateAuthority,
    publication: Publication,
) -> list[str]:
    """Every way the draft differs from what the profile promises (empty: fine to sign)."""
    found: list[str] = []
    profile = request.profile
    identity = request.identity

    if draft.version is not x509.Version.v3:
        found.append("not an X.509 v3 certificate")
    serial = draft.serial_number
    if serial != request.serial.value or not 0 < serial < 1 << 159 or serial.bit_length() <= 152:
        found.append("serial is not the reserved 20-octet positive serial")
    if draft.issuer.public_bytes() != ca.subject.public_bytes():
        found.append("issuer differs from the CA's subject")
    if draft.not_valid_before_utc != request.not_before:
        found.append("notBefore is not the issuance time")
    lifetime = draft.not_valid_after_utc - draft.not_valid_before_utc
    if lifetime.total_seconds() != profile.validity_seconds:
        found.append(f"validity is {lifetime}, the profile says {profile.validity_seconds}s")
    if draft.not_valid_after_utc > ca.certificate.not_valid_after_utc:
        found.append("the certificate would outlive the issuing CA")
    if public_key_der(draft.public_key()) != request.key.spki_der:
        found.append("public key differs from the CSR's")
    if draft.signature_hash_algorithm is None or (
        draft.signature_hash_algorithm.name != profile.signature.hash
    ):
        found.append("signature hash differs from the profile")

    found += _subject_problems(draft, request)

    extensions = [(ext.oid, ext.critical) for ext in draft.extensions]
    if extensions != expected_extensions(request):
        found.append(f"extensions {extensions} differ from the profile's")
    found += _extension_value_problems(draft, request, ca)
    found += _publication_problems(draft, request, publication)
    if identity.email is None and profile.email_san == "required":
        found.append("the profile requires an email address and the identity has none")
    return found


def _subject_problems(draft: x509.Certificate, request: IssuanceRequest) -> list[str]:
    found: list[str] = []
    rdns = list(draft.subject.rdns)
    if [len(rdn) for rdn in rdns] != [1] * len(rdns):
        found.append("every subject RDN must hold exactly one attribute")
    attributes = [attribute for rdn in rdns for attribute in rdn]
    oids = [attribute.oid for attribute in attributes]
    if oids != [_ATTRIBUTE_OIDS[name] for name in request.profile.subject]:
        found.append("subject attributes are not in the profile's order")
    for attribute in attributes:
        wanted = _STRING_TYPES.get(attribute.oid, x509.name._ASN1Type.UTF8String)
        if attribute._type is not wanted:
            found.append(f"subject {attribute.oid.dotted_string} is not a {wanted.name}")
    values = {attribute.oid: attribute.value for attribute in attributes}
    identity = request.identity
    if values.get(NameOID.COMMON_NAME) != identity.display_name:
        found.append("CN differs from the identity's display name")
    if NameOID.SERIAL_NUMBER in values and values[NameOID.SERIAL_NUMBER] != (
        f"{request.profile.serial_number_prefix}{identity.id}"
    ):
        found.append("subject serialNumber does not name the identity")
    return found


def _extension_value_problems(
    draft: x509.Certificate, request: IssuanceRequest, ca: CertificateAuthority
) -> list[str]:
    found: list[str] = []
    extensions = {ext.oid: ext.value for ext in draft.extensions}
    constraints = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(constraints, x509.BasicConstraints) or constraints.ca:
        found.append("basicConstraints must say CA:FALSE")
    aki = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier != ca.key_identifier:
        found.append("authorityKeyIdentifier is not the CA's key identifier")
    ski = extensions.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if not isinstance(ski, x509.SubjectKeyIdentifier) or ski.digest != method_one_key_identifier(
        request.key.spki_der
    ):
        found.append("subjectKeyIdentifier is not the SHA-1 of the public key (RFC 5280 method 1)")
    usage = extensions.get(ExtensionOID.KEY_USAGE)
    if isinstance(usage, x509.KeyUsage):
        wanted = set(request.profile.key_usage)
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
        ):
            if getattr(usage, name) != (name in wanted):
                found.append(f"keyUsage {name} differs from the profile")
        if usage.key_cert_sign or usage.crl_sign:
            found.append("an end-entity certificate must not have keyCertSign or cRLSign")
    policies = extensions.get(ExtensionOID.CERTIFICATE_POLICIES)
    if not isinstance(policies, x509.CertificatePolicies) or [
        policy.policy_identifier.dotted_string for policy in policies
    ] != list(request.profile.policies):
        found.append("certificatePolicies differ from the profile")
    san = extensions.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if isinstance(san, x509.SubjectAlternativeName) and san.get_values_for_type(
        x509.RFC822Name
    ) != [request.identity.email]:
        found.append("subjectAltName must hold exactly the identity's email address")
    return found


def _publication_problems(
    draft: x509.Certificate, request: IssuanceRequest, publication: Publication
) -> list[str]:
    found: list[str] = []
    extensions = {ext.oid: ext.value for ext in draft.extensions}
    access = extensions.get(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    wanted_access = [
        (AuthorityInformationAccessOID.CA_ISSUERS, publication.issuing_cert_url),
        (AuthorityInformationAccessOID.OCSP, publication.ocsp_url),
    ]
    if (
        not isinstance(access, x509.AuthorityInformationAccess)
        or [(d.access_method, d.access_location.value) for d in access] != wanted_access
    ):
        found.append("authorityInfoAccess must name this service's CA certificate and OCSP URLs")
    points = extensions.get(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    if not isinstance(points, x509.CRLDistributionPoints) or [
        (
            [n.value for n in p.full_name or []],
            p.relative_name,
            p.reasons,
            p.crl_issuer,
        )
        for p in points
    ] != [([publication.issuing_crl_url], None, None, None)]:
        found.append("cRLDistributionPoints must be this service's CRL URL, one full name")
    semantics = request.profile.qc_semantics_identifier
    statements = extensions.get(QC_STATEMENTS_OID)
    if semantics:
        wanted = [(PKIX_QC_SYNTAX_V2, semantics, [publication.name_registration_authority])]
        if not isinstance(statements, x509.UnrecognizedExtension) or (
            read_semantics(statements.value) != wanted
        ):
            found.append("qcStatements must be pkixQCSyntax-v2 with the profile's semantics")
    eku = extensions.get(ExtensionOID.EXTENDED_KEY_USAGE)
    if request.profile.extended_key_usage and (
        not isinstance(eku, x509.ExtendedKeyUsage)
        or [oid.dotted_string for oid in eku] != list(request.profile.extended_key_usage)
    ):
        found.append("extendedKeyUsage differs from the profile")
    return found


def method_one_key_identifier(spki_der: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits."""
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - method 1 is defined on SHA-1
    digest.update(subject_public_key_bits(spki_der))
    return digest.finalize()


def check_draft(
    draft: x509.Certificate,
    request: IssuanceRequest,
    ca: CertificateAuthority,
    publication: Publication,
) -> None:
    found = problems(draft, request, ca, publication)
    if found:
        raise IssuanceFailed("pre-issuance check failed: " + "; ".join(found))


# -- what else the CA key signs: responder certificates and CRLs -----------------------------


def responder_problems(
    draft: x509.Certificate, ca: CertificateAuthority, public_key_spki: bytes
) -> list[str]:
    """How a delegated OCSP responder's draft certificate differs from RFC 6960 4.2.2.2 and
    what this CA promises: issued by this CA, for the responder's key, not a CA, OCSP signing
    only, id-pkix-ocsp-nocheck, and within the CA's own validity."""
    found: list[str] = []
    if draft.issuer.public_bytes() != ca.subject.public_bytes():
        found.append("issuer differs from the CA's subject")
    if public_key_der(draft.public_key()) != public_key_spki:
        found.append("the public key is not the responder's")
    extensions = {extension.oid: extension.value for extension in draft.extensions}
    constraints = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(constraints, x509.BasicConstraints) or constraints.ca:
        found.append("a responder certificate must say it is not a CA")
    eku = extensions.get(ExtensionOID.EXTENDED_KEY_USAGE)
    if not isinstance(eku, x509.ExtendedKeyUsage) or list(eku) != [
        ExtendedKeyUsageOID.OCSP_SIGNING
    ]:
        found.append("extendedKeyUsage must be id-kp-OCSPSigning alone")
    if ExtensionOID.OCSP_NO_CHECK not in extensions:
        found.append("id-pkix-ocsp-nocheck is missing")
    usage = extensions.get(ExtensionOID.KEY_USAGE)
    if not isinstance(usage, x509.KeyUsage) or usage.key_cert_sign or usage.crl_sign:
        found.append("keyUsage must not allow certificate or CRL signing")
    aki = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier != (
        ca.key_identifier
    ):
        found.append("authorityKeyIdentifier is not the CA's key id")
    if draft.not_valid_after_utc > ca.certificate.not_valid_after_utc:
        found.append("it would outlive the CA certificate")
    return found


def check_responder_draft(
    draft: x509.Certificate, ca: CertificateAuthority, public_key_spki: bytes
) -> None:
    found = responder_problems(draft, ca, public_key_spki)
    if found:
        raise IssuanceFailed("responder certificate check failed: " + "; ".join(found))


def crl_problems(
    draft_der: bytes, ca: CertificateAuthority, hash_name: str, number: int
) -> list[str]:
    """How a draft CRL differs from what the CA signs (RFC 5280 5): v2, this CA as issuer
    (name and AKI), the cRLNumber allocated for it, nextUpdate after thisUpdate, the hash of
    the CA's scheme. Only the header is read (asn1crypto parses lazily, in Python, so a
    100,000-entry draft never holds the GIL for long); the entries came from the store."""
    crl = asn1_crl.CertificateList.load(draft_der)
    tbs = crl["tbs_cert_list"]
    found: list[str] = []
    if tbs["version"].native != "v2":
        found.append("a CRL with extensions must be v2")
    if tbs["issuer"].dump() != ca.subject.public_bytes():
        found.append("issuer differs from the CA's subject")
    if crl.authority_key_identifier != ca.key_identifier:
        found.append("authorityKeyIdentifier is not the CA's key id")
    if crl.crl_number_value is None or crl.crl_number_value.native != number:
        found.append(f"cRLNumber is not {number}")
    this_update, next_update = tbs["this_update"].native, tbs["next_update"].native
    if next_update is None or next_update <= this_update:
        found.append("nextUpdate must come after thisUpdate")
    if tbs["signature"].hash_algo != hash_name:
        found.append("signature hash differs from the CA's scheme")
    return found


def check_crl_draft(
    draft_der: bytes, ca: CertificateAuthority, hash_name: str, number: int
) -> None:
    found = crl_problems(draft_der, ca, hash_name, number)
    if found:
        raise IssuanceFailed("CRL check failed: " + "; ".join(found))
