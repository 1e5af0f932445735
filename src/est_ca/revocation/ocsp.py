"""The OCSP responder (RFC 6960), with pre-produced responses for requests without a nonce
(RFC 5019) and nonces as RFC 8954 has them.

- "good" only for certificates we issued and recorded; "revoked" with time and reason;
  "unknown" for serials we never issued and for issuers we do not serve (RFC 6960 2.2).
- A request is one CertID (SHA-1, SHA-256, SHA-384 or SHA-512), optionally a nonce of 1..32
  octets; anything else (several CertIDs, another version, an unknown critical extension,
  another hash, trailing bytes) is malformedRequest.
- Responses without a nonce are cached per CertID (hash algorithm, issuer name hash, issuer
  key hash, serial: a response names the CertID it answers, so nothing less may share one) and
  re-signed at half their validity (at most 4 days after thisUpdate); a revocation drops the
  cache at once.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.ca.signing import signed_ocsp_response
from est_ca.clock import Clock
from est_ca.errors import BadRequest
from est_ca.revocation.issuers import CERT_ID_HASHES
from est_ca.revocation.responders import RESPONDER_SCHEME, ResponderKeeper
from est_ca.store.store import Store
from est_ca.workers import Workers

MAX_NONCE_OCTETS = 32
MAX_REFRESH = dt.timedelta(days=4)
CACHE_ENTRIES = 200_000
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - RFC 5019 CertIDs are SHA-1; it only names, never signs
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


# (hash algorithm, issuer name hash, issuer key hash, serial): what a response answers.
CertId = tuple[str, bytes, bytes, int]


class MalformedOcspRequest(BadRequest):
    """Answered with the OCSP status malformedRequest, not an HTTP error."""


@dataclasses.dataclass(frozen=True)
class OcspQuery:
    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    nonce: bytes | None

    @property
    def cert_id(self) -> CertId:
        return (self.hash_name, self.issuer_name_hash, self.issuer_key_hash, self.serial_number)


@dataclasses.dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSP response and what HTTP caching may do with it."""

    der: bytes = dataclasses.field(repr=False)
    cacheable: bool
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    refresh_at: dt.datetime | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'


def parse_request(der: bytes) -> OcspQuery:
    """One CertID and at most a nonce; every other shape is malformedRequest."""
    try:
        request = ocsp.load_der_ocsp_request(der)
    except (ValueError, NotImplementedError) as exc:  # NotImplemented: several CertIDs
        raise MalformedOcspRequest(f"not a single-certificate OCSP request: {exc}") from exc
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise MalformedOcspRequest("the CertID hash algorithm is not supported") from exc
    if algorithm.name not in CERT_ID_HASHES:
        raise MalformedOcspRequest(f"the CertID hash {algorithm.name} is not supported")
    try:
        extensions = request.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise MalformedOcspRequest(f"the request's extensions are malformed: {exc}") from exc
    nonce: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 1 <= len(nonce) <= MAX_NONCE_OCTETS:
                raise MalformedOcspRequest(
                    f"a nonce has 1 to {MAX_NONCE_OCTETS} octets (RFC 8954), not {len(nonce)}"
                )
        elif extension.critical:
            raise MalformedOcspRequest(
                f"unknown critical extension {extension.oid.dotted_string} in the request"
            )
    return OcspQuery(
        hash_name=algorithm.name,
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number,
        nonce=nonce,
    )


def malformed_response() -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    ).public_bytes(serialization.Encoding.DER)


@dataclasses.dataclass(frozen=True)
class _Status:
    status: ocsp.OCSPCertStatus
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


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

    def invalidate(self) -> None:
        """Forget every pre-produced response (a revocation happened somewhere)."""
        self._generation += 1
        self._cache.clear()

    async def answer(self, request_der: bytes) -> OcspAnswer:
        try:
            query = parse_request(request_der)
        except MalformedOcspRequest:
            return OcspAnswer(der=malformed_response(), cacheable=False)
        keeper = self._keeper_for(query)
        key = query.cert_id
        if query.nonce is None:
            cached = self._cache.get(key)
            if cached is not None and cached.refresh_at and self._clock.now() < cached.refresh_at:
                self._cache.move_to_end(key)
                return cached
        generation = self._generation
        status = await self._status(keeper, query.serial_number)
        answer = await self._sign(keeper or self._keepers[0], query, status)
        if query.nonce is None and generation == self._generation:
            self._cache[key] = answer
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return answer

    def _keeper_for(self, query: OcspQuery) -> ResponderKeeper | None:
        for keeper in self._keepers:
            hashes_ = keeper.issuer.cert_id_hashes.get(query.hash_name)
            if hashes_ == (query.issuer_name_hash, query.issuer_key_hash):
                return keeper
        return None

    async def _status(self, keeper: ResponderKeeper | None, serial_number: int) -> _Status:
        if keeper is None:
            return _UNKNOWN  # an issuer we do not serve
        try:
            serial = Serial(serial_number)
        except BadRequest:
            return _UNKNOWN
        issuer = keeper.issuer
        if issuer.lists_subscribers:
            async with self._store.read() as tx:
                record = await tx.get_certificate(issuer.ca.key_id, serial)
                is_responder = await tx.is_ocsp_responder(issuer.key_id, serial)
            if is_responder:
                return _GOOD
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
        async with self._store.read() as tx:
            if await tx.is_ocsp_responder(issuer.key_id, serial):
                return _GOOD
        return _UNKNOWN

    async def _sign(self, keeper: ResponderKeeper, query: OcspQuery, status: _Status) -> OcspAnswer:
        credential = keeper.current
        now = self._clock.now()
        next_update = min(now + self._validity, credential.not_after)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=query.issuer_name_hash,
            issuer_key_hash=query.issuer_key_hash,
            serial_number=query.serial_number,
            algorithm=_HASHES[query.hash_name],
            cert_status=status.status,
            this_update=now,
            next_update=next_update,
            revocation_time=status.revoked_at,
            revocation_reason=status.reason,
        )
        if query.nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
        der = await self._workers.run(
            signed_ocsp_response,
            builder,
            credential.certificate,
            credential.signer,
            RESPONDER_SCHEME,
        )
        return OcspAnswer(
            der=der,
            cacheable=query.nonce is None,
            this_update=now,
            next_update=next_update,
            refresh_at=now + self._refresh_after,
        )
