"""qcStatements (RFC 3739, ETSI EN 319 412-5), which cryptography does not model.

OCES3 certificates carry one statement: id-qcs-pkixQCSyntax-v2 with a semanticsIdentifier
(natural or legal person, ETSI EN 319 412-1) and the URI of the name registration authority.
The schema is declared with asn1crypto; nothing here encodes DER by hand.
"""

from __future__ import annotations

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509

QC_STATEMENTS_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")
PKIX_QC_SYNTAX_V2 = "1.3.6.1.5.5.7.11.2"


class SemanticsInformation(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto's schema attribute
        ("semantics_identifier", core.ObjectIdentifier, {"optional": True}),
        ("name_registration_authorities", asn1_x509.GeneralNames, {"optional": True}),
    ]


class QcStatement(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("statement_id", core.ObjectIdentifier),
        ("statement_info", core.Any, {"optional": True}),
    ]


class QcStatements(core.SequenceOf):  # type: ignore[misc]
    _child_spec = QcStatement


def semantics_statement(semantics_identifier: str, registration_authority: str) -> bytes:
    """DER of QCStatements holding one pkixQCSyntax-v2 statement."""
    information = SemanticsInformation(
        {
            "semantics_identifier": semantics_identifier,
            "name_registration_authorities": [
                asn1_x509.GeneralName(
                    name="uniform_resource_identifier", value=registration_authority
                )
            ],
        }
    )
    statements = QcStatements([{"statement_id": PKIX_QC_SYNTAX_V2, "statement_info": information}])
    return bytes(statements.dump())


def read_semantics(der: bytes) -> list[tuple[str, str | None, list[str]]]:
    """(statement id, semantics identifier, registration authority URIs) of each statement."""
    found: list[tuple[str, str | None, list[str]]] = []
    for statement in QcStatements.load(der):
        statement_id = statement["statement_id"].dotted
        if statement_id != PKIX_QC_SYNTAX_V2 or statement["statement_info"].native is None:
            found.append((statement_id, None, []))
            continue
        information = SemanticsInformation.load(statement["statement_info"].dump())
        identifier = information["semantics_identifier"]
        authorities = information["name_registration_authorities"]
        found.append(
            (
                statement_id,
                identifier.dotted if identifier.native is not None else None,
                [name.native for name in authorities] if authorities.native else [],
            )
        )
    return found
