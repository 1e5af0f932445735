"""The certificate we will sign, built from the identity record and the profile (never the CSR)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.certificates import Serial
from est_ca.ca.csr_policy import SubscriberKey
from est_ca.ca.profiles import Profile
from est_ca.ca.publication import Publication
from est_ca.ca.qualified import QC_STATEMENTS_OID, semantics_statement
from est_ca.registration.identities import Identity

_PRINTABLE = x509.name._ASN1Type.PrintableString
_UTF8 = x509.name._ASN1Type.UTF8String


@dataclasses.dataclass(frozen=True)
class IssuanceRequest:
    """Everything that decides the content of one certificate."""

    serial: Serial
    identity: Identity
    profile: Profile
    key: SubscriberKey
    not_before: dt.datetime

    @property
    def not_after(self) -> dt.datetime:
        return self.not_before + dt.timedelta(seconds=self.profile.validity_seconds)


def subject_attribute(name: str, identity: Identity, profile: Profile) -> x509.NameAttribute[str]:
    """One subject attribute: C and serialNumber as PrintableString, the rest UTF8String."""
    if name == "country":
        return x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country, _PRINTABLE)
    if name == "organization_identifier":
        value = f"{profile.organization_identifier_prefix}{identity.cvr}"
        return x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, value, _UTF8)
    if name == "organization":
        return x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.organisation_name, _UTF8)
    if name == "serial_number":
        value = f"{profile.serial_number_prefix}{identity.id}"
        return x509.NameAttribute(NameOID.SERIAL_NUMBER, value, _PRINTABLE)
    if name == "surname":
        assert identity.surname is not None
        return x509.NameAttribute(NameOID.SURNAME, identity.surname, _UTF8)
    if name == "given_name":
        assert identity.given_name is not None
        return x509.NameAttribute(NameOID.GIVEN_NAME, identity.given_name, _UTF8)
    if name == "common_name":
        return x509.NameAttribute(NameOID.COMMON_NAME, identity.display_name, _UTF8)
    raise ValueError(f"unknown subject attribute {name!r}")


def subject_for(identity: Identity, profile: Profile) -> x509.Name:
    """The subject in the profile's encoding order, one attribute per RDN."""
    return x509.Name([subject_attribute(name, identity, profile) for name in profile.subject])


def email_san(identity: Identity, profile: Profile) -> x509.SubjectAlternativeName | None:
    if profile.email_san == "never" or identity.email is None:
        return None
    return x509.SubjectAlternativeName([x509.RFC822Name(identity.email)])


def key_usage(profile: Profile) -> x509.KeyUsage:
    usages = set(profile.key_usage)
    return x509.KeyUsage(
        digital_signature="digital_signature" in usages,
        content_commitment="content_commitment" in usages,
        key_encipherment="key_encipherment" in usages,
        data_encipherment="data_encipherment" in usages,
        key_agreement="key_agreement" in usages,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def own_certificate_builder(
    ca: CertificateAuthority,
    *,
    common_name: str,
    public_key: CertificatePublicKeyTypes,
    serial: Serial,
    not_before: dt.datetime,
    not_after: dt.datetime,
    purpose: x509.ObjectIdentifier,
) -> x509.CertificateBuilder:
    """A certificate `ca` issues for the service itself (its OCSP responder, its TLS listener):
    the CN, then the CA's own O and C; an end entity that only signs (digitalSignature), for
    the one extended key usage `purpose`. Callers add what their kind needs."""
    organisation = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    country = ca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), *organisation, *country]
    )
    return (
        x509.CertificateBuilder()
        .serial_number(serial.value)
        .issuer_name(ca.subject)
        .subject_name(subject)
        .public_key(public_key)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier(ca.key_identifier, None, None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )


def authority_information_access(ocsp_url: str, issuer_url: str) -> x509.AuthorityInformationAccess:
    """caIssuers first, then OCSP: the order OCES3 certificates carry them in."""
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(issuer_url)
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            ),
        ]
    )


def crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """One distribution point with one full-name URI (RFC 5280 4.2.1.13, as OCES3 does)."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def certificate_builder(
    request: IssuanceRequest, ca: CertificateAuthority, publication: Publication
) -> x509.CertificateBuilder:
    """The end-entity certificate, extensions in the OCES3 order:

    basicConstraints, authorityKeyIdentifier, authorityInfoAccess, [subjectAltName],
    certificatePolicies, [qcStatements], cRLDistributionPoints, subjectKeyIdentifier, keyUsage,
    and extendedKeyUsage last when a profile asks for one.
    """
    profile = request.profile
    public_key = request.key.public_key
    builder = (
        x509.CertificateBuilder()
        .serial_number(request.serial.value)
        .issuer_name(ca.subject)
        .subject_name(subject_for(request.identity, profile))
        .public_key(public_key)
        .not_valid_before(request.not_before)
        .not_valid_after(request.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier(
                key_identifier=ca.key_identifier,
                authority_cert_issuer=None,
                authority_cert_serial_number=None,
            ),
            critical=False,
        )
        .add_extension(
            authority_information_access(publication.ocsp_url, publication.issuing_cert_url),
            critical=False,
        )
    )
    san = email_san(request.identity, profile)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    builder = builder.add_extension(
        x509.CertificatePolicies(
            [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in profile.policies]
        ),
        critical=False,
    )
    if profile.qc_semantics_identifier:
        statements = semantics_statement(
            profile.qc_semantics_identifier, publication.name_registration_authority
        )
        builder = builder.add_extension(
            x509.UnrecognizedExtension(QC_STATEMENTS_OID, statements), critical=False
        )
    builder = (
        builder.add_extension(crl_distribution_points(publication.issuing_crl_url), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key),
            critical=False,
        )
        .add_extension(key_usage(profile), critical=True)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [x509.ObjectIdentifier(oid) for oid in profile.extended_key_usage]
            ),
            critical=False,
        )
    return builder
