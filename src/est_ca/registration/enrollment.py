"""The registration authority: who is enrolling, what entitles them, and issuing in two steps.

Three ways in, one way out:
- `enroll_with_order`: Basic credentials (order reference : one-time code) consume that order;
- `enroll_with_certificate`: a valid client certificate of ours consumes a pending order of the
  same identity;
- `reenroll`: a valid client certificate renews itself (same subject and SAN, new key allowed).

Issuance is two transactions around one signature. First the serial is allocated and recorded
as a reservation together with the claim on the order (or the renewal's check of the current
certificate). Then the certificate is built, checked and signed off the event loop. Then, in
one transaction, the certificate is recorded as issued and the order consumed. The certificate
leaves the service only after that commit; a crash in between leaves a reservation that the
recovery sweep abandons and an order that becomes usable again, never a lost certificate.

Every refusal is an audit event with its reason; no secret is in any of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.ca.authority import public_key_der
from est_ca.ca.building import IssuanceRequest
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, Serial
from est_ca.ca.csr_policy import CheckedCsr, check_csr, parse_csr
from est_ca.ca.issuer import Issuer
from est_ca.ca.profiles import Profile, ProfileCatalogue
from est_ca.clock import Clock
from est_ca.errors import (
    BadRequest,
    CertificateNotUsable,
    EstCaError,
    IssuanceFailed,
    NoPendingOrder,
    NotEntitled,
    OrderLocked,
    Unauthenticated,
)
from est_ca.registration import codes
from est_ca.registration.codes import CodeHasher
from est_ca.registration.identities import Identity
from est_ca.registration.orders import Order, OrderState
from est_ca.registration.registry import OrderPolicy
from est_ca.store.store import Store, StoreTx
from est_ca.throttle import Admission, FailureThrottle
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)
T = TypeVar("T")
WRONG_CREDENTIALS = "unknown order reference or wrong one-time code"


@dataclasses.dataclass(frozen=True)
class ClientCertificate:
    """A TLS client certificate that is ours, issued, unexpired and unrevoked right now."""

    certificate: x509.Certificate
    record: CertificateRecord
    identity: Identity


class RegistrationAuthority:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        hasher: CodeHasher,
        workers: Workers,
        profiles: ProfileCatalogue,
        issuer: Issuer,
        order_policy: OrderPolicy,
        throttle: FailureThrottle,
        admission: Admission,
    ) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher
        self._workers = workers
        self._profiles = profiles
        self._issuer = issuer
        self._order_policy = order_policy
        self._throttle = throttle
        self._admission = admission
        # Keys of the CA and its chain: a subscriber must never get a certificate for them.
        self._ca_keys = frozenset(
            public_key_der(certificate.public_key()) for certificate in issuer.ca.certificates
        )

    # -- the three ways in ------------------------------------------------------------------

    async def enroll_with_order(
        self, reference: str, one_time_code: str, csr_der: bytes, *, source: str | None
    ) -> x509.Certificate:
        actor = order_actor(reference, source)

        async def attempt() -> x509.Certificate:
            order, identity = await self._authenticate_order(reference, one_time_code, actor)
            profile = self._profile(order.profile)
            checked = await self._check_csr(csr_der, profile, identity)
            return await self._issue(
                actor=actor, identity=identity, profile=profile, csr=checked, order=order
            )

        return await self._admitted("enroll", actor, attempt)

    async def enroll_with_certificate(
        self, client_certificate_der: bytes, csr_der: bytes, *, source: str | None
    ) -> x509.Certificate:
        actor = certificate_actor(client_certificate_der, source)

        async def attempt() -> x509.Certificate:
            client = await self.authenticate_certificate(client_certificate_der)
            async with self._store.read() as tx:
                order = await tx.find_claimable_order(client.identity.id, self._clock.now())
            if order is None:
                raise NoPendingOrder(
                    "no pending order for this identity: an administrator must place one "
                    "(or use simplereenroll to renew this certificate)"
                )
            profile = self._profile(order.profile)
            checked = await self._check_csr(csr_der, profile, client.identity)
            return await self._issue(
                actor=actor, identity=client.identity, profile=profile, csr=checked, order=order
            )

        return await self._admitted("enroll", actor, attempt)

    async def reenroll(
        self, client_certificate_der: bytes, csr_der: bytes, *, source: str | None
    ) -> x509.Certificate:
        actor = certificate_actor(client_certificate_der, source)

        async def attempt() -> x509.Certificate:
            client = await self.authenticate_certificate(client_certificate_der)
            profile = self._profile(client.record.profile)
            checked = await self._check_csr(csr_der, profile, client.identity)
            _check_same_names(checked.csr, client.certificate)
            return await self._issue(
                actor=actor,
                identity=client.identity,
                profile=profile,
                csr=checked,
                renewal_of=client.record,
            )

        return await self._admitted("reenroll", actor, attempt)

    # -- authentication ---------------------------------------------------------------------

    async def _authenticate_order(
        self, reference: str, one_time_code: str, actor: Actor
    ) -> tuple[Order, Identity]:
        async with self._store.read() as tx:
            found = await tx.get_order_by_reference(codes.normalise(reference))
        if found is None:
            await self._workers.run(self._hasher.waste_time, one_time_code)
            raise Unauthenticated(WRONG_CREDENTIALS)
        order, code_hash = found
        if order.locked_at is not None:
            raise OrderLocked(
                "this order is locked after too many wrong one-time codes; "
                "ask an administrator to unlock it"
            )
        if not await self._workers.run(self._hasher.verify, one_time_code, code_hash):
            await self._count_wrong_code(order, actor)
            raise Unauthenticated(WRONG_CREDENTIALS)
        now = self._clock.now()
        state = order.state(now)
        if state is OrderState.EXPIRED:
            raise NoPendingOrder(
                f"this order expired at {order.expires_at:%Y-%m-%d %H:%M:%S}Z; "
                "ask an administrator for a new order"
            )
        if state is OrderState.CONSUMED:
            raise NoPendingOrder("this order has already been used for a certificate")
        if state is OrderState.CANCELLED:
            raise NoPendingOrder("this order was cancelled")
        async with self._store.read() as tx:
            identity = await tx.get_identity(order.identity_id)
        assert identity is not None  # a foreign key guarantees it
        if not identity.is_active:
            raise NotEntitled("the identity of this order is disabled")
        return order, identity

    async def _count_wrong_code(self, order: Order, actor: Actor) -> None:
        now = self._clock.now()
        async with self._store.write() as tx:
            updated = await tx.count_failed_attempt(
                order.id, lock_after=self._order_policy.max_failed_attempts, now=now
            )
            if updated.locked_at == now and order.locked_at is None:
                await tx.append_audit(
                    AuditEvent(
                        action="order.locked",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=now,
                        identity_id=order.identity_id,
                        order_reference=order.reference,
                        reason=f"{updated.failed_attempts} wrong one-time codes",
                    )
                )

    async def authenticate_certificate(self, certificate_der: bytes) -> ClientCertificate:
        """The client certificate must be one we issued and recorded, valid at this moment."""
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
            serial = Serial(certificate.serial_number)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CertificateNotUsable("the client certificate was not issued by this CA") from exc
        async with self._store.read() as tx:
            record = await tx.get_certificate(serial)
            identity = await tx.get_identity(record.identity_id) if record else None
        if record is None or record.der != certificate_der or identity is None:
            raise CertificateNotUsable("the client certificate was not issued by this CA")
        if record.status is CertificateStatus.REVOKED:
            raise CertificateNotUsable("the client certificate is revoked")
        now = self._clock.now()
        if not record.is_valid_at(now):
            raise CertificateNotUsable(
                "the client certificate is expired or not yet valid; ask an administrator "
                "for a new order"
            )
        if not identity.is_active:
            raise NotEntitled("the identity of this certificate is disabled")
        return ClientCertificate(certificate=certificate, record=record, identity=identity)

    # -- checks and issuance ----------------------------------------------------------------

    def _profile(self, name: str) -> Profile:
        profile = self._profiles.get(name)
        if profile is None:
            raise IssuanceFailed(f"the profile {name!r} is no longer configured")
        return profile

    async def _check_csr(self, csr_der: bytes, profile: Profile, identity: Identity) -> CheckedCsr:
        csr = parse_csr(csr_der)
        checked = await self._workers.run(check_csr, csr, profile)
        if checked.key.spki_der in self._ca_keys:
            raise BadRequest("the CSR carries this CA's own public key; generate a key of your own")
        async with self._store.read() as tx:
            holders = await tx.certificates_with_public_key(checked.key.sha256)
        if any(holder.revocation_reason == "keyCompromise" for holder in holders):
            raise BadRequest("this public key was reported compromised; generate a new key")
        if any(holder.identity_id != identity.id for holder in holders):
            raise BadRequest(
                "this public key is already certified for another identity; generate a new key"
            )
        return checked

    async def _issue(
        self,
        *,
        actor: Actor,
        identity: Identity,
        profile: Profile,
        csr: CheckedCsr,
        order: Order | None = None,
        renewal_of: CertificateRecord | None = None,
    ) -> x509.Certificate:
        now = self._clock.now()
        serial = Serial.random()
        reservation = CertificateRecord(
            serial=serial,
            identity_id=identity.id,
            order_id=order.id if order else None,
            renewal_of=renewal_of.serial if renewal_of else None,
            profile=profile.name,
            status=CertificateStatus.RESERVED,
            public_key_sha256=csr.key.sha256,
            created_at=now,
        )
        # Step 1: the serial and the intent are on disk before anything is signed.
        async with self._store.write() as tx:
            if order is not None:
                stale_before = now - self._order_policy.claim_lease
                if not await tx.claim_order(order.id, serial, now=now, stale_before=stale_before):
                    raise NoPendingOrder(
                        "this order is no longer pending (used, being used, expired or locked)"
                    )
            elif renewal_of is not None:
                await self._require_unrevoked(tx, renewal_of.serial)
            await tx.insert_reservation(reservation)
        request = IssuanceRequest(
            serial=serial, identity=identity, profile=profile, key=csr.key, not_before=now
        )
        try:
            # Step 2: build, check the draft, sign (off the event loop).
            certificate = await self._workers.run(self._issuer.produce, request)
            # Step 3: record the certificate and consume the order together.
            async with self._store.write() as tx:
                if renewal_of is not None:
                    await self._require_unrevoked(tx, renewal_of.serial)
                if order is not None and not await tx.complete_order(order.id, serial, now):
                    raise NoPendingOrder("this order was taken over by another enrollment")
                recorded = await tx.mark_issued(
                    serial,
                    der=certificate.public_bytes(serialization.Encoding.DER),
                    not_before=certificate.not_valid_before_utc,
                    not_after=certificate.not_valid_after_utc,
                    issued_at=self._clock.now(),
                )
                if not recorded:
                    raise IssuanceFailed(
                        "the reservation vanished before the certificate was stored"
                    )
                await tx.append_audit(
                    AuditEvent(
                        action="certificate.issued",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=self._clock.now(),
                        identity_id=identity.id,
                        order_reference=order.reference if order else None,
                        serial=serial.hex,
                        details={
                            "profile": profile.name,
                            "key": csr.key.description,
                            **({"renewal_of": renewal_of.serial.hex} if renewal_of else {}),
                        },
                    )
                )
        except BaseException as exc:
            reason = exc.detail if isinstance(exc, EstCaError) else type(exc).__name__
            await asyncio.shield(self._abandon(serial, order, actor, identity, reason))
            raise
        return certificate

    @staticmethod
    async def _require_unrevoked(tx: StoreTx, serial: Serial) -> None:
        """Read under a row lock, so a revocation racing this renewal is ordered before or after."""
        current = await tx.get_certificate(serial, for_update=True)
        if current is None or current.status is not CertificateStatus.ISSUED:
            raise CertificateNotUsable("the client certificate is revoked")

    async def _abandon(
        self, serial: Serial, order: Order | None, actor: Actor, identity: Identity, reason: str
    ) -> None:
        """Issuance stopped after the reservation: burn the serial, give the order back."""
        now = self._clock.now()
        async with self._store.write() as tx:
            await tx.abandon_reservation(serial)
            if order is not None:
                await tx.release_order(order.id, serial)
            await tx.append_audit(
                AuditEvent(
                    action="certificate.abandoned",
                    outcome=Outcome.FAILED,
                    actor=actor,
                    at=now,
                    identity_id=identity.id,
                    order_reference=order.reference if order else None,
                    serial=serial.hex,
                    reason=reason,
                )
            )

    async def _admitted(self, action: str, actor: Actor, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run an enrollment if its source is not throttled and there is room for the work.

        A refusal becomes an audit event with its reason, then propagates; an authentication
        failure also counts against the source. Throttled and overloaded requests are refused
        before any work and are not audited one by one (a flood must not become a flood of
        writes): the moment a source becomes throttled is.
        """
        self._throttle.check(actor.source)
        async with self._admission.slot():
            try:
                return await attempt()
            except EstCaError as exc:
                await self.record_refusal(action, actor, exc)
                if isinstance(
                    exc, Unauthenticated | OrderLocked | CertificateNotUsable
                ) and self._throttle.record(actor.source):
                    await self._store.append_audit(
                        AuditEvent(
                            action="source.throttled",
                            outcome=Outcome.REFUSED,
                            actor=actor,
                            at=self._clock.now(),
                            reason="too many authentication failures from this address",
                        )
                    )
                raise

    async def record_refusal(self, action: str, actor: Actor, error: EstCaError) -> None:
        """Audit a refused enrollment; protocol layers call it for requests they could not parse."""
        await self._store.append_audit(
            AuditEvent(
                action=f"{action}.refused",
                outcome=Outcome.REFUSED,
                actor=actor,
                at=self._clock.now(),
                reason=error.audit_reason,
            )
        )


def order_actor(reference: str, source: str | None) -> Actor:
    """Audit name of a client using Basic credentials: the order reference, never the code."""
    return Actor("order", codes.normalise(reference)[:32], source)


def certificate_actor(certificate_der: bytes, source: str | None) -> Actor:
    """Audit name of a client using a TLS client certificate: its serial."""
    try:
        serial = format(x509.load_der_x509_certificate(certificate_der).serial_number, "x")
    except (ValueError, x509.InvalidVersion):
        serial = "unparseable"
    return Actor("certificate", serial[:64], source)


def _check_same_names(csr: x509.CertificateSigningRequest, current: x509.Certificate) -> None:
    """RFC 7030 4.2.2: a renewal's CSR carries the current certificate's Subject and SAN."""
    if csr.subject != current.subject:
        raise NotEntitled(
            "the CSR's subject must equal the current certificate's subject for simplereenroll"
        )
    if _san(csr.extensions) != _san(current.extensions):
        raise NotEntitled(
            "the CSR's subjectAltName must equal the current certificate's for simplereenroll"
        )


def _san(extensions: x509.Extensions) -> x509.SubjectAlternativeName | None:
    try:
        return extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
