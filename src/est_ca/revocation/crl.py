"""CRLs (RFC 5280 section 5): built from the store, signed through the CA's signer, shared by
all instances through the database.

A CRL is version 2 with authorityKeyIdentifier and cRLNumber; an entry carries reasonCode
(omitted for unspecified) and invalidityDate when known. Revoked certificates stay on the CRL
until they expire. The CRL number comes from a counter in the database, so it only grows,
whichever instance signs; the newest CRL is kept there, so every instance serves the same one.
One instance at a time makes a CA's CRL (`Store.exclusive`, an advisory lock on PostgreSQL):
reading the entries, taking the number and publishing happen in that order under the lock, so
a CRL with a higher number never lists less than one with a lower number, and instances that
find a CRL due at the same moment sign it once (the others adopt it).
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator, Sequence

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.ca.authority import key_identifier
from est_ca.ca.precheck import check_crl_draft
from est_ca.ca.signing import SignatureScheme, draft_crl, signed_crl
from est_ca.clock import Clock
from est_ca.revocation.issuers import ServedIssuer
from est_ca.revocation.reasons import RevocationReason
from est_ca.revocation.state import PublishedCrl, RevokedEntry
from est_ca.store.store import Store
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)


# Above this many entries the draft is built in a separate process: building and encoding a
# large CRL holds the GIL for hundreds of milliseconds, which would stall the event loop.
PROCESS_THRESHOLD = 5000
# Entries travel packed: serial (20 octets), revocation time, reason, invalidity date (0: none).
# A 100,000-entry CRL is then one 3.7 MB bytes object, not 100,000 Python objects to pickle,
# keep alive and garbage-collect.
_ENTRY = struct.Struct(">20sqBq")
_REASONS = list(RevocationReason)


def pack_entry(entry: RevokedEntry) -> bytes:
    invalid_since = entry.invalidity_date
    return _ENTRY.pack(
        entry.serial.value.to_bytes(20, "big"),
        int(entry.revoked_at.timestamp()),
        _REASONS.index(entry.reason),
        int(invalid_since.timestamp()) if invalid_since else 0,
    )


def _entries(packed: bytes) -> Iterator[x509.RevokedCertificate]:
    for serial, revoked_at, reason_index, invalid_since in _ENTRY.iter_unpack(packed):
        builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(int.from_bytes(serial, "big"))
            .revocation_date(dt.datetime.fromtimestamp(revoked_at, dt.UTC))
        )
        flag = _REASONS[reason_index].flag
        if flag is not None:
            builder = builder.add_extension(x509.CRLReason(flag), critical=False)
        if invalid_since:
            builder = builder.add_extension(
                x509.InvalidityDate(dt.datetime.fromtimestamp(invalid_since, dt.UTC)),
                critical=False,
            )
        yield builder.build()


def draft_crl_der(
    ca_certificate_der: bytes,
    packed_entries: bytes,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    scheme: SignatureScheme,
) -> bytes:
    """The CRL signed with a throwaway key. Plain arguments only: it may run in another process."""
    ca_certificate = x509.load_der_x509_certificate(ca_certificate_der)
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca_certificate.subject,
        last_update=this_update,
        next_update=next_update,
        # Given whole: add_revoked_certificate copies the list each call (quadratic).
        revoked_certificates=list(_entries(packed_entries)),
        extensions=[
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier(key_identifier(ca_certificate), None, None),
            ),
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
        ],
    )
    return draft_crl(builder, scheme)


def build_crl(
    issuer: ServedIssuer,
    entries: Sequence[RevokedEntry],
    *,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> bytes:
    """The signed CRL, DER, in this thread (blocking; small CRLs, tests, tools)."""
    draft = draft_crl_der(
        issuer.ca.certificate.public_bytes(serialization.Encoding.DER),
        b"".join(pack_entry(entry) for entry in entries),
        number,
        this_update,
        next_update,
        issuer.scheme,
    )
    return checked_signed_crl(draft, issuer, number)


def checked_signed_crl(draft: bytes, issuer: ServedIssuer, number: int) -> bytes:
    """The draft CRL checked (`precheck.check_crl_draft`), then signed: the CA key signs
    nothing unchecked. Blocking: run it on a worker thread."""
    check_crl_draft(draft, issuer.ca, issuer.scheme.hash, number)
    return signed_crl(draft, issuer.ca.signer, issuer.scheme)


class CrlPublisher:
    """Keeps each served CA's current CRL, and makes a new one when it is due."""

    def __init__(
        self, *, store: Store, clock: Clock, workers: Workers, issuers: Sequence[ServedIssuer]
    ) -> None:
        self._store = store
        self._clock = clock
        self._workers = workers
        self._issuers = {issuer.key_id: issuer for issuer in issuers}
        self._current: dict[str, PublishedCrl] = {}

    def current(self, key_id: str) -> PublishedCrl | None:
        return self._current.get(key_id)

    def is_due(self, issuer: ServedIssuer, crl: PublishedCrl | None, revision: int) -> bool:
        """Due when it misses revocations, or is older than the refresh interval."""
        if crl is None or crl.revision < revision:
            return True
        return self._clock.now() >= crl.this_update + issuer.crl_refresh

    async def refresh(self, key_id: str) -> PublishedCrl:
        """Adopt the newest CRL in the database, or make one if that one is due."""
        issuer = self._issuers[key_id]
        adopted = await self._adopt_current(issuer)
        if adopted is not None:
            return adopted
        async with self._store.exclusive(_crl_lock(key_id)):
            # Again under the lock: the instance that held it may have made what was due.
            adopted = await self._adopt_current(issuer)
            if adopted is not None:
                return adopted
            return await self._make(issuer)

    async def _adopt_current(self, issuer: ServedIssuer) -> PublishedCrl | None:
        """The CRL in the database when it is not due (and now this instance's), else None."""
        async with self._store.read() as tx:
            state = await tx.revocation_state(issuer.key_id)
        if state.crl is None or self.is_due(issuer, state.crl, state.revision):
            return None
        self._adopt(issuer.key_id, state.crl)
        return state.crl

    async def regenerate(self, key_id: str) -> PublishedCrl:
        """A new CRL now, due or not (an administrator asked)."""
        async with self._store.exclusive(_crl_lock(key_id)):
            return await self._make(self._issuers[key_id])

    async def _make(self, issuer: ServedIssuer) -> PublishedCrl:
        """Only under the CA's CRL lock: the revision is read before the entries, so the CRL
        lists at least what that revision counted."""
        now = self._clock.now()
        packed = bytearray()
        async with self._store.read() as tx:
            revision = (await tx.revocation_state(issuer.key_id)).revision
        if issuer.lists_subscribers:
            async with self._store.read() as tx:
                async for entry in tx.revoked_entries(issuer.ca.key_id, now):
                    packed += pack_entry(entry)
        count = len(packed) // _ENTRY.size
        async with self._store.write() as tx:
            number = await tx.next_crl_number(issuer.key_id)
        next_update = now + issuer.crl_validity
        arguments = (
            issuer.ca.certificate.public_bytes(serialization.Encoding.DER),
            bytes(packed),
            number,
            now,
            next_update,
            issuer.scheme,
        )
        if count > PROCESS_THRESHOLD:
            draft = await self._workers.run_in_process(draft_crl_der, *arguments)
        else:
            draft = await self._workers.run(draft_crl_der, *arguments)
        der = await self._workers.run(checked_signed_crl, draft, issuer, number)
        crl = PublishedCrl(
            number=number, revision=revision, this_update=now, next_update=next_update, der=der
        )
        async with self._store.write() as tx:
            kept = await tx.publish_crl(issuer.key_id, crl)
            if not kept:  # another instance published a newer one meanwhile: serve that
                newer = (await tx.revocation_state(issuer.key_id)).crl
        if not kept and newer is not None:
            crl = newer
        self._adopt(issuer.key_id, crl)
        _log.info(
            "CRL published",
            ca=issuer.name,
            number=crl.number,
            entries=count,
            next_update=crl.next_update.isoformat(),
        )
        return crl

    def _adopt(self, key_id: str, crl: PublishedCrl) -> None:
        """Serve `crl` unless this instance holds a newer one already."""
        held = self._current.get(key_id)
        if held is None or held.number < crl.number:
            self._current[key_id] = crl


def _crl_lock(key_id: str) -> str:
    return f"crl:{key_id}"
