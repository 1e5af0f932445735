"""The administrator's side: identities, orders, and a view of the certificates issued to them.

Every change is written together with its audit event, in one transaction. The CLI and (later)
the admin API call these methods; neither talks to the store directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence

from est_ca.audit import SERVICE, Actor, AuditEvent, Outcome
from est_ca.ca.certificates import CertificateRecord, CertificateStatus, KeyId, Serial
from est_ca.ca.labels import CaLabel, CaLabels
from est_ca.ca.profiles import Profile, ProfileCatalogue
from est_ca.clock import Clock
from est_ca.errors import AlreadyExists, BadRequest, Conflict, EstCaError, NotFound
from est_ca.registration import codes, importing
from est_ca.registration.approvals import ORDER_CANCELLED, EnrollmentRequest, RequestStatus
from est_ca.registration.codes import SecretHasher
from est_ca.registration.identities import (
    Identity,
    IdentityStatus,
    IdentityType,
    check_cvr,
)
from est_ca.registration.importing import (
    ImportFormat,
    ImportRejected,
    ImportRow,
    Progress,
    RowError,
    same_record,
)
from est_ca.registration.orders import Order, OrderState, OrderStatus, PlacedOrder
from est_ca.registration.organisations import Organisation, OrganisationStatus
from est_ca.store.store import Store, StoreTx
from est_ca.workers import Workers, chunks

IMPORTED_MEANWHILE = "another import registered some of these rows meanwhile; run it again"
# Rows handed to a worker at a time in bulk work: small enough that the event loop gets the
# interpreter back often, large enough that the hand-over costs little.
WORK_CHUNK = 500


def _import_events(
    actor: Actor,
    now: dt.datetime,
    import_id: str,
    rows: Sequence[ImportRow],
    orders: Sequence[tuple[PlacedOrder, str]],
) -> list[AuditEvent]:
    """One event per identity and per order of a chunk; the import's last transaction says
    that they became active (`import.completed`), or its cleanup that they were removed."""
    identities = [
        AuditEvent(
            action="identity.created",
            outcome=Outcome.SUCCESS,
            actor=actor,
            at=now,
            identity_id=row.identity.id,
            details={"type": row.identity.type.value, "cvr": row.identity.cvr, "import": import_id},
        )
        for row in rows
    ]
    placed = [
        AuditEvent(
            action="order.created",
            outcome=Outcome.SUCCESS,
            actor=actor,
            at=now,
            identity_id=order.order.identity_id,
            order_reference=order.order.reference,
            details={"profile": order.order.profile, "import": import_id},
        )
        for order, _ in orders
    ]
    return identities + placed


def _of_registered_organisations(
    rows: Sequence[ImportRow], organisations: dict[str, Organisation]
) -> tuple[list[ImportRow], list[RowError]]:
    """Rows of registered, active organisations, each identity with its organisation's name,
    and an error for every row that is not (unknown CVR, other name, foreign email domain)."""
    accepted: list[ImportRow] = []
    errors: list[RowError] = []
    for row in rows:
        organisation = organisations.get(row.identity.cvr)
        if organisation is None:
            errors.append(
                RowError(
                    row.line, "cvr", f"no organisation with CVR {row.identity.cvr} is registered"
                )
            )
            continue
        try:
            organisation.admit(row.organisation_name)
            organisation.check_email(row.identity.email)
        except BadRequest as exc:
            errors.append(RowError(row.line, exc.field, exc.detail))
            continue
        named = dataclasses.replace(row.identity, organisation_name=organisation.name)
        accepted.append(dataclasses.replace(row, identity=named))
    return accepted, errors


def _same_organisation(new: Organisation, existing: Organisation) -> bool:
    return (new.name, new.email_domains, new.status) == (
        existing.name,
        existing.email_domains,
        existing.status,
    )


@dataclasses.dataclass(frozen=True)
class ImportResult:
    created: list[Identity]
    existing: list[Identity]
    # The orders placed for created identities, with their one-time codes: shown once.
    orders: list[PlacedOrder]


@dataclasses.dataclass(frozen=True)
class OrderPolicy:
    validity: dt.timedelta
    max_failed_attempts: int
    claim_lease: dt.timedelta
    # What a 202 tells a client waiting for approval (Retry-After, seconds).
    approval_retry_after_seconds: int = 60


class Registry:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        hasher: SecretHasher,
        workers: Workers,
        profiles: ProfileCatalogue,
        order_policy: OrderPolicy,
        labels: CaLabels,
    ) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher
        self._workers = workers
        self._profiles = profiles
        self.order_policy = order_policy
        self.labels = labels

    # -- organisations ----------------------------------------------------------------------

    async def create_organisation(
        self, actor: Actor, *, cvr: str, name: str, email_domains: Sequence[str] = ()
    ) -> Organisation:
        organisation = Organisation(
            cvr=cvr,
            name=name,
            email_domains=tuple(email_domains),
            status=OrganisationStatus.ACTIVE,
            created_at=self._clock.now(),
        )
        await self.import_organisations(actor, [organisation], single=True)
        return organisation

    async def import_organisations(
        self, actor: Actor, organisations: Sequence[Organisation], *, single: bool = False
    ) -> tuple[list[Organisation], list[Organisation]]:
        """New organisations (created) and those registered already with the same data
        (skipped); one registered with other data is an error, changed only by update."""
        async with self._store.write() as tx:
            existing = await tx.organisations_by_cvr([o.cvr for o in organisations])
            if single and existing:
                raise Conflict(f"organisation {organisations[0].cvr} is registered already")
            differing = [
                o.cvr
                for o in organisations
                if o.cvr in existing and not _same_organisation(o, existing[o.cvr])
            ]
            if differing:
                raise BadRequest(
                    f"organisation {differing[0]} is registered with other data; change it "
                    "with an update, not by import",
                    field="cvr",
                )
            new = [o for o in organisations if o.cvr not in existing]
            await tx.insert_organisations(new)
            await tx.append_audits(
                [
                    AuditEvent(
                        action="organisation.created",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=o.created_at,
                        details={
                            "cvr": o.cvr,
                            "name": o.name,
                            "email_domains": ",".join(o.email_domains),
                        },
                    )
                    for o in new
                ]
            )
        return new, [existing[o.cvr] for o in organisations if o.cvr in existing]

    async def update_organisation(
        self,
        actor: Actor,
        cvr: str,
        *,
        name: str | None = None,
        email_domains: Sequence[str] | None = None,
        status: OrganisationStatus | None = None,
    ) -> Organisation:
        """A new name reaches certificates at their next issuance or renewal; addresses of
        existing identities are not re-checked against new domains (disable those).
        Disabling revokes the organisation's IdM login tokens in the same transaction, so a
        reactivation within their hour does not bring a leaked one back (a new login does)."""
        now = self._clock.now()
        async with self._store.write() as tx:
            current = await tx.get_organisation(check_cvr(cvr), for_update=True)
            if current is None:
                raise NotFound(f"no organisation with CVR {cvr}")
            changed = current.updated(
                name=name,
                email_domains=tuple(email_domains) if email_domains is not None else None,
                status=status,
            )
            revoked = (
                await tx.revoke_organisation_idm_tokens(changed.cvr, now)
                if changed.status is not OrganisationStatus.ACTIVE
                else 0
            )
            if changed != current:
                await tx.update_organisation(changed, now)
                await tx.append_audit(
                    AuditEvent(
                        action="organisation.updated",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=now,
                        details={
                            "cvr": changed.cvr,
                            "name": changed.name,
                            "email_domains": ",".join(changed.email_domains),
                            "status": changed.status.value,
                            "tokens_revoked": str(revoked),
                        },
                    )
                )
        return changed

    async def get_organisation(self, cvr: str) -> Organisation:
        async with self._store.read() as tx:
            organisation = await tx.get_organisation(cvr.strip())
        if organisation is None:
            raise NotFound(f"no organisation with CVR {cvr}")
        return organisation

    async def list_organisations(
        self,
        *,
        cvr: str | None = None,
        status: OrganisationStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Organisation]:
        async with self._store.read() as tx:
            return await tx.list_organisations(cvr=cvr, status=status, limit=limit, offset=offset)

    # -- identities -------------------------------------------------------------------------

    async def create_identity(
        self,
        actor: Actor,
        *,
        type: IdentityType,
        cvr: str,
        organisation_name: str | None = None,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
    ) -> Identity:
        """A new identity of a registered, active organisation, whose name it takes; its
        email address must be in one of the organisation's domains. `organisation_name`, if
        given, must be the registered name (callers of earlier versions sent it)."""
        now = self._clock.now()
        async with self._store.write() as tx:
            organisation = await self._organisation_for(tx, cvr, organisation_name)
            identity = Identity.create(
                type=type,
                organisation_name=organisation.name,
                cvr=cvr,
                created_at=now,
                display_name=display_name,
                given_name=given_name,
                surname=surname,
                email=email,
            )
            organisation.check_email(identity.email)
            await tx.insert_identity(identity)
            await tx.append_audit(
                AuditEvent(
                    action="identity.created",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=identity.id,
                    details={"type": identity.type.value, "cvr": identity.cvr},
                )
            )
        return identity

    @staticmethod
    async def _organisation_for(
        tx: StoreTx, cvr: str, organisation_name: str | None
    ) -> Organisation:
        organisation = await tx.get_organisation(check_cvr(cvr))
        if organisation is None:
            raise BadRequest(
                f"no organisation with CVR {cvr.strip()} is registered; an administrator of the "
                "CA must register it first (est-ca organisation create)",
                field="cvr",
            )
        organisation.admit(organisation_name)
        return organisation

    async def get_identity(self, identity_id: uuid.UUID) -> Identity:
        async with self._store.read() as tx:
            identity = await tx.get_identity(identity_id)
        if identity is None:
            raise NotFound(f"no identity {identity_id}")
        return identity

    async def update_identity(
        self,
        actor: Actor,
        identity_id: uuid.UUID,
        *,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
    ) -> Identity:
        """New names or email; certificates already issued keep theirs, renewals get these."""
        now = self._clock.now()
        async with self._store.write() as tx:
            current = await tx.get_identity(identity_id)
            if current is None:
                raise NotFound(f"no identity {identity_id}")
            changed = current.updated(
                display_name=display_name, given_name=given_name, surname=surname, email=email
            )
            if changed.email != current.email:
                organisation = await tx.get_organisation(current.cvr)
                assert organisation is not None  # an identity's organisation stays
                organisation.check_email(changed.email)
            fields = [
                name
                for name in ("display_name", "given_name", "surname", "email")
                if getattr(changed, name) != getattr(current, name)
            ]
            if fields:
                await tx.update_identity(changed, now)
                await tx.append_audit(
                    AuditEvent(
                        action="identity.updated",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=now,
                        identity_id=identity_id,
                        details={"fields": ",".join(fields)},
                    )
                )
        return changed

    async def import_identities(
        self,
        actor: Actor,
        rows: Sequence[ImportRow],
        *,
        place_orders: bool = False,
        progress: Progress | None = None,
    ) -> ImportResult:
        """All rows or none; rows already imported are skipped.

        A big file is written in stages, so that no transaction holds the database for long
        (SQLite has one writer at a time; everyone else's enrollment waits for it): the rows
        go in a chunk at a time as staged (usable by no one), and one short transaction at
        the end makes them all active together. An import that fails or dies half way leaves
        only staged rows, which are removed (at once, or by `remove_stale_imports`)."""
        async with self._store.read() as tx:
            existing = await tx.identities_by_external_id([row.key for row in rows])
            organisations = await tx.organisations_by_cvr([row.identity.cvr for row in rows])
        new_rows, organisation_errors = _of_registered_organisations(
            [row for row in rows if row.key not in existing], organisations
        )
        errors = [
            RowError(
                row.line,
                None,
                f"external_id {row.key[1]!r} of CVR {row.key[0]} is registered "
                "with other data; change that identity itself, not by import",
            )
            for row in rows
            if row.key in existing and not same_record(row.identity, existing[row.key])
        ] + organisation_errors
        if place_orders:
            for row in new_rows:
                try:
                    self.profile_for(row.identity, None)
                except BadRequest as exc:
                    errors.append(RowError(row.line, exc.field, exc.detail))
        if errors:
            raise ImportRejected(errors)
        orders = await self._prepare_orders(new_rows, progress) if place_orders else []
        await self._import_in_stages(actor, new_rows, orders, progress)
        if progress:
            progress("importing", len(rows), len(rows))
        return ImportResult(
            created=[row.identity for row in new_rows],
            existing=[existing[row.key] for row in rows if row.key in existing],
            orders=[placed for placed, _ in orders],
        )

    async def _import_in_stages(
        self,
        actor: Actor,
        rows: Sequence[ImportRow],
        orders: Sequence[tuple[PlacedOrder, str]],
        progress: Progress | None,
    ) -> None:
        now = self._clock.now()
        import_id = str(uuid.uuid4())
        staged_ids = [row.identity.id for row in rows]
        orders_of = {placed.order.identity_id: (placed, code_hash) for placed, code_hash in orders}
        try:
            written = 0
            for chunk in chunks(rows, WORK_CHUNK):
                chunk_orders = [
                    orders_of[r.identity.id] for r in chunk if r.identity.id in orders_of
                ]
                async with self._store.write() as tx:
                    if await tx.identities_by_external_id([row.key for row in chunk]):
                        raise Conflict(IMPORTED_MEANWHILE)
                    await tx.insert_identities(
                        [
                            dataclasses.replace(r.identity, status=IdentityStatus.STAGED)
                            for r in chunk
                        ]
                    )
                    await tx.insert_orders(
                        [
                            (dataclasses.replace(p.order, status=OrderStatus.STAGED), code_hash)
                            for p, code_hash in chunk_orders
                        ]
                    )
                    await tx.append_audits(
                        _import_events(actor, now, import_id, chunk, chunk_orders)
                    )
                written += len(chunk)
                if progress:
                    progress("importing", written, len(rows))
            async with self._store.write() as tx:
                activated = await tx.activate_staged(
                    staged_ids, [placed.order.id for placed, _ in orders], self._clock.now()
                )
                if activated != len(staged_ids):
                    raise Conflict("the import took too long and was cleaned up; run it again")
                await tx.append_audit(
                    AuditEvent(
                        action="import.completed",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        at=self._clock.now(),
                        details={
                            "import": import_id,
                            "identities": str(len(rows)),
                            "orders": str(len(orders)),
                        },
                    )
                )
        except BaseException as exc:
            reason = exc.detail if isinstance(exc, EstCaError) else type(exc).__name__
            await asyncio.shield(self._abandon_import(actor, import_id, staged_ids, reason))
            if isinstance(exc, AlreadyExists):  # a row's key taken by a concurrent import
                raise Conflict(IMPORTED_MEANWHILE) from exc
            raise

    async def _abandon_import(
        self, actor: Actor, import_id: str, staged_ids: Sequence[uuid.UUID], reason: str
    ) -> None:
        async with self._store.write() as tx:
            removed = await tx.delete_staged(staged_ids)
            await tx.append_audit(
                AuditEvent(
                    action="import.abandoned",
                    outcome=Outcome.FAILED,
                    actor=actor,
                    at=self._clock.now(),
                    reason=reason,
                    details={"import": import_id, "identities_removed": str(removed)},
                )
            )

    async def remove_stale_imports(self, older_than: dt.timedelta) -> int:
        """Remove what imports that died half way staged (usable by no one, ever)."""
        async with self._store.read() as tx:
            stale = await tx.stale_staged_identities(self._clock.now() - older_than)
        if stale:
            await self._abandon_import(
                SERVICE, "unknown", stale, "the import did not finish (its process stopped)"
            )
        return len(stale)

    def parse_organisations(self, text: str, kind: ImportFormat) -> list[Organisation]:
        """The organisations of an import file (a few thousand rows at most: no chunks)."""
        return importing.parse_organisations(text, kind, self._clock.now())

    async def parse_import(self, text: str, kind: ImportFormat) -> list[ImportRow]:
        """The rows of an import file, checked on a worker a chunk at a time, so the event
        loop and the other workers keep serving everyone else meanwhile."""
        make = importing.csv_parser if kind == "csv" else importing.json_lines_parser
        parser = await self._workers.run(make, text, self._clock.now())
        while not await self._workers.run(parser.step, WORK_CHUNK):
            pass
        return parser.result()

    async def _prepare_orders(
        self, rows: Sequence[ImportRow], progress: Progress | None
    ) -> list[tuple[PlacedOrder, str]]:
        """An order and its code's keyed hash per row, made on a worker in bounded chunks so
        the event loop keeps serving everyone else meanwhile."""
        now = self._clock.now()
        prepared: list[tuple[PlacedOrder, str]] = []
        for chunk in chunks(rows, WORK_CHUNK):
            prepared += await self._workers.run(self._orders_for, chunk, now)
            if progress:
                progress("placing orders", len(prepared), len(rows))
        return prepared

    def _orders_for(
        self, rows: Sequence[ImportRow], now: dt.datetime
    ) -> list[tuple[PlacedOrder, str]]:
        """Blocking: codes, references and keyed hashes for a chunk of rows."""
        prepared = []
        for row in rows:
            code = codes.new_one_time_code()
            profile = self.profile_for(row.identity, None)
            order = Order.place(
                reference=codes.new_reference(),
                identity_id=row.identity.id,
                profile=profile.name,
                created_at=now,
                validity=self.order_policy.validity,
                ca_label=self.label_for(profile, None).name,
            )
            prepared.append((PlacedOrder(order=order, one_time_code=code), self._hasher.hash(code)))
        return prepared

    async def list_identities(
        self,
        *,
        type: IdentityType | None = None,
        cvr: str | None = None,
        status: IdentityStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Identity]:
        async with self._store.read() as tx:
            return await tx.list_identities(
                type=type, cvr=cvr, status=status, limit=limit, offset=offset
            )

    # -- orders -----------------------------------------------------------------------------

    def profile_for(self, identity: Identity, name: str | None) -> Profile:
        """The named profile, or the identity type's default; it must fit the identity."""
        profile = self._profiles.get(name) if name else self._profiles.default_for(identity.type)
        if profile is None:
            wanted = name or f"the default profile for {identity.type.value}"
            raise BadRequest(f"no certificate profile {wanted!r}", field="profile")
        if profile.identity_type is not identity.type:
            raise BadRequest(
                f"profile {profile.name!r} is for {profile.identity_type.value} identities, "
                f"not {identity.type.value}",
                field="profile",
            )
        if profile.email_san == "required" and identity.email is None:
            raise BadRequest(
                f"profile {profile.name!r} needs an email address and the identity has none",
                field="email",
            )
        return profile

    def label_for(self, profile: Profile, name: str | None) -> CaLabel:
        """The CA label an order is enrolled under (None: the default), which must allow its
        profile."""
        try:
            label = self.labels.get(name)
        except NotFound as exc:
            raise BadRequest(exc.detail, field="ca_label") from exc
        if not label.allows(profile.name):
            raise BadRequest(
                f"the CA label {label.name!r} does not issue profile {profile.name!r} "
                f"(it issues {', '.join(sorted(label.profiles))})",
                field="ca_label",
            )
        return label

    async def place_order(
        self,
        actor: Actor,
        identity_id: uuid.UUID,
        *,
        profile: str | None = None,
        validity_days: int | None = None,
        ca_label: str | None = None,
        require_approval: bool = False,
    ) -> PlacedOrder:
        """A new order; the one-time code is in the result and nowhere else, ever.

        With `require_approval`, its enrollment waits for an administrator (approvals.py)."""
        identity = await self.get_identity(identity_id)
        if not identity.is_active:
            raise Conflict(f"identity {identity.id} is disabled; no orders can be placed for it")
        (await self.get_organisation(identity.cvr)).require_active()
        chosen = self.profile_for(identity, profile)
        label = self.label_for(chosen, ca_label)
        if validity_days is not None and not 1 <= validity_days <= 365:
            raise BadRequest("an order is valid for 1 to 365 days", field="validity_days")
        validity = dt.timedelta(days=validity_days) if validity_days else self.order_policy.validity
        code = codes.new_one_time_code()
        code_hash = self._hasher.hash(code)
        for _attempt in range(3):  # a reference collision (60 random bits) only ever retries
            now = self._clock.now()
            order = Order.place(
                reference=codes.new_reference(),
                identity_id=identity.id,
                profile=chosen.name,
                created_at=now,
                validity=validity,
                ca_label=label.name,
                require_approval=require_approval,
            )
            try:
                async with self._store.write() as tx:
                    await tx.insert_order(order, code_hash)
                    await tx.append_audit(
                        AuditEvent(
                            action="order.created",
                            outcome=Outcome.SUCCESS,
                            actor=actor,
                            at=now,
                            identity_id=identity.id,
                            order_reference=order.reference,
                            details={
                                "profile": chosen.name,
                                "ca_label": label.name,
                                "expires_at": order.expires_at.isoformat(),
                                **({"require_approval": "yes"} if require_approval else {}),
                            },
                        )
                    )
            except AlreadyExists:  # the reference was taken
                continue
            return PlacedOrder(order=order, one_time_code=code)
        raise Conflict("could not allocate a unique order reference; try again")

    async def get_order(self, reference: str) -> Order:
        async with self._store.read() as tx:
            found = await tx.get_order_by_reference(codes.normalise(reference))
        if found is None:
            raise NotFound(f"no order {reference!r}")
        return found[0]

    async def list_orders(
        self,
        *,
        identity_id: uuid.UUID | None = None,
        state: OrderState | None = None,
        cvr: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Order]:
        async with self._store.read() as tx:
            return await tx.list_orders(
                identity_id=identity_id,
                state=state,
                now=self._clock.now(),
                cvr=cvr,
                limit=limit,
                offset=offset,
            )

    # -- enrollment requests awaiting approval ----------------------------------------------

    async def list_requests(
        self,
        *,
        status: RequestStatus | None = None,
        cvr: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[EnrollmentRequest]:
        async with self._store.read() as tx:
            return await tx.list_requests(status=status, cvr=cvr, limit=limit, offset=offset)

    async def get_request(self, reference: str) -> EnrollmentRequest:
        order = await self.get_order(reference)
        async with self._store.read() as tx:
            request = await tx.get_request(order.id)
        if request is None:
            raise NotFound(f"no enrollment request for order {order.reference}")
        return request

    async def approve_request(self, actor: Actor, reference: str) -> EnrollmentRequest:
        """The client's next retry with the same CSR gets the certificate."""
        return await self._decide(actor, reference, RequestStatus.APPROVED, None)

    async def reject_request(
        self, actor: Actor, reference: str, reason: str | None = None
    ) -> EnrollmentRequest:
        """The client's next retry is refused; the order is cancelled with it, so nothing can
        be issued on it any more (place a new order to let the client try again)."""
        return await self._decide(actor, reference, RequestStatus.REJECTED, reason)

    async def _decide(
        self, actor: Actor, reference: str, status: RequestStatus, reason: str | None
    ) -> EnrollmentRequest:
        if reason is not None and (len(reason) > 500 or not reason.isprintable()):
            raise BadRequest("a reason is at most 500 printable characters", field="reason")
        request = await self.get_request(reference)
        now = self._clock.now()
        async with self._store.write() as tx:
            found = await tx.get_order_by_reference(request.order_reference, for_update=True)
            assert found is not None  # orders are never deleted
            order = found[0]
            if status is RequestStatus.APPROVED and order.state(now) is not OrderState.PENDING:
                raise Conflict(
                    f"order {order.reference} is {order.state(now).value}; its request cannot "
                    "be approved"
                )
            if not await tx.decide_request(order.id, status, now=now, by=str(actor), reason=reason):
                current = await tx.get_request(order.id)
                assert current is not None
                raise Conflict(
                    f"the request of order {order.reference} is {current.status.value} already"
                )
            if status is RequestStatus.REJECTED:
                await tx.cancel_order(order.id, now)
            await tx.append_audit(
                AuditEvent(
                    action=f"request.{status.value}",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=order.identity_id,
                    order_reference=order.reference,
                    reason=reason if status is RequestStatus.REJECTED else None,
                    details={"csr_sha256": request.csr_sha256},
                )
            )
            decided = await tx.get_request(order.id)
        assert decided is not None
        return decided

    async def count_records(self) -> dict[str, dict[str, int]]:
        """Organisations, identities and certificates per status, orders per state."""
        async with self._store.read() as tx:
            return await tx.count_records(self._clock.now())

    async def cancel_order(self, actor: Actor, reference: str) -> Order:
        order = await self.get_order(reference)
        now = self._clock.now()
        async with self._store.write() as tx:
            if not await tx.cancel_order(order.id, now):
                state = order.state(now)
                raise Conflict(f"order {order.reference} is {state.value}; it cannot be cancelled")
            await tx.decide_request(
                order.id, RequestStatus.REJECTED, now=now, by=str(actor), reason=ORDER_CANCELLED
            )
            await tx.append_audit(
                AuditEvent(
                    action="order.cancelled",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=order.identity_id,
                    order_reference=order.reference,
                )
            )
            cancelled = await tx.get_order(order.id)
        assert cancelled is not None
        return cancelled

    async def unlock_order(self, actor: Actor, reference: str) -> Order:
        order = await self.get_order(reference)
        now = self._clock.now()
        async with self._store.write() as tx:
            if not await tx.unlock_order(order.id):
                raise Conflict(f"order {order.reference} is not locked")
            await tx.append_audit(
                AuditEvent(
                    action="order.unlocked",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=order.identity_id,
                    order_reference=order.reference,
                )
            )
            unlocked = await tx.get_order(order.id)
        assert unlocked is not None
        return unlocked

    def order_state(self, order: Order) -> OrderState:
        return order.state(self._clock.now())

    # -- certificates -----------------------------------------------------------------------

    async def list_certificates(
        self,
        *,
        identity_id: uuid.UUID | None = None,
        status: CertificateStatus | None = None,
        cvr: str | None = None,
        expires_after: dt.datetime | None = None,
        expires_before: dt.datetime | None = None,
        expiring_within: dt.timedelta | None = None,
        limit: int = 100,
        offset: int = 0,
        identity_type: IdentityType | None = None,
    ) -> list[CertificateRecord]:
        """`expiring_within`: the renewal window an operator asks about, judged now: issued
        (unless `status` says otherwise) and still valid, with notAfter within it; the explicit
        bounds narrow it further."""
        if expiring_within is not None:
            now = self._clock.now()
            status = status or CertificateStatus.ISSUED
            expires_after = max(expires_after, now) if expires_after else now
            end = now + expiring_within
            expires_before = min(expires_before, end) if expires_before else end
        async with self._store.read() as tx:
            return await tx.list_certificates(
                identity_id=identity_id,
                status=status,
                cvr=cvr,
                expires_after=expires_after,
                expires_before=expires_before,
                limit=limit,
                offset=offset,
                identity_type=identity_type,
            )

    async def get_certificate(
        self, serial: Serial, *, issuer: KeyId | None = None
    ) -> CertificateRecord:
        """By serial and issuer, or by serial alone while one CA has it (else Conflict)."""
        async with self._store.read() as tx:
            record = await tx.certificate_by_serial(serial, issuer)
        if record is None:
            raise NotFound(f"no certificate with serial {serial}")
        return record

    async def certificates_with_serial(self, serial: Serial) -> list[CertificateRecord]:
        """Every CA's certificate with this serial."""
        async with self._store.read() as tx:
            return await tx.certificates_with_serial(serial)
