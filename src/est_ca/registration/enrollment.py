"""The registration authority: who is enrolling, what entitles them, and issuing in two steps.

Three ways in, one way out:
- `enroll_with_order`: Basic credentials (order reference : one-time code) consume that order;
- `enroll_with_certificate`: a valid client certificate of ours consumes a pending order of the
  same identity;
- `reenroll`: a valid client certificate renews itself (same subject and SAN, new key allowed).

Authentication comes first and is cheap (a keyed hash, a row lookup); only an authenticated
request takes one of the bounded enrollment slots for the CPU work (CSR checks, signing), so a
flood of unknown references cannot crowd out the clients who hold real orders.

Issuance is two transactions around one signature. First the serial is allocated and recorded
as a reservation together with the claim on the order (or on the current certificate's one
successor) and the key's binding to the identity. Then the certificate is built, checked and
signed off the event loop. Then, in one transaction, the identity, the key and the order are
checked again under the same locks that disabling, key-compromise revocation and cancelling
take, and only if all still hold is the certificate recorded as issued. The certificate leaves
the service only after that commit; a certificate that loses a race was signed but never
recorded nor returned: its reservation is abandoned (the serial stays burnt), and the audit
trail says why. A crash in between leaves a reservation that the recovery sweep abandons and
an order that becomes usable again, never a lost certificate.

The lifecycle rules (docs/architecture.md, "Certificate lifecycle"):
- one key, one identity: the first identity to reserve a key keeps it;
- a key reported compromised is never certified again, and no enrollment in flight with it
  completes;
- a certificate has at most one successor; a renewal retried with the same key gets that
  successor again, with another key it is refused; the predecessor is revoked as superseded
  when its profile's grace period after the renewal is over (at once with a grace of 0), and
  a renewal of the successor revokes any older certificate of the lineage at once, so at most
  two certificates of one lineage are ever live.

Every refusal is an audit event with its reason (see `SourceGuard`); no secret is in any.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import TypeVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.ca.authority import issuer_key_id
from est_ca.ca.building import IssuanceRequest
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyBinding, KeyId, Serial
from est_ca.ca.csr_policy import (
    CheckedCsr,
    check_csr,
    check_proof_of_possession,
    parse_csr,
    subscriber_key,
)
from est_ca.ca.labels import CaLabels, LabelledCa, trusted_certificates
from est_ca.ca.profiles import Profile, ProfileCatalogue
from est_ca.ca.spki import public_key_der
from est_ca.clock import Clock
from est_ca.errors import (
    AlreadyExists,
    ApprovalPending,
    BadRequest,
    CertificateNotUsable,
    Conflict,
    CredentialsMissing,
    EstCaError,
    IssuanceFailed,
    NoPendingOrder,
    NotEntitled,
    OrderLocked,
    Unauthenticated,
)
from est_ca.metrics import Metrics
from est_ca.registration import codes
from est_ca.registration.approvals import REJECTED, EnrollmentRequest, RequestStatus
from est_ca.registration.codes import SecretHasher
from est_ca.registration.identities import Identity
from est_ca.registration.orders import Order, OrderState, OrderStatus
from est_ca.registration.organisations import Organisation
from est_ca.registration.registry import OrderPolicy
from est_ca.revocation.reasons import RevocationReason
from est_ca.revocation.revoker import Revocation, Revocations
from est_ca.store.store import Store, StoreTx
from est_ca.throttle import Admission, SourceGuard
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)
T = TypeVar("T")
E = TypeVar("E")
WRONG_CREDENTIALS = "unknown order reference or wrong one-time code"
KEY_COMPROMISED = "this public key was reported compromised; generate a new key"
KEY_OF_ANOTHER = "this public key is already certified for another identity; generate a new key"
ORDER_USED = "this order has already been used for a certificate"
# How late the event loop may wake from a sleep (epoll's timeout is in whole milliseconds).
TIMER_GRANULARITY = 0.0015
# Turns an authenticated caller's CSR into the one enrolled (serverkeygen: a CSR for a key the
# service made; est/routes.py).
CsrMaker = Callable[[bytes], Awaitable[bytes]]
# Refusals that are failed authentications: they count against the source address.
_AUTHENTICATION_FAILURES = (Unauthenticated, OrderLocked, CertificateNotUsable)
# What authenticating a client certificate reads: its record, identity with organisation,
# key binding, and (when revoked) its successor.
_ClientRecords = tuple[
    CertificateRecord | None,
    tuple[Identity, Organisation] | None,
    KeyBinding | None,
    CertificateRecord | None,
]


@dataclasses.dataclass(frozen=True)
class ClientCertificate:
    """A TLS client certificate that is ours, issued, unexpired and unrevoked right now."""

    certificate: x509.Certificate
    record: CertificateRecord
    identity: Identity


class _CodeCheck(Enum):
    RIGHT = "right"
    WRONG = "wrong"
    LOCKED = "locked"


class TimingPad:
    """Makes an unknown order reference take as long as a wrong code for a known one.

    A wrong code is counted in the database (a write); an unknown reference has nothing to
    count. Without padding, the difference would tell which references exist. The pad waits,
    without holding an enrollment slot, until the median of recent wrong-code checks has
    passed. The event loop's timers are coarse (epoll counts milliseconds), so the wait sleeps
    to just before that moment and then yields to the loop until it has come.
    """

    def __init__(self, samples: int = 64) -> None:
        self._durations: collections.deque[float] = collections.deque(maxlen=samples)

    def record(self, seconds: float) -> None:
        self._durations.append(seconds)

    async def pad(self, started: float) -> None:
        if not self._durations:
            return
        deadline = started + statistics.median(self._durations)
        coarse = deadline - time.perf_counter() - TIMER_GRANULARITY
        if coarse > 0:
            await asyncio.sleep(coarse)
        while time.perf_counter() < deadline:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep(0)


class RegistrationAuthority:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        hasher: SecretHasher,
        workers: Workers,
        profiles: ProfileCatalogue,
        labelled: Sequence[LabelledCa],
        default_label: str,
        order_policy: OrderPolicy,
        guard: SourceGuard,
        admission: Admission,
        revocations: Revocations,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher
        self._workers = workers
        self._profiles = profiles
        self._labelled = {entry.label.name: entry for entry in labelled}
        self.labels = CaLabels(tuple(entry.label for entry in labelled), default_label)
        self._order_policy = order_policy
        self._guard = guard
        self._admission = admission
        self._revocations = revocations
        self._metrics = metrics
        self._timing = TimingPad()
        # Every CA certificate a client certificate of ours chains to (TLS trusts these).
        self.trusted = tuple(trusted_certificates(labelled))
        # Our issuing CAs alone (every label and generation), without the chains above them.
        self.issuing = tuple(
            dict.fromkeys(ca.certificate for entry in labelled for ca in entry.cas)
        )
        # Keys of our CAs and their chains: a subscriber must never get a certificate for them.
        self._ca_keys = frozenset(
            public_key_der(certificate.public_key()) for certificate in self.trusted
        )

    def labelled(self, label: str | None) -> LabelledCa:
        """The CAs of `label` (None: the unlabelled path's); an unknown label is NotFound."""
        return self._labelled[self.labels.get(label).name]

    # -- the three ways in ------------------------------------------------------------------

    async def enroll_with_order(
        self,
        reference: str,
        one_time_code: str,
        csr_der: bytes,
        *,
        source: str | None,
        label: str | None = None,
        csr_for: CsrMaker | None = None,
    ) -> x509.Certificate:
        actor = order_actor(reference, source)

        async def authenticate() -> tuple[Order, Identity]:
            return await self._authenticate_order(reference, one_time_code, actor)

        async def work(entitled: tuple[Order, Identity]) -> x509.Certificate:
            order, identity = entitled
            labelled = self._order_label(order, label)
            if order.status is OrderStatus.CONSUMED:
                if csr_for is not None:  # its key was not kept: nothing to hand out again
                    raise NoPendingOrder(f"{ORDER_USED}; ask an administrator for a new order")
                return await self._redeliver_order(order, identity, csr_der, actor)
            return await self._enroll_pending_order(
                order, identity, csr_der, labelled, actor, csr_for
            )

        return await self._admitted("enroll", actor, authenticate, work)

    async def enroll_with_certificate(
        self,
        client_certificate_der: bytes,
        csr_der: bytes,
        *,
        source: str | None,
        label: str | None = None,
        csr_for: CsrMaker | None = None,
    ) -> x509.Certificate:
        actor = certificate_actor(client_certificate_der, source)

        async def authenticate() -> tuple[Order, Identity]:
            client = await self.authenticate_certificate(client_certificate_der)
            wanted = self.labelled(label).label.name

            async def find(tx: StoreTx) -> Order | None:
                order = await tx.find_claimable_order(
                    client.identity.id,
                    self._clock.now(),
                    wanted,
                    or_unlabelled=wanted == self.labels.default,
                )
                if order is None:  # one for another label: work() says which label it is for
                    order = await tx.find_claimable_order(client.identity.id, self._clock.now())
                return order

            order = await self._store.in_transaction(find, write=False)
            if order is None:
                raise NoPendingOrder(
                    "no pending order for this identity: an administrator must place one "
                    "(or use simplereenroll to renew this certificate)"
                )
            return order, client.identity

        async def work(entitled: tuple[Order, Identity]) -> x509.Certificate:
            order, identity = entitled
            labelled = self._order_label(order, label)
            return await self._enroll_pending_order(
                order, identity, csr_der, labelled, actor, csr_for
            )

        return await self._admitted("enroll", actor, authenticate, work)

    async def reenroll(
        self,
        client_certificate_der: bytes,
        csr_der: bytes,
        *,
        source: str | None,
        label: str | None = None,
    ) -> x509.Certificate:
        """The renewal goes to the label's current CA, whichever of its generations issued
        the certificate being renewed (after a rollover: the new CA)."""
        actor = certificate_actor(client_certificate_der, source)

        async def authenticate() -> ClientCertificate:
            return await self.authenticate_certificate(client_certificate_der)

        async def work(client: ClientCertificate) -> x509.Certificate:
            labelled = self.labelled(label)
            if not labelled.issued(client.record.issuer_key_id):
                raise NotEntitled(
                    "this certificate was not issued under the CA label "
                    f"{labelled.label.name!r}; renew it under its own label"
                    + self._label_hint(client.record.issuer_key_id)
                )
            if not labelled.label.allows(client.record.profile):
                raise NotEntitled(
                    f"the CA label {labelled.label.name!r} no longer issues profile "
                    f"{client.record.profile!r}"
                )
            profile = self._profile(client.record.profile)
            checked = await self._check_csr(csr_der, profile, client.identity, check_key=False)
            _check_same_names(checked.csr, client.certificate)
            return await self._issue(
                actor=actor,
                identity=client.identity,
                profile=profile,
                csr=checked,
                labelled=labelled,
                renewal_of=client.record,
            )

        return await self._admitted("reenroll", actor, authenticate, work)

    def _order_label(self, order: Order, label: str | None) -> LabelledCa:
        """The label an order is enrolled under must be the one it names."""
        labelled = self.labelled(label)
        wanted = order.ca_label or self.labels.default
        if labelled.label.name != wanted:
            where = (
                "the unlabelled path" if wanted == self.labels.default else f"the label {wanted!r}"
            )
            raise NotEntitled(
                f"order {order.reference} is for the CA label {wanted!r}, not "
                f"{labelled.label.name!r}: enroll it under {where} (/.well-known/est/{wanted}/)"
            )
        if not labelled.label.allows(order.profile):
            raise NotEntitled(
                f"the CA label {labelled.label.name!r} no longer issues profile {order.profile!r}"
            )
        return labelled

    def _label_hint(self, issuer: KeyId) -> str:
        for name, labelled in self._labelled.items():
            if labelled.issued(issuer):
                return f" (/.well-known/est/{name}/)"
        return ""

    # -- authentication ---------------------------------------------------------------------

    async def _authenticate_order(
        self, reference: str, one_time_code: str, actor: Actor
    ) -> tuple[Order, Identity]:
        started = time.perf_counter()
        normalised = codes.normalise(reference)
        found = None
        # A plain read first: an unknown reference must not take the write lock that
        # `_check_code` takes to check a known order's code.
        if codes.could_be_reference(normalised):
            found = await self._store.in_transaction(
                lambda tx: tx.get_order_by_reference(normalised), write=False
            )
        if found is None:
            self._hasher.verify(one_time_code, None)
            await self._timing.pad(started)
            raise Unauthenticated(WRONG_CREDENTIALS)
        check, order, holder = await self._check_code(normalised, one_time_code, actor)
        if check is _CodeCheck.LOCKED:
            raise OrderLocked(
                "this order is locked after too many wrong one-time codes; "
                "ask an administrator to unlock it"
            )
        if check is _CodeCheck.WRONG:
            self._timing.record(time.perf_counter() - started)
            raise Unauthenticated(WRONG_CREDENTIALS)
        now = self._clock.now()
        state = order.state(now)
        if state is OrderState.EXPIRED:
            raise NoPendingOrder(
                f"this order expired at {order.expires_at:%Y-%m-%d %H:%M:%S}Z; "
                "ask an administrator for a new order"
            )
        # A consumed order still authenticates until it expires: its client may only want
        # the certificate back (see `_redeliver_order`).
        if state is OrderState.CONSUMED and now >= order.expires_at:
            raise NoPendingOrder(ORDER_USED)
        if state is OrderState.CANCELLED:
            if order.require_approval:
                async with self._store.read() as tx:
                    request = await tx.get_request(order.id)
                if request is not None and request.status is RequestStatus.REJECTED:
                    raise NoPendingOrder(_rejection(request))
            raise NoPendingOrder("this order was cancelled")
        if holder is None:  # the code was checked slowly (an scrypt hash)
            holder = await self._store.in_transaction(
                lambda tx: tx.identity_with_organisation(order.identity_id), write=False
            )
        assert holder is not None  # a foreign key guarantees it
        identity, organisation = holder
        if not identity.is_active:
            raise NotEntitled("the identity of this order is disabled")
        _require_organisation_active(organisation)
        return order, identity

    async def _check_code(
        self, reference: str, one_time_code: str, actor: Actor
    ) -> tuple[_CodeCheck, Order, tuple[Identity, Organisation] | None]:
        """Check the code under the order's row lock, and count it at once when it is wrong:
        concurrent attempts queue, so at most `max_failed_attempts` codes are ever checked.
        A right code reads the order's identity and organisation in the same transaction (the
        caller needs them next); a code hashed with scrypt (an earlier version's) is checked
        on a worker, which a transaction run as one step cannot await (`_check_slow_code`)."""
        now = self._clock.now()

        async def step(
            tx: StoreTx,
        ) -> tuple[_CodeCheck, Order, tuple[Identity, Organisation] | None] | None:
            found = await tx.get_order_by_reference(reference, for_update=True)
            assert found is not None  # orders are never deleted
            order, code_hash = found
            if order.locked_at is not None:
                return _CodeCheck.LOCKED, order, None
            if SecretHasher.is_slow(code_hash):
                return None
            if self._hasher.verify(one_time_code, code_hash):
                return (
                    _CodeCheck.RIGHT,
                    order,
                    await tx.identity_with_organisation(order.identity_id),
                )
            return _CodeCheck.WRONG, await self._count_wrong_code(tx, order, actor, now), None

        checked = await self._store.in_transaction(step)
        if checked is not None:
            return checked
        check, order = await self._check_slow_code(reference, one_time_code, actor)
        return check, order, None

    async def _check_slow_code(
        self, reference: str, one_time_code: str, actor: Actor
    ) -> tuple[_CodeCheck, Order]:
        now = self._clock.now()
        async with self._store.write() as tx:
            found = await tx.get_order_by_reference(reference, for_update=True)
            assert found is not None  # orders are never deleted
            order, code_hash = found
            if order.locked_at is not None:
                return _CodeCheck.LOCKED, order
            if await self._workers.run(self._hasher.verify, one_time_code, code_hash):
                return _CodeCheck.RIGHT, order
            return _CodeCheck.WRONG, await self._count_wrong_code(tx, order, actor, now)

    async def _count_wrong_code(
        self, tx: StoreTx, order: Order, actor: Actor, now: dt.datetime
    ) -> Order:
        counted = await tx.count_failed_attempt(
            order.id, lock_after=self._order_policy.max_failed_attempts, now=now
        )
        if counted.locked_at == now:
            await tx.append_audit(
                AuditEvent(
                    action="order.locked",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=order.identity_id,
                    order_reference=order.reference,
                    reason=f"{counted.failed_attempts} wrong one-time codes",
                )
            )
        return counted

    async def authenticate_certificate(self, certificate_der: bytes) -> ClientCertificate:
        """The certificate must be one we issued and recorded, valid at this moment, of an
        active identity, and its key not reported compromised."""
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
            serial = Serial(certificate.serial_number)
        except (ValueError, x509.InvalidVersion, BadRequest) as exc:  # BadRequest: a bad serial
            raise CertificateNotUsable("the client certificate was not issued by this CA") from exc
        issuer = issuer_key_id(certificate)

        async def read(tx: StoreTx) -> _ClientRecords:
            record = await tx.get_certificate(issuer, serial) if issuer else None
            if record is None:
                return None, None, None, None
            holder = await tx.identity_with_organisation(record.identity_id)
            binding = await tx.key_binding(record.public_key_sha256)
            successor = (
                await tx.successor_of(serial)
                if record.status is CertificateStatus.REVOKED
                else None
            )
            return record, holder, binding, successor

        record, holder, binding, successor = await self._store.in_transaction(read, write=False)
        identity, organisation = holder if holder is not None else (None, None)
        if record is None or record.der != certificate_der or identity is None:
            raise CertificateNotUsable("the client certificate was not issued by this CA")
        if record.status is CertificateStatus.REVOKED:
            if record.revocation_reason is RevocationReason.SUPERSEDED and successor:
                raise CertificateNotUsable(
                    f"the client certificate was replaced by its renewal {successor.serial} "
                    "and is revoked; use that certificate"
                )
            raise CertificateNotUsable("the client certificate is revoked")
        if binding is not None and binding.is_compromised:
            raise CertificateNotUsable("the client certificate's key was reported compromised")
        now = self._clock.now()
        if not record.is_valid_at(now):
            raise CertificateNotUsable(
                "the client certificate is expired or not yet valid; ask an administrator "
                "for a new order"
            )
        if not identity.is_active:
            raise NotEntitled("the identity of this certificate is disabled")
        _require_organisation_active(organisation)
        return ClientCertificate(certificate=certificate, record=record, identity=identity)

    # -- checks and issuance ----------------------------------------------------------------

    def _profile(self, name: str) -> Profile:
        profile = self._profiles.get(name)
        if profile is None:
            raise IssuanceFailed(f"the profile {name!r} is no longer configured")
        return profile

    async def _check_csr(
        self, csr_der: bytes, profile: Profile, identity: Identity, *, check_key: bool = True
    ) -> CheckedCsr:
        """The CSR checked against the profile, and its key against its binding. An issuance
        right after (`check_key=False`) leaves the key to its reservation, which checks the
        binding under its lock anyway and refuses with the same words: one transaction less
        per enrollment. A request stored for approval checks it here (an administrator is
        never asked about a key we refuse)."""
        csr = parse_csr(csr_der)
        checked = await self._workers.run(check_csr, csr, profile)
        if checked.key.spki_der in self._ca_keys:
            raise BadRequest("the CSR carries this CA's own public key; generate a key of your own")
        if not check_key:
            return checked
        binding = await self._store.in_transaction(
            lambda tx: tx.key_binding(checked.key.sha256), write=False
        )
        if binding is not None:
            _require_usable_key(binding, identity)
        return checked

    async def _issue(
        self,
        *,
        actor: Actor,
        identity: Identity,
        profile: Profile,
        csr: CheckedCsr,
        labelled: LabelledCa,
        order: Order | None = None,
        renewal_of: CertificateRecord | None = None,
    ) -> x509.Certificate:
        now = self._clock.now()
        serial = Serial.random()
        issuer = labelled.issuer
        reservation = CertificateRecord(
            serial=serial,
            issuer_key_id=issuer.ca.key_id,
            identity_id=identity.id,
            order_id=order.id if order else None,
            renewal_of=renewal_of.serial if renewal_of else None,
            profile=profile.name,
            status=CertificateStatus.RESERVED,
            public_key_sha256=csr.key.sha256,
            created_at=now,
        )

        # Step 1: the serial, the intent and the claims are on disk before anything is signed.
        async def reserve(tx: StoreTx) -> x509.Certificate | None:
            await self._require_active(tx, identity)
            if renewal_of is not None:
                await self._require_unrevoked(tx, renewal_of)
                successor = await self._successor(tx, renewal_of, actor)
                if successor is not None:
                    return await self._redeliver(tx, successor, csr, actor, renewal_of)
            _require_usable_key(await tx.bind_key(csr.key.sha256, identity.id, now), identity)
            if order is not None:
                stale_before = now - self._order_policy.claim_lease
                if not await tx.claim_order(order.id, serial, now=now, stale_before=stale_before):
                    raise NoPendingOrder(
                        "this order is no longer pending (used, being used, expired or locked)"
                    )
            await tx.insert_reservation(reservation)
            return None

        redelivered = await self._store.in_transaction(reserve)
        if redelivered is not None:
            return redelivered
        request = IssuanceRequest(
            serial=serial, identity=identity, profile=profile, key=csr.key, not_before=now
        )
        revoked: list[CertificateRecord] = []
        try:
            # Step 2: build, check the draft, sign (off the event loop).
            started = time.perf_counter()
            certificate = await self._workers.run(issuer.produce, request)
            if self._metrics is not None:
                self._metrics.issuance.labels(labelled.label.name).observe(
                    time.perf_counter() - started
                )

            # Step 3: check everything again under the locks, record, consume the order.
            async def record(tx: StoreTx) -> list[CertificateRecord]:
                await self._require_active(tx, identity, during_issuance=True)
                binding_now = await tx.key_binding(csr.key.sha256, for_update=True)
                if binding_now is None or binding_now.is_compromised:
                    raise BadRequest(KEY_COMPROMISED)
                predecessor = None
                if renewal_of is not None:
                    predecessor = await self._require_unrevoked(tx, renewal_of)
                if order is not None and not await tx.complete_order(order.id, serial, now):
                    raise NoPendingOrder("this order was cancelled or taken over meanwhile")
                issued_at = self._clock.now()
                recorded = await tx.mark_issued(
                    reservation.issuer_key_id,
                    serial,
                    der=certificate.public_bytes(serialization.Encoding.DER),
                    not_before=certificate.not_valid_before_utc,
                    not_after=certificate.not_valid_after_utc,
                    issued_at=issued_at,
                )
                if not recorded:
                    raise IssuanceFailed(
                        "the reservation vanished before the certificate was stored"
                    )
                superseded: list[CertificateRecord] = []
                if predecessor is not None:
                    superseded = await self._supersede(tx, actor, predecessor, profile, serial)
                await tx.append_audit(
                    AuditEvent(
                        action="certificate.issued",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=issued_at,
                        identity_id=identity.id,
                        order_reference=order.reference if order else None,
                        serial=serial.hex,
                        details={
                            "issuer": reservation.issuer_key_id.hex,
                            "ca_label": labelled.label.name,
                            "profile": profile.name,
                            "key": csr.key.description,
                            **({"renewal_of": renewal_of.serial.hex} if renewal_of else {}),
                        },
                    )
                )
                return superseded

            revoked = await self._store.in_transaction(record)
        except BaseException as exc:
            reason = exc.detail if isinstance(exc, EstCaError) else type(exc).__name__
            await asyncio.shield(self._abandon(reservation, order, actor, reason))
            raise
        if revoked:
            self._revocations.notify()
        if self._metrics is not None:
            operation = "reenroll" if renewal_of is not None else "enroll"
            self._metrics.enrollments.labels(
                operation, "issued", profile.name, labelled.label.name
            ).inc()
        return certificate

    async def _enroll_pending_order(
        self,
        order: Order,
        identity: Identity,
        csr_der: bytes,
        labelled: LabelledCa,
        actor: Actor,
        csr_for: CsrMaker | None,
    ) -> x509.Certificate:
        """An authenticated caller's pending order (by its code or a client certificate, which
        does not stand in for approval): held for approval, or checked and issued."""
        profile = self._profile(order.profile)
        if order.require_approval:
            _refuse_made_key_for_approval(csr_for)
            return await self._enroll_approved(order, identity, profile, csr_der, labelled, actor)
        enrolled = csr_der if csr_for is None else await csr_for(csr_der)
        checked = await self._check_csr(enrolled, profile, identity, check_key=False)
        return await self._issue(
            actor=actor,
            identity=identity,
            profile=profile,
            csr=checked,
            labelled=labelled,
            order=order,
        )

    async def _enroll_approved(
        self,
        order: Order,
        identity: Identity,
        profile: Profile,
        csr_der: bytes,
        labelled: LabelledCa,
        actor: Actor,
    ) -> x509.Certificate:
        """An order that requires approval (RFC 7030 4.2.3): the first enrollment stores its
        CSR and is told to come back (`ApprovalPending`, 202); so is every retry until an
        administrator decides. Once approved, a retry with the same CSR (`same_csr`) issues, by
        the same claim on the order as any enrollment: of concurrent retries one issues, the
        others are told to come back in a second (the order is being issued) and then get
        the certificate again as a consumed order's retry does. The one-time code stays
        usable throughout: the order is consumed only by the issuance."""
        await self._require_approved(order, identity, profile, csr_der, actor)
        checked = await self._check_csr(csr_der, profile, identity, check_key=False)
        try:
            return await self._issue(
                actor=actor,
                identity=identity,
                profile=profile,
                csr=checked,
                labelled=labelled,
                order=order,
            )
        except NoPendingOrder:
            async with self._store.read() as tx:
                current = await tx.get_order(order.id)
            if current is not None and current.status is OrderStatus.ISSUING:
                raise ApprovalPending(
                    "approved; the certificate is being issued right now, retry in a second",
                    retry_after_seconds=1,
                ) from None
            if current is not None and current.status is OrderStatus.CONSUMED:
                return await self._redeliver_order(current, identity, csr_der, actor)
            raise

    async def _require_approved(
        self, order: Order, identity: Identity, profile: Profile, csr_der: bytes, actor: Actor
    ) -> None:
        """Return only for an approved request of this very CSR; store a first one."""
        async with self._store.read() as tx:
            request = await tx.get_request(order.id)
        if request is None:
            # Checked in full first: an administrator is never asked about a CSR we refuse.
            await self._check_csr(csr_der, profile, identity)
            request = EnrollmentRequest.submit(
                order_id=order.id,
                order_reference=order.reference,
                identity_id=identity.id,
                csr_der=csr_der,
                now=self._clock.now(),
            )
            try:
                async with self._store.write() as tx:
                    # Under the order's row lock, which cancelling it (or disabling its
                    # identity) takes too: a request is never stored behind a cancellation
                    # that would have rejected it.
                    found = await tx.get_order_by_reference(order.reference, for_update=True)
                    if found is None or found[0].status is not OrderStatus.PENDING:
                        raise NoPendingOrder(
                            "this order was cancelled or used meanwhile; ask an administrator "
                            "for a new order"
                        )
                    await tx.insert_request(request)
                    await tx.append_audit(
                        AuditEvent(
                            action="request.submitted",
                            outcome=Outcome.SUCCESS,
                            actor=actor,
                            at=request.created_at,
                            identity_id=identity.id,
                            order_reference=order.reference,
                            details={"profile": profile.name, "csr_sha256": request.csr_sha256},
                        )
                    )
            except AlreadyExists:  # a concurrent first attempt stored its CSR first
                async with self._store.read() as tx:
                    stored = await tx.get_request(order.id)
                assert stored is not None
                request = stored
        if not request.same_csr(csr_der):
            raise Conflict(
                f"another CSR is {request.status.value} for order {order.reference}; retry "
                "with the CSR first sent (an order yields one request)"
            )
        if request.status is RequestStatus.REJECTED:
            raise NoPendingOrder(_rejection(request))
        if request.status is RequestStatus.PENDING:
            raise ApprovalPending(
                f"the request of order {order.reference} awaits an administrator's approval; "
                "retry with the same CSR",
                retry_after_seconds=self._order_policy.approval_retry_after_seconds,
            )

    async def _redeliver_order(
        self, order: Order, identity: Identity, csr_der: bytes, actor: Actor
    ) -> x509.Certificate:
        """An enrollment retried with the credentials of an order it consumed (the client may
        have lost the response): a CSR proving possession of the same key gets the
        certificate that order yielded, as stored; another key, or that certificate revoked
        or expired, does not. Nothing is signed."""
        csr = parse_csr(csr_der)
        await self._workers.run(check_proof_of_possession, csr)
        key = subscriber_key(csr)
        async with self._store.write() as tx:
            await self._require_active(tx, identity)
            serial = order.certificate_serial
            record = await tx.order_certificate(order.id, serial) if serial else None
            if record is None or record.der is None or record.public_key_sha256 != key.sha256:
                raise NoPendingOrder(
                    f"{ORDER_USED} (for another public key); ask an administrator for a new order"
                )
            if not record.is_valid_at(self._clock.now()):
                raise NoPendingOrder(
                    f"{ORDER_USED}, which is revoked or expired; ask an administrator for a "
                    "new order"
                )
            return await self._handed_again(tx, record, actor, order_reference=order.reference)

    async def _handed_again(
        self,
        tx: StoreTx,
        record: CertificateRecord,
        actor: Actor,
        *,
        order_reference: str | None = None,
        details: dict[str, str] | None = None,
    ) -> x509.Certificate:
        """A certificate issued before, handed out again to a retry (its response was lost):
        audited as certificate.redelivered, never signed again."""
        assert record.der is not None
        if self._metrics is not None:
            operation = "reenroll" if details else "enroll"
            self._metrics.enrollments.labels(operation, "redelivered", record.profile, "-").inc()
        await tx.append_audit(
            AuditEvent(
                action="certificate.redelivered",
                outcome=Outcome.SUCCESS,
                actor=actor,
                at=self._clock.now(),
                identity_id=record.identity_id,
                order_reference=order_reference,
                serial=record.serial.hex,
                details=details or {},
            )
        )
        return x509.load_der_x509_certificate(record.der)

    @staticmethod
    async def _require_active(
        tx: StoreTx, identity: Identity, *, during_issuance: bool = False
    ) -> None:
        """Lock the identity's row (disabling takes the same lock) and require it active."""
        current = await tx.get_identity(identity.id, for_update=True)
        if current is None or not current.is_active:
            raise NotEntitled(
                "the identity was disabled while its certificate was being issued; "
                "nothing was issued"
                if during_issuance
                else "the identity of this request is disabled"
            )

    @staticmethod
    async def _require_unrevoked(tx: StoreTx, record: CertificateRecord) -> CertificateRecord:
        """Read under a row lock, so a revocation racing this renewal is ordered before or after."""
        current = await tx.get_certificate(record.issuer_key_id, record.serial, for_update=True)
        if current is None or current.status is not CertificateStatus.ISSUED:
            raise CertificateNotUsable("the client certificate is revoked")
        return current

    async def _successor(
        self, tx: StoreTx, current: CertificateRecord, actor: Actor
    ) -> CertificateRecord | None:
        """The one successor `current` already has, if any; a reservation left by a renewal
        that died (older than the claim lease) is abandoned and does not count."""
        successor = await tx.successor_of(current.serial)
        if successor is None or successor.status is not CertificateStatus.RESERVED:
            return successor
        if successor.created_at < self._clock.now() - self._order_policy.claim_lease:
            await tx.abandon_reservation(successor.issuer_key_id, successor.serial)
            await tx.append_audit(
                AuditEvent(
                    action="certificate.abandoned",
                    outcome=Outcome.FAILED,
                    actor=actor,
                    at=self._clock.now(),
                    identity_id=successor.identity_id,
                    serial=successor.serial.hex,
                    reason="a renewal that never finished; taken over by a new attempt",
                )
            )
            return None
        raise Conflict(
            "a renewal of this certificate is being issued right now; try again in a few seconds"
        )

    async def _redeliver(
        self,
        tx: StoreTx,
        successor: CertificateRecord,
        csr: CheckedCsr,
        actor: Actor,
        current: CertificateRecord,
    ) -> x509.Certificate:
        """A renewal retried from the same certificate: the same key gets the successor that
        was issued already (the client may have lost the response); another key does not."""
        if (
            successor.status is CertificateStatus.ISSUED
            and successor.public_key_sha256 == csr.key.sha256
            and successor.der is not None
        ):
            return await self._handed_again(
                tx, successor, actor, details={"renewal_of": current.serial.hex}
            )
        if successor.status is CertificateStatus.REVOKED:
            raise NotEntitled(
                f"this certificate was already renewed as {successor.serial}, which is revoked; "
                "ask an administrator for a new order"
            )
        raise NotEntitled(
            f"this certificate was already renewed as {successor.serial} (with another key); "
            "a certificate renews once: renew with that certificate"
        )

    async def _supersede(
        self,
        tx: StoreTx,
        actor: Actor,
        predecessor: CertificateRecord,
        profile: Profile,
        successor: Serial,
    ) -> list[CertificateRecord]:
        """Keep at most two certificates of a lineage live: the grandparent goes at once, the
        predecessor at once only with a grace period of 0 (otherwise when it ends)."""
        now = self._clock.now()
        revocation = Revocation(
            RevocationReason.SUPERSEDED, now, details={"superseded_by": successor.hex}
        )
        revoked: list[CertificateRecord] = []
        if predecessor.renewal_of is not None:
            older = await tx.predecessor_of(predecessor)
            if older is not None and older.status is CertificateStatus.ISSUED:
                older_revocation = dataclasses.replace(
                    revocation, details={"superseded_by": predecessor.serial.hex}
                )
                revoked += await self._revocations.revoke_in(tx, actor, older, older_revocation)
        if profile.renewal_grace_hours == 0:
            revoked += await self._revocations.revoke_in(tx, actor, predecessor, revocation)
        return revoked

    async def _abandon(
        self, reservation: CertificateRecord, order: Order | None, actor: Actor, reason: str
    ) -> None:
        """Issuance stopped after the reservation: burn the serial, give the order back, and
        forget the key's binding if nothing came of it."""
        now = self._clock.now()

        async def abandon(tx: StoreTx) -> None:
            await tx.get_identity(reservation.identity_id, for_update=True)
            await tx.abandon_reservation(reservation.issuer_key_id, reservation.serial)
            if order is not None:
                await tx.release_order(order.id, reservation.serial)
            await tx.release_unused_key(reservation.public_key_sha256)
            await tx.append_audit(
                AuditEvent(
                    action="certificate.abandoned",
                    outcome=Outcome.FAILED,
                    actor=actor,
                    at=now,
                    identity_id=reservation.identity_id,
                    order_reference=order.reference if order else None,
                    serial=reservation.serial.hex,
                    reason=reason,
                )
            )

        await self._store.in_transaction(abandon)

    # -- admission and refusals ---------------------------------------------------------------

    async def check_source(self, source: str | None) -> None:
        """Refuse (429) a source that failed too often, before any other work."""
        await self._guard.check(source)

    async def _admitted(
        self,
        action: str,
        actor: Actor,
        authenticate: Callable[[], Awaitable[E]],
        work: Callable[[E], Awaitable[T]],
    ) -> T:
        """Authenticate (cheap), then do the work in one of the bounded slots.

        Throttled sources are refused before anything; requests beyond the bound get 503 at
        once. Every refusal goes to `refuse`, which audits it and counts failed
        authentications against the source.
        """
        try:
            await self._guard.check(actor.source)
            entitled = await authenticate()
            async with self._admission.slot():
                return await work(entitled)
        except EstCaError as exc:
            await self.refuse(action, actor, exc)
            raise

    async def refuse(self, action: str, actor: Actor, error: EstCaError) -> None:
        """Audit a refused request; protocol layers call it for requests they could not parse.

        A request that sent no credentials at all is the challenge, not a refusal: EST clients
        (libest's estclient, curl --anyauth) send every enrollment first without them and
        retry with them after the 401. It is logged as `<action>.challenged`, never audited
        and never counted against the source; the retry is what the audit trail records.
        Other failed authentications count against the source address."""
        if isinstance(error, CredentialsMissing):
            _log.info(f"{action}.challenged", source=actor.source)
            return
        if isinstance(error, ApprovalPending):  # accepted and waiting: no refusal, no failure
            _log.info(f"{action}.pending", actor=str(actor))
            if self._metrics is not None:
                self._metrics.enrollments.labels(action, "pending", "-", "-").inc()
            return
        if self._metrics is not None:
            self._metrics.enrollments.labels(action, "refused", "-", "-").inc()
            self._metrics.refusals.labels(action, type(error).__name__).inc()
        counts = isinstance(error, _AUTHENTICATION_FAILURES)
        await self._guard.refused(
            AuditEvent(
                action=f"{action}.refused",
                outcome=Outcome.REFUSED,
                actor=actor,
                at=self._clock.now(),
                reason=error.audit_reason,
            ),
            counts=counts,
        )


def _require_usable_key(binding: KeyBinding, identity: Identity) -> None:
    """A key is certified for the one identity it is bound to, and never once compromised."""
    if binding.is_compromised:
        raise BadRequest(KEY_COMPROMISED)
    if binding.identity_id != identity.id:
        raise BadRequest(KEY_OF_ANOTHER)


def _refuse_made_key_for_approval(csr_for: CsrMaker | None) -> None:
    """A key made for a request that must wait for approval would have to be kept until the
    retry, and the service keeps no private key of its holders."""
    if csr_for is not None:
        raise NotEntitled(
            "this order requires an administrator's approval, and a server-generated key "
            "cannot wait for it (the service keeps no private keys): use simpleenroll with "
            "a key of your own"
        )


def _rejection(request: EnrollmentRequest) -> str:
    reason = f": {request.reason}" if request.reason else ""
    return (
        f"the request of order {request.order_reference} was {REJECTED}{reason}; "
        "ask an administrator for a new order"
    )


def _require_organisation_active(organisation: Organisation | None) -> None:
    if organisation is None or not organisation.is_active:
        raise NotEntitled(
            "the organisation of this identity is disabled; its administrators can tell why"
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
