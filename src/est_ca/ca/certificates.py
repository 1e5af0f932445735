"""Certificate records: what the store knows about every serial this CA has reserved or issued."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import string
import uuid
from enum import StrEnum

from est_ca.errors import BadRequest, Conflict
from est_ca.revocation.reasons import RevocationReason

SERIAL_BYTES = 20


class CertificateStatus(StrEnum):
    # Serial allocated and intent recorded; not (yet) signed. Never handed to anyone.
    RESERVED = "reserved"
    ISSUED = "issued"
    REVOKED = "revoked"
    # A reservation whose issuance stopped (check failed, process died): the serial stays burnt.
    ABANDONED = "abandoned"


_HEX_DIGITS = frozenset(string.hexdigits.lower())


@dataclasses.dataclass(frozen=True, order=True)
class Serial:
    """A certificate serial number: positive, at most 20 octets (RFC 5280 4.1.2.2).

    Serials arrive from outside (a command line, a URL, a presented certificate, an OCSP
    request), so a refused one is a BadRequest, which every protocol layer already answers.
    """

    value: int

    def __post_init__(self) -> None:
        if self.value <= 0 or self.value >= 1 << (8 * SERIAL_BYTES - 1):
            raise BadRequest("a serial must be positive and fit 20 octets", field="serial")

    @classmethod
    def random(cls) -> Serial:
        """20 random octets whose first is 0x01..0x7f: positive, and always 20 octets in DER."""
        while True:
            candidate = secrets.token_bytes(SERIAL_BYTES)
            if 0 < candidate[0] < 0x80:
                return cls(int.from_bytes(candidate, "big"))

    @classmethod
    def from_hex(cls, text: str) -> Serial:
        """A serial as people and tools write it: hex digits, optionally 0x and colons."""
        cleaned = text.strip().lower().replace(":", "")
        cleaned = cleaned.removeprefix("0x")
        if not cleaned or not set(cleaned) <= _HEX_DIGITS:
            raise BadRequest(
                f"not a certificate serial: {text[:64]!r}; give it in hexadecimal", field="serial"
            )
        return cls(int(cleaned, 16))

    @property
    def hex(self) -> str:
        """Lower-case hex, 40 digits for our own serials; the store's key."""
        return format(self.value, "x").rjust(2 * SERIAL_BYTES, "0")

    def __str__(self) -> str:
        return self.hex


@dataclasses.dataclass(frozen=True, order=True)
class KeyId:
    """A CA's key identifier in lower-case hex: the SHA-1 of its subjectPublicKey bits, as its
    SubjectKeyIdentifier, its certificates' AuthorityKeyIdentifier and an OCSP CertID's SHA-1
    issuerKeyHash carry it. It names the issuer of every certificate the store records, since a
    serial is unique per issuer only (RFC 5280 4.1.2.2).

    Key ids arrive from outside too (a command line, an admin API query), so a refused one is a
    BadRequest.
    """

    hex: str

    def __post_init__(self) -> None:
        if not 2 <= len(self.hex) <= 128 or len(self.hex) % 2 or not set(self.hex) <= _HEX_DIGITS:
            raise BadRequest(
                f"not a key identifier: {self.hex[:64]!r}; give it in lower-case hexadecimal",
                field="issuer",
            )

    @classmethod
    def parse(cls, text: str) -> KeyId:
        """A key id as tools print it: hex digits in either case, optionally with colons."""
        return cls(text.strip().lower().replace(":", ""))

    @classmethod
    def of(cls, digest: bytes) -> KeyId:
        return cls(digest.hex())

    def __str__(self) -> str:
        return self.hex


def several_issuers(serial: Serial, records: list[CertificateRecord]) -> Conflict:
    """A serial given alone that several CAs issued: the administrator names the CA."""
    issuers = ", ".join(record.issuer_key_id.hex for record in records)
    return Conflict(
        f"serial {serial} names certificates of {len(records)} CAs ({issuers}); say which by "
        "the issuer's key id (`--issuer`, or `?issuer=` in the admin API)"
    )


@dataclasses.dataclass(frozen=True)
class CertificateRecord:
    serial: Serial
    # The CA that issued (or reserved) it: (issuer_key_id, serial) is the certificate's key.
    issuer_key_id: KeyId
    identity_id: uuid.UUID
    order_id: uuid.UUID | None
    renewal_of: Serial | None
    profile: str
    status: CertificateStatus
    public_key_sha256: str
    created_at: dt.datetime
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    issued_at: dt.datetime | None = None
    der: bytes | None = dataclasses.field(default=None, repr=False)
    revoked_at: dt.datetime | None = None
    # Set exactly when the certificate is revoked (UNSPECIFIED when no reason was given).
    revocation_reason: RevocationReason | None = None
    invalidity_date: dt.datetime | None = None

    def is_valid_at(self, now: dt.datetime) -> bool:
        return (
            self.status is CertificateStatus.ISSUED
            and self.not_before is not None
            and self.not_after is not None
            and self.not_before <= now <= self.not_after
        )


@dataclasses.dataclass(frozen=True)
class KeyBinding:
    """A public key we were asked to certify, and the one identity allowed to use it."""

    public_key_sha256: str
    identity_id: uuid.UUID
    bound_at: dt.datetime
    compromised_at: dt.datetime | None = None

    @property
    def is_compromised(self) -> bool:
        return self.compromised_at is not None
