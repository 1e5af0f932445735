"""Values the revocation side passes around: CRL entries, published CRLs, shared state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from est_ca.ca.certificates import Serial
from est_ca.revocation.reasons import RevocationReason


@dataclasses.dataclass(frozen=True)
class RevokedEntry:
    serial: Serial
    revoked_at: dt.datetime
    reason: RevocationReason
    invalidity_date: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class PublishedCrl:
    """A signed CRL as served: its number, the revision it covers, its times, its DER."""

    number: int
    revision: int
    this_update: dt.datetime
    next_update: dt.datetime
    der: bytes = dataclasses.field(repr=False)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'


@dataclasses.dataclass(frozen=True)
class RevocationState:
    """What the database says about one CA: revocations so far, and its newest CRL."""

    revision: int
    crl: PublishedCrl | None


@dataclasses.dataclass(frozen=True)
class RecordedResponder:
    """A CA's responder certificate as the database keeps it, with where its key is: wrapped
    (revocation/key_wrap.py) or named on the shared token; neither for rows from before the
    cluster shared them (unusable: a new one is issued)."""

    serial: Serial
    not_after: dt.datetime
    der: bytes = dataclasses.field(repr=False)
    wrapped_key: bytes | None = dataclasses.field(default=None, repr=False)
    key_label: str | None = None


@dataclasses.dataclass(frozen=True)
class StoredOcspResponse:
    """A pre-produced OCSP response (one CertID, no nonce) that every instance may serve until
    `refresh_at` while the certificate's status is still `status`."""

    status: str
    der: bytes = dataclasses.field(repr=False)
    this_update: dt.datetime
    next_update: dt.datetime
    refresh_at: dt.datetime
