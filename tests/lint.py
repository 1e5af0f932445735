"""pkilint, the way its command-line linters run it, for certificates (CRL and OCSP follow).

A finding is (severity, code, where). Tests fail on ERROR and FATAL; notices and warnings are
what the real OCES3 certificates also get (see oces3-samples/README.md).
"""

from __future__ import annotations

from pkilint import etsi, finding_filter, loader, pkix
from pkilint.cabf import cabf_crl
from pkilint.etsi import etsi_constants
from pkilint.pkix import certificate, crl, extension, name, ocsp

Finding = tuple[str, str, str]
BLOCKING = {"ERROR", "FATAL"}


def _load(der: bytes) -> object:
    return loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")


def _findings(results: object) -> list[Finding]:
    return [
        (str(found.finding.severity), found.finding.code, result.node.path)
        for result in results  # type: ignore[attr-defined]
        for found in result.finding_descriptions
    ]


def rfc5280_findings(der: bytes) -> list[Finding]:
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return _findings(validator.validate(_load(der).root))  # type: ignore[attr-defined]


def etsi_findings(der: bytes, type_name: str) -> list[Finding]:
    """The ETSI EN 319 412 linter for e.g. NCP_NATURAL_PERSON_CERTIFICATE."""
    certificate_type = etsi_constants.CertificateType[type_name]
    validator = certificate.create_pkix_certificate_validator_container(
        etsi.create_decoding_validators(certificate_type),
        etsi.create_validators(certificate_type),
    )
    results = validator.validate(_load(der).root)  # type: ignore[attr-defined]
    results, _ = finding_filter.filter_results(
        etsi.create_etsi_finding_filters(certificate_type), results
    )
    return _findings(results)


def detected_etsi_type(der: bytes) -> str:
    return str(etsi.determine_certificate_type(_load(der)).name)


def blocking(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding[0] in BLOCKING]


def crl_findings(der: bytes, *, authority_revocation_list: bool = False) -> list[Finding]:
    """RFC 5280 CRL validators plus the CA/B Forum BR ones (reason codes, validity period)."""
    crl_type = crl.CertificateRevocationListType["ARL" if authority_revocation_list else "CRL"]
    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container(
                [cabf_crl.create_validity_period_validator(crl_type)]
            ),
            crl.create_extensions_validator_container([]),
            cabf_crl.CabfCrlReasonCodeAllowlistValidator(crl_type),
        ],
    )
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    return _findings(validator.validate(document.root))


def ocsp_findings(der: bytes) -> list[Finding]:
    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [
            ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
    document = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
    return _findings(validator.validate(document.root))
