"""Revocation reasons an administrator may give (RFC 5280 5.3.1), and what each becomes.

"unspecified" is allowed as input but never written: RFC 5280 and the CA/B Forum want the
reasonCode extension omitted instead. certificateHold (and so removeFromCRL) is not offered:
a revoked certificate is never reinstated. caCompromise and aACompromise concern CAs.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography import x509

from est_ca.errors import BadRequest


class RevocationReason(StrEnum):
    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        for reason in cls:
            if text.replace("-", "").replace("_", "").lower() == reason.value.lower():
                return reason
        allowed = ", ".join(reason.value for reason in cls)
        raise BadRequest(
            f"unknown revocation reason {text!r}; use one of {allowed}", field="reason"
        )

    @property
    def flag(self) -> x509.ReasonFlags | None:
        """The reasonCode for CRL entries and OCSP RevokedInfo; None means omit it."""
        return _FLAGS.get(self)


_FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}
