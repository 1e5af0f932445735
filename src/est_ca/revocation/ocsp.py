"""The OCSP responder (RFC 6960), with pre-produced responses for requests without a nonce
(RFC 5019) and nonces as RFC 8954 has them.

- "good" only for certificates we issued and recorded (subscribers', responders', the
  listener's own); "revoked" with time and reason;
  "unknown" for serials we never issued and for issuers we do not serve (RFC 6960 2.2).
- A request is 1 to MAX_CERT_IDS CertIDs (SHA-1, SHA-256, SHA-384 or SHA-512, hashes of that
  length, a serial of at least 0), optionally a nonce of 1..32 octets; anything else (another
  version, an unknown critical extension in the request or in one CertID, duplicate
  extensions, another hash, not DER, trailing bytes) is malformedRequest.
- One response answers every CertID, in the order asked, under one signature. A responder
  is authorized for its own CA's certificates only (RFC 6960 4.2.2.2), so CertIDs naming two
  CAs we serve get `unauthorized`; CertIDs of issuers we do not serve are "unknown" beside
  the served CA's, as alone (RFC 6960 2.2). (`openssl ocsp` then prints every status but
  cannot verify the response: it wants all CertIDs of one issuer.)
- Responses to one CertID without a nonce are cached per CertID (hash algorithm, issuer name
  hash, issuer key hash, serial: a response names the CertID it answers, so nothing less may
  share one) and re-signed at half their validity (at most 4 days after thisUpdate); a
  revocation drops the cache at once. Several CertIDs are answered fresh and never cached.
- Those responses are pre-produced once for the cluster: on a miss of this process's cache,
  the response another instance stored (`ocsp_responses`) is read with the certificate's
  status, in one transaction, and served when it is still fresh and says that status; else
  this instance signs and stores it. Only "good" and "revoked" are stored (bounded by the
  certificates issued; a flood of random serials must not become database writes), and a
  revocation deletes the certificate's stored responses in its own transaction. A hit of
  this process's cache reads nothing from the database.
- Statuses come from an in-memory index, not a database read per request: per CA, the
  revoked serials (time, reason) and the serials known "good", loaded once at start
  (`refresh_index`, called by every publishing round). Any revocation, local or noticed from
  another instance, makes the index stale (`invalidate`): until the next round has re-read
  the revoked serials, statuses are read from the database as before, so "good" is never
  answered from memory for a revocation this process has heard of. A stored response is
  served only when it says what the index says.
- A serial the index does not know (issued by another instance since the load, or never
  issued) is read from the database once; "good" joins the index, "unknown" is remembered for
  NEGATIVE_SECONDS. Those reads are rate-limited (MISS_READS_PER_SECOND per process): a flood
  of random serials is answered "unknown" beyond it, uncached (no-store), rather than
  becoming a database read each.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import time
from collections.abc import Sequence
from typing import Any, Literal

import structlog
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from est_ca.ca.certificates import CertificateStatus, KeyId, Serial
from est_ca.ca.signing import KeyFileSigner, SingleOcspAnswer, ocsp_response
from est_ca.clock import Clock
from est_ca.errors import BadRequest
from est_ca.revocation.issuers import CERT_ID_HASHES
from est_ca.revocation.responders import RESPONDER_SCHEME, ResponderKeeper
from est_ca.revocation.state import StoredOcspResponse
from est_ca.store.store import Store, StoreTx
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)
MAX_NONCE_OCTETS = 32
# CertIDs in one request: enough for a chain or a client's batch, few enough that one request
# cannot buy much signing and database work.
MAX_CERT_IDS = 20
MAX_REFRESH = dt.timedelta(days=4)
CACHE_ENTRIES = 200_000
# Sign responses with a key held in memory on the event loop (see `_sign`).
SIGN_INLINE = True
# Database reads for serials the status index does not know, per process: enough for the
# certificates other instances issue, few enough that random serials cannot flood the database.
MISS_READS_PER_SECOND = 50.0
MISS_READ_BURST = 200.0
# How long a serial read and found unknown stays so without another read, and how many.
NEGATIVE_SECONDS = 10.0
NEGATIVE_ENTRIES = 100_000
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - RFC 5019 CertIDs are SHA-1; it only names, never signs
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


# What asn1crypto raises on damaged input, seen by fuzzing (tests/revocation/test_ocsp.py): it
# is not hardened against hostile bytes, so every decoding failure is a malformed request.
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError)


class MalformedOcspRequest(BadRequest):
    """Answered with the OCSP status malformedRequest, not an HTTP error."""


@dataclasses.dataclass(frozen=True)
class CertId:
    """What a SingleResponse answers: a response names the exact CertID it was asked."""

    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@dataclasses.dataclass(frozen=True)
class OcspQuery:
    cert_ids: tuple[CertId, ...]
    nonce: bytes | None


@dataclasses.dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSP response and what HTTP caching may do with it."""

    der: bytes = dataclasses.field(repr=False)
    cacheable: bool
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    refresh_at: dt.datetime | None = None
    # What it says, for the metrics: each CertID's status ("good", "revoked", "unknown"), or
    # the response status when it answers none ("malformed_request", "unauthorized").
    statuses: tuple[str, ...] = ()

    @functools.cached_property
    def etag(self) -> str:
        """(Cached: a pre-produced answer is served many times; hashing it each time was 6 %
        of an OCSP GET's CPU.)"""
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'


def parse_request(der: bytes) -> OcspQuery:
    """1 to MAX_CERT_IDS CertIDs and at most a nonce; every other shape is malformedRequest."""
    try:
        request = asn1_ocsp.OCSPRequest.load(der, strict=True)
        fields = request.native  # decodes everything now: damage shows here, not later
        canonical = der if _strict_der(der, fields) else request.dump(force=True)
    except _DECODE_ERRORS as exc:
        raise MalformedOcspRequest(f"not an OCSP request: {exc}") from exc
    if canonical != der:
        raise MalformedOcspRequest("the request is not DER")
    tbs = fields["tbs_request"]
    if tbs["version"] != "v1":
        raise MalformedOcspRequest(f"OCSP request version {tbs['version']} is not v1")
    entries = tbs["request_list"]
    if not 1 <= len(entries) <= MAX_CERT_IDS:
        raise MalformedOcspRequest(
            f"a request asks about 1 to {MAX_CERT_IDS} certificates, not {len(entries)}"
        )
    extensions = _extensions(tbs["request_extensions"], understood={"nonce"})
    nonce = extensions.get("nonce")
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
        raise MalformedOcspRequest(
            f"a nonce has 1 to {MAX_NONCE_OCTETS} octets (RFC 8954), not {len(nonce)}"
        )
    cert_ids = []
    for entry in entries:
        _extensions(entry["single_request_extensions"], understood=set())
        cert_ids.append(_cert_id(entry["req_cert"]))
    return OcspQuery(cert_ids=tuple(cert_ids), nonce=nonce)


def _strict_der(der: bytes, fields: dict[str, Any]) -> bool:
    """True when cryptography's parser (strict DER, in Rust) reads the request: then
    asn1crypto's re-encoding, 90 % of parsing a request, need not be compared. Only for the
    plain shape it checks all of: one CertID, no requestorName, signature or per-CertID
    extensions (kept as raw bytes there), and a nonce whose own encoding is DER. Anything
    else is compared the slow way, as before."""
    tbs = fields["tbs_request"]
    if (
        fields["optional_signature"] is not None
        or tbs["requestor_name"] is not None
        or len(tbs["request_list"]) != 1
        or tbs["request_list"][0]["single_request_extensions"] is not None
    ):
        return False
    try:
        extensions = ocsp.load_der_ocsp_request(der).extensions
    except Exception:  # any refusal only means: check the slow way
        return False
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            sent = next(
                (e["extn_value"] for e in tbs["request_extensions"] if e["extn_id"] == "nonce"),
                None,
            )
            # cryptography unwraps the nonce's OCTET STRING when it is DER and keeps the raw
            # value otherwise: only the unwrapped value equals what asn1crypto read.
            if sent is None or extension.value.nonce != sent:
                return False
    return True


def _cert_id(fields: dict[str, Any]) -> CertId:
    hash_name = fields["hash_algorithm"]["algorithm"]
    if hash_name not in CERT_ID_HASHES:
        raise MalformedOcspRequest(f"the CertID hash {hash_name} is not supported")
    digest_size = _HASHES[hash_name].digest_size
    cert_id = CertId(
        hash_name=hash_name,
        issuer_name_hash=fields["issuer_name_hash"],
        issuer_key_hash=fields["issuer_key_hash"],
        serial_number=fields["serial_number"],
    )
    if not len(cert_id.issuer_name_hash) == len(cert_id.issuer_key_hash) == digest_size:
        raise MalformedOcspRequest(f"a {hash_name} CertID has hashes of {digest_size} octets")
    if cert_id.serial_number < 0:
        raise MalformedOcspRequest("a CertID's serial number is negative")
    return cert_id


def _extensions(extensions: list[dict[str, Any]] | None, understood: set[str]) -> dict[str, Any]:
    """The understood extensions' values; an unknown one is ignored unless it is critical
    (RFC 6960 4.4), and none may appear twice."""
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for extension in extensions or ():
        name = extension["extn_id"]
        if name in seen:
            raise MalformedOcspRequest(f"extension {name} appears twice")
        seen.add(name)
        if name in understood:
            values[name] = extension["extn_value"]
        elif extension["critical"]:
            raise MalformedOcspRequest(f"unknown critical extension {name} in the request")
    return values


def malformed_response() -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    ).public_bytes(serialization.Encoding.DER)


def unauthorized_response() -> bytes:
    """For CertIDs of several CAs we serve: no one responder may answer for all of them."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    ).public_bytes(serialization.Encoding.DER)


_STATUS_NAMES: dict[ocsp.OCSPCertStatus, Literal["good", "revoked", "unknown"]] = {
    ocsp.OCSPCertStatus.GOOD: "good",
    ocsp.OCSPCertStatus.REVOKED: "revoked",
    ocsp.OCSPCertStatus.UNKNOWN: "unknown",
}


@dataclasses.dataclass(frozen=True)
class _Status:
    status: ocsp.OCSPCertStatus
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None

    @property
    def name(self) -> Literal["good", "revoked", "unknown"]:
        return _STATUS_NAMES[self.status]

    @property
    def shared_key(self) -> str | None:
        """What a stored response must say to be served for this status: everything the
        SingleResponse says of it. None for "unknown", which is never stored."""
        if self.status is ocsp.OCSPCertStatus.UNKNOWN:
            return None
        if self.revoked_at is None:
            return self.name
        reason = self.reason.value if self.reason is not None else "-"
        return f"{self.name} {self.revoked_at.isoformat()} {reason}"


@dataclasses.dataclass(frozen=True)
class _Shared:
    """Where a pre-produced response is stored for the cluster, and what is stored there."""

    issuer_key_id: str
    serial: Serial
    hash_name: str
    stored: StoredOcspResponse | None


_UNKNOWN = _Status(ocsp.OCSPCertStatus.UNKNOWN)
_GOOD = _Status(ocsp.OCSPCertStatus.GOOD)


class OcspResponder:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        workers: Workers,
        keepers: Sequence[ResponderKeeper],
        validity: dt.timedelta,
    ) -> None:
        self._store = store
        self._clock = clock
        self._workers = workers
        self._keepers = list(keepers)
        self._validity = validity
        self._refresh_after = min(validity / 2, MAX_REFRESH)
        self._cache: collections.OrderedDict[CertId, OcspAnswer] = collections.OrderedDict()
        # Bumped by every invalidation: an answer computed before it is never cached after it.
        self._generation = 0
        self._pending: dict[tuple[CertId, int], asyncio.Future[OcspAnswer]] = {}
        # Requests without a nonce, as parsed (what they ask never changes).
        self._queries: dict[bytes, OcspQuery] = {}
        # The status index (see the module's docstring), per CA key id.
        self._good: dict[str, set[int]] = {}
        self._revoked: dict[str, dict[int, _Status]] = {}
        self._index_loaded = False
        self._index_fresh = False
        self._negative: collections.OrderedDict[tuple[str, int], float] = collections.OrderedDict()
        self._miss_budget = MISS_READ_BURST
        self._miss_budget_at = time.monotonic()

    def invalidate(self) -> None:
        """Forget every pre-produced response and trust the status index no more until it has
        re-read the revoked serials (a revocation happened somewhere)."""
        self._generation += 1
        self._cache.clear()
        self._index_fresh = False

    async def refresh_index(self) -> None:
        """Load the status index (all of it the first time, then the revoked serials after an
        invalidation); it is trusted only if no revocation was heard of while reading."""
        if self._index_fresh:
            return
        generation = self._generation
        good: dict[str, set[int]] = {}
        revoked: dict[str, dict[int, _Status]] = {}
        async with self._store.read() as tx:
            for keeper in self._keepers:
                issuer = keeper.issuer
                key_id = issuer.key_id
                revoked[key_id] = {}
                known = self._good.get(key_id, set()) if self._index_loaded else set()
                good[key_id] = known
                if not issuer.lists_subscribers:
                    # The root: it issued the issuing CA(s) we serve and its own responders.
                    known.update(
                        k.issuer.ca.certificate.serial_number
                        for k in self._keepers
                        if k.issuer.lists_subscribers
                    )
                    known.update(await tx.own_serials(key_id, service=False))
                    continue
                if not self._index_loaded:
                    known.update(await tx.own_serials(key_id))
                rows = tx.certificate_statuses(KeyId(key_id), revoked_only=self._index_loaded)
                async for serial, status, revoked_at, reason in rows:
                    if status == CertificateStatus.REVOKED:
                        assert revoked_at is not None
                        revoked[key_id][serial] = _Status(
                            ocsp.OCSPCertStatus.REVOKED, revoked_at, reason.flag
                        )
                    elif status == CertificateStatus.ISSUED:
                        known.add(serial)
        self._good, self._revoked = good, revoked
        self._index_loaded = True
        self._index_fresh = generation == self._generation

    async def answer(self, request_der: bytes) -> OcspAnswer:
        query = self._queries.get(request_der)
        if query is None:
            try:
                query = parse_request(request_der)
            except MalformedOcspRequest:
                return OcspAnswer(
                    der=malformed_response(), cacheable=False, statuses=("malformed_request",)
                )
            if query.nonce is None:
                # Relying parties repeat the same bytes (RFC 5019 GETs): parse them once.
                if len(self._queries) >= CACHE_ENTRIES:
                    self._queries.clear()
                self._queries[request_der] = query
        keepers = [self._keeper_for(cert_id) for cert_id in query.cert_ids]
        served = {keeper for keeper in keepers if keeper is not None}
        if len(served) > 1:
            return OcspAnswer(
                der=unauthorized_response(), cacheable=False, statuses=("unauthorized",)
            )
        # The served CA's responder; for issuers we do not serve only, the first ("unknown").
        responding = next(iter(served), self._keepers[0])
        cacheable = query.nonce is None and len(query.cert_ids) == 1
        key = query.cert_ids[0]
        if cacheable:
            cached = self._cache.get(key)
            if cached is not None and cached.refresh_at and self._clock.now() < cached.refresh_at:
                self._cache.move_to_end(key)
                return cached
        generation = self._generation
        if not cacheable:
            return await self._produce(keepers, responding, query, generation)
        # Requests for one CertID arriving together (a burst, before the first is cached) wait
        # for one answer: one status read, one signature, one write. Only within a generation:
        # what was read before a revocation is never handed to a request that came after it.
        pending = self._pending.get((key, generation))
        if pending is None:
            pending = asyncio.ensure_future(self._produce(keepers, responding, query, generation))
            self._pending[(key, generation)] = pending
            pending.add_done_callback(functools.partial(self._produced, (key, generation)))
        return await asyncio.shield(pending)

    def _produced(self, pending_key: tuple[CertId, int], done: asyncio.Future[OcspAnswer]) -> None:
        self._pending.pop(pending_key, None)
        if not done.cancelled():
            done.exception()  # retrieved: the waiters have it (or there were none)

    async def _produce(
        self,
        keepers: Sequence[ResponderKeeper | None],
        responding: ResponderKeeper,
        query: OcspQuery,
        generation: int,
    ) -> OcspAnswer:
        """The answer read, signed or taken from the cluster's store, and cached when it may
        be (one CertID, no nonce, no revocation seen meanwhile)."""
        cacheable = query.nonce is None and len(query.cert_ids) == 1
        statuses, shared, certain = await self._statuses(
            keepers, query.cert_ids, cacheable=cacheable
        )
        cacheable = cacheable and certain
        answer = self._stored_answer(shared, statuses[0]) if shared is not None else None
        if answer is None:
            answer = await self._sign(responding, query, statuses, cacheable)
            if shared is not None and statuses[0].shared_key is not None:
                answer = await self._keep(shared, statuses[0], answer)
        key = query.cert_ids[0]
        if cacheable and generation == self._generation:
            self._cache[key] = answer
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return answer

    def _keeper_for(self, cert_id: CertId) -> ResponderKeeper | None:
        for keeper in self._keepers:
            hashes_ = keeper.issuer.cert_id_hashes.get(cert_id.hash_name)
            if hashes_ == (cert_id.issuer_name_hash, cert_id.issuer_key_hash):
                return keeper
        return None

    async def _statuses(
        self,
        keepers: Sequence[ResponderKeeper | None],
        cert_ids: Sequence[CertId],
        *,
        cacheable: bool,
    ) -> tuple[list[_Status], _Shared | None, bool]:
        """Each CertID's status, from the index where it knows; the others all read in one
        transaction (one per CertID made 20 CertIDs cost 20 transactions), with, for a
        cacheable request about a served CA, the response stored for the cluster. Last: False
        when a status is a guess ("unknown" past the miss-read budget): not to be cached."""
        known = [self._indexed(k, c.serial_number) for k, c in zip(keepers, cert_ids, strict=True)]
        misses = [i for i, status in enumerate(known) if status is None]
        if misses and self._index_fresh and not self._spend_miss_reads(len(misses)):
            return [status or _UNKNOWN for status in known], None, False
        first = known[0]
        wants_stored = (
            cacheable and keepers[0] is not None and (first is None or first.shared_key is not None)
        )
        if not misses and not wants_stored:
            return [status for status in known if status is not None], None, True
        async with self._store.read() as tx:
            for i in misses:
                status = await self._status(tx, keepers[i], cert_ids[i].serial_number)
                self._learn(keepers[i], cert_ids[i].serial_number, status)
                known[i] = status
            statuses = [status for status in known if status is not None]
            shared = None
            if wants_stored and statuses[0].shared_key is not None:
                assert keepers[0] is not None
                key_id, cert_id = keepers[0].issuer.key_id, cert_ids[0]
                serial = Serial(cert_id.serial_number)  # valid: its status is not "unknown"
                stored = await tx.ocsp_response(key_id, serial, cert_id.hash_name)
                shared = _Shared(key_id, serial, cert_id.hash_name, stored)
            return statuses, shared, True

    def _indexed(self, keeper: ResponderKeeper | None, serial_number: int) -> _Status | None:
        """The status the index knows, or None: it must be read."""
        if keeper is None:
            return _UNKNOWN  # an issuer we do not serve
        if not self._index_fresh:
            return None
        key_id = keeper.issuer.key_id
        revoked = self._revoked[key_id].get(serial_number)
        if revoked is not None:
            return revoked
        if serial_number in self._good[key_id]:
            return _GOOD
        expires = self._negative.get((key_id, serial_number))
        if expires is not None:
            if time.monotonic() < expires:
                return _UNKNOWN
            del self._negative[(key_id, serial_number)]
        return None

    def _learn(self, keeper: ResponderKeeper | None, serial_number: int, status: _Status) -> None:
        """What a miss read found: "good" joins the index for good (a certificate only ever
        becomes revoked, and revoked serials are looked up first); "unknown" for a while."""
        if keeper is None or not self._index_loaded:
            return
        key_id = keeper.issuer.key_id
        if status is _GOOD:
            self._good[key_id].add(serial_number)
        elif status.status is ocsp.OCSPCertStatus.REVOKED:
            self._revoked[key_id][serial_number] = status
        else:
            self._negative[(key_id, serial_number)] = time.monotonic() + NEGATIVE_SECONDS
            if len(self._negative) > NEGATIVE_ENTRIES:
                self._negative.popitem(last=False)

    def _spend_miss_reads(self, count: int) -> bool:
        """A token bucket: MISS_READS_PER_SECOND, bursts of MISS_READ_BURST."""
        now = time.monotonic()
        self._miss_budget = min(
            MISS_READ_BURST,
            self._miss_budget + (now - self._miss_budget_at) * MISS_READS_PER_SECOND,
        )
        self._miss_budget_at = now
        if self._miss_budget < count:
            return False
        self._miss_budget -= count
        return True

    def _stored_answer(self, shared: _Shared, status: _Status) -> OcspAnswer | None:
        """The cluster's stored response, when it is fresh and says what the status is now."""
        stored = shared.stored
        if stored is None or stored.status != status.shared_key:
            return None
        if self._clock.now() >= stored.refresh_at:
            return None
        return _answer_of(stored, status)

    async def _keep(self, shared: _Shared, status: _Status, signed: OcspAnswer) -> OcspAnswer:
        """Store what this instance signed for the cluster, unless another instance stored a
        fresh one meanwhile: then that one is served, so every instance answers alike."""
        assert status.shared_key is not None
        assert signed.this_update is not None
        assert signed.next_update is not None
        assert signed.refresh_at is not None
        mine = StoredOcspResponse(
            status=status.shared_key,
            der=signed.der,
            this_update=signed.this_update,
            next_update=signed.next_update,
            refresh_at=signed.refresh_at,
        )
        try:
            async with self._store.write() as tx:
                kept = await tx.keep_ocsp_response(
                    shared.issuer_key_id, shared.serial, shared.hash_name, mine, self._clock.now()
                )
        except Exception:  # storing spares the others a signature; this answer stands anyway
            _log.warning("OCSP response not stored for the cluster", exc_info=True)
            return signed
        if kept.status != status.shared_key:
            # Another status was stored meanwhile (a revocation raced this answer): what this
            # instance read stands for it, as before; the status check keeps the others right.
            return signed
        return _answer_of(kept, status)

    async def _status(
        self, tx: StoreTx, keeper: ResponderKeeper | None, serial_number: int
    ) -> _Status:
        if keeper is None:
            return _UNKNOWN  # an issuer we do not serve
        try:
            serial = Serial(serial_number)
        except BadRequest:
            return _UNKNOWN
        issuer = keeper.issuer
        if issuer.lists_subscribers:
            record = await tx.get_certificate(issuer.ca.key_id, serial)
            if await tx.is_ocsp_responder(issuer.key_id, serial):
                return _GOOD
            if record is None and await tx.is_service_certificate(issuer.key_id, serial):
                return _GOOD  # the listener's own (ca/server_tls.py)
            if record is None or record.status in (
                CertificateStatus.RESERVED,
                CertificateStatus.ABANDONED,
            ):
                return _UNKNOWN
            if record.status is CertificateStatus.REVOKED:
                assert record.revoked_at is not None
                assert record.revocation_reason is not None
                return _Status(
                    ocsp.OCSPCertStatus.REVOKED,
                    record.revoked_at,
                    record.revocation_reason.flag,
                )
            return _GOOD
        # The root: it issued the issuing CA(s) we serve and its own responders.
        issued_by_root = {
            k.issuer.ca.certificate.serial_number
            for k in self._keepers
            if k.issuer.lists_subscribers
        }
        if serial_number in issued_by_root:
            return _GOOD
        if await tx.is_ocsp_responder(issuer.key_id, serial):
            return _GOOD
        return _UNKNOWN

    async def _sign(
        self,
        keeper: ResponderKeeper,
        query: OcspQuery,
        statuses: Sequence[_Status],
        cacheable: bool,
    ) -> OcspAnswer:
        credential = keeper.current
        now = self._clock.now()
        next_update = min(now + self._validity, credential.not_after)
        singles = [
            SingleOcspAnswer(
                hash_name=cert_id.hash_name,
                issuer_name_hash=cert_id.issuer_name_hash,
                issuer_key_hash=cert_id.issuer_key_hash,
                serial_number=cert_id.serial_number,
                status=status.name,
                this_update=now,
                next_update=next_update,
                revoked_at=status.revoked_at,
                reason=status.reason,
            )
            for cert_id, status in zip(query.cert_ids, statuses, strict=True)
        ]
        arguments = (
            singles,
            credential.certificate,
            credential.signer,
            RESPONDER_SCHEME,
            query.nonce,
        )
        if SIGN_INLINE and isinstance(credential.signer, KeyFileSigner):
            # A software P-256 signature is cheaper than handing it to a thread and back;
            # a token's key (PKCS#11 blocks) still goes to the workers.
            der = ocsp_response(*arguments)
        else:
            der = await self._workers.run(ocsp_response, *arguments)
        return OcspAnswer(
            der=der,
            cacheable=cacheable,
            this_update=now,
            next_update=next_update,
            refresh_at=now + self._refresh_after,
            statuses=tuple(status.name for status in statuses),
        )


def _answer_of(stored: StoredOcspResponse, status: _Status) -> OcspAnswer:
    return OcspAnswer(
        der=stored.der,
        cacheable=True,
        this_update=stored.this_update,
        next_update=stored.next_update,
        refresh_at=stored.refresh_at,
        statuses=(status.name,),
    )
