"""How admin API callers authenticate: API tokens, or an administrator's TLS certificate.

A certificate this service's own CAs issued is never an administrator's (admin/idm.py decides
what an organisation's system certificate may do); the admin trust anchor's are.

Tokens are created and revoked from the CLI, shown once, kept only as a hash.

A token is `estca_<id>_<secret>`: the id finds the record, the secret (256 random bits) is
compared in constant time with the keyed hash (HMAC-SHA-256, key outside the database) kept for
it. A slow hash buys nothing for 256-bit random secrets and would cost every API call tens of
milliseconds. Tokens made by earlier versions kept a bare SHA-256; they still verify.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from est_ca.admin.access import ApiToken, CertificateLink, Principal, PrincipalKind, Scope
from est_ca.audit import Actor, AuditEvent, Outcome
from est_ca.ca.certificates import KeyId, Serial
from est_ca.clock import Clock
from est_ca.errors import (
    BadRequest,
    Conflict,
    NotEntitled,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from est_ca.registration.codes import API_TOKEN, SecretHasher
from est_ca.registration.identities import check_cvr
from est_ca.store.store import Store
from est_ca.throttle import SourceGuard

PREFIX = "estca"
_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{32}})_([A-Za-z0-9_-]{{43}})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
INVALID_TOKEN = "the token is unknown, expired or revoked"  # noqa: S105 - a message


def issued_by_any(certificate: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    """Whether one of `cas` signed `certificate` (names and signature, not validity)."""
    for ca in cas:
        if ca.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _legacy_hash(secret: str) -> str:
    """How tokens were stored before the keyed hash: a bare SHA-256."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class Tokens:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        guard: SourceGuard,
        hasher: SecretHasher,
        own_cas: Sequence[x509.Certificate] = (),
    ) -> None:
        self._store = store
        self._clock = clock
        self._guard = guard
        self._hasher = hasher
        # This service's CA certificates (every label and generation): what they issued are
        # subscribers' certificates, never administrators'.
        self._own_cas = tuple(own_cas)

    def is_ours(self, certificate: x509.Certificate) -> bool:
        """Whether this service's CAs issued `certificate` (a subscriber's, not an admin's)."""
        return issued_by_any(certificate, self._own_cas)

    def _matches(self, secret: str, stored: str) -> bool:
        if "$" in stored:
            return self._hasher.verify(secret, stored, API_TOKEN)
        return hmac.compare_digest(stored, _legacy_hash(secret))

    async def create(
        self,
        actor: Actor,
        *,
        name: str,
        scopes: frozenset[Scope],
        cvr: str | None,
        valid_days: int,
    ) -> tuple[ApiToken, str]:
        """The token and its secret string, which exists here and nowhere else."""
        if not _NAME.fullmatch(name):
            raise BadRequest("a token name is letters, digits, '.', '_' and '-'", field="name")
        if not 1 <= valid_days <= 730:
            raise BadRequest("a token is valid for 1 to 730 days", field="valid_days")
        now = self._clock.now()
        token = ApiToken(
            id=uuid.uuid4(),
            name=name,
            scopes=scopes,
            cvr=check_cvr(cvr) if cvr else None,
            created_at=now,
            expires_at=now + dt.timedelta(days=valid_days),
        )
        secret = secrets.token_urlsafe(32)
        async with self._store.write() as tx:
            if await tx.get_api_token_by_name(name) is not None:
                raise Conflict(f"a token named {name!r} exists; revoke it or pick another name")
            await tx.insert_api_token(token, self._hasher.hash(secret, API_TOKEN))
            await tx.append_audit(
                AuditEvent(
                    action="token.created",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    details={
                        "token": name,
                        "scopes": ",".join(sorted(scopes)),
                        "cvr": token.cvr or "all",
                        "expires_at": token.expires_at.isoformat(),
                    },
                )
            )
        return token, f"{PREFIX}_{token.id.hex}_{secret}"

    async def create_linked(
        self,
        actor: Actor,
        *,
        name: str,
        scopes: frozenset[Scope],
        cvr: str,
        lifetime: dt.timedelta,
        certificate: CertificateLink,
        live: int,
    ) -> tuple[ApiToken, str]:
        """A short-lived token standing on a system certificate, made and audited (idm.login)
        in one transaction; the token and its secret, which exists here and nowhere else. The
        certificate's live tokens beyond the `live` newest (this one included) are revoked in
        the same transaction."""
        now = self._clock.now()
        token = ApiToken(
            id=uuid.uuid4(),
            name=name,
            scopes=scopes,
            cvr=cvr,
            created_at=now,
            expires_at=now + lifetime,
            certificate=certificate,
        )
        secret = secrets.token_urlsafe(32)
        async with self._store.write() as tx:
            await tx.insert_api_token(token, self._hasher.hash(secret, API_TOKEN))
            revoked = await tx.revoke_idm_tokens_beyond(certificate, token.id, live, now)
            await tx.append_audit(
                AuditEvent(
                    action="idm.login",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    identity_id=certificate.identity_id,
                    serial=certificate.serial,
                    details={
                        "token": name,
                        "cvr": cvr,
                        "scopes": ",".join(sorted(scopes)),
                        "expires_at": token.expires_at.isoformat(),
                        "tokens_revoked": str(revoked),
                    },
                )
            )
        return token, f"{PREFIX}_{token.id.hex}_{secret}"

    async def revoke(self, actor: Actor, name: str) -> ApiToken:
        now = self._clock.now()
        async with self._store.write() as tx:
            token = await tx.get_api_token_by_name(name)
            if token is None:
                raise NotFound(f"no token named {name!r}")
            if not await tx.revoke_api_token(token.id, now):
                raise Conflict(f"the token {name!r} is already revoked")
            await tx.append_audit(
                AuditEvent(
                    action="token.revoked",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=now,
                    details={"token": name},
                )
            )
            revoked = await tx.get_api_token_by_name(name)
        assert revoked is not None
        return revoked

    async def list(self, *, expired_idm: bool = False) -> list[ApiToken]:
        """Every token, but an IdM's login token only while it has not expired (they are
        many, one per login), unless `expired_idm`."""
        now = self._clock.now()
        async with self._store.read() as tx:
            listed = await tx.list_api_tokens()
        if expired_idm:
            return listed
        return [t for t in listed if t.certificate is None or now < t.expires_at]

    async def authenticate(self, presented: str, source: str | None) -> Principal:
        """The principal of a valid token; a failure is audited (without the token) and 401,
        and counts against the source address (429 when it has failed too often)."""
        await self._check_source(Actor("token", "-", source))
        match = _TOKEN.fullmatch(presented.strip())
        token = None
        standing = None
        if match:
            async with self._store.read() as tx:
                found = await tx.get_api_token(uuid.UUID(match.group(1)))
                if found is not None and found[0].certificate is not None:
                    link = found[0].certificate
                    # An IdM's token is good only while its certificate and grant are: read
                    # on every use, never cached.
                    standing = await tx.idm_standing(
                        KeyId(link.issuer_key_id), Serial.from_hex(link.serial)
                    )
            if found is not None:
                stored_token, stored_hash = found
                if self._matches(match.group(2), stored_hash):
                    token = stored_token
        now = self._clock.now()
        if token is None or not token.usable_at(now):
            await self._login_failed(
                Actor("token", token.name if token else "unknown", source),
                "expired or revoked token" if token else "unknown token or wrong secret",
                counts=True,
            )
            raise Unauthenticated(INVALID_TOKEN)
        scopes = token.scopes
        if token.certificate is not None:
            refusal = standing.refusal(now) if standing else "the certificate is not on record"
            if refusal is not None:
                await self._login_failed(
                    Actor("idm-token", token.name, source),
                    f"the token's system certificate no longer serves: {refusal}",
                    counts=False,
                )
                raise Unauthenticated(
                    f"this token's system certificate no longer serves: {refusal}"
                )
            assert standing is not None
            assert standing.scopes is not None
            # A grant narrowed since the login narrows the token too.
            scopes = scopes & standing.scopes
        kind = PrincipalKind.IDM_TOKEN if token.certificate else PrincipalKind.TOKEN
        async with self._store.write() as tx:
            await tx.touch_api_token(token.id, now)
            await tx.append_audit(
                AuditEvent(
                    action="token.used",
                    outcome=Outcome.SUCCESS,
                    actor=Actor(kind.value, token.name, source),
                    at=now,
                )
            )
        return Principal(kind=kind, name=token.name, scopes=scopes, cvr=token.cvr, source=source)

    async def scopes_now(self, token_id: uuid.UUID) -> frozenset[Scope] | None:
        """What a token already authenticated (a console session's) may do now: None once it
        is revoked or expired or, for an IdM's, once its certificate or grant no longer serve;
        an IdM's grant narrowed since narrows it. Read on every use, never cached."""
        async with self._store.read() as tx:
            found = await tx.get_api_token(token_id)
            token = found[0] if found is not None else None
            standing = None
            if token is not None and token.certificate is not None:
                link = token.certificate
                standing = await tx.idm_standing(
                    KeyId(link.issuer_key_id), Serial.from_hex(link.serial)
                )
        now = self._clock.now()
        if token is None or not token.usable_at(now):
            return None
        if token.certificate is None:
            return token.scopes
        if standing is None or standing.refusal(now) is not None:
            return None
        assert standing.scopes is not None
        return token.scopes & standing.scopes

    async def authenticate_certificate(
        self, der: bytes, *, scopes: frozenset[Scope], source: str | None
    ) -> Principal:
        """The administrator a client certificate names (its CN), with the scopes configured for
        certificates. The TLS handshake verified it against the admin trust anchor, validity
        times included; its use is audited with its serial."""
        certificate = x509.load_der_x509_certificate(der)
        if self.is_ours(certificate):
            # Our subscribers' certificates pass the admin listener's handshake too (for an
            # organisation's IdM); they never make an administrator.
            await self._login_failed(
                Actor("certificate", format(certificate.serial_number, "x"), source),
                "a certificate issued by this CA presented as an administrator's",
                counts=False,
            )
            raise NotEntitled("a certificate issued by this CA is not an administrator's")
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else certificate.subject.rfc4514_string()
        principal = Principal(
            kind=PrincipalKind.ADMIN_CERTIFICATE,
            name=name,
            scopes=scopes,
            cvr=None,
            source=source,
        )
        await self._store.append_audit(
            AuditEvent(
                action="admin.certificate_used",
                outcome=Outcome.SUCCESS,
                actor=principal.actor,
                at=self._clock.now(),
                serial=format(certificate.serial_number, "x"),
            )
        )
        return principal

    async def record_refusal(self, event: AuditEvent) -> None:
        """Another refusal on the admin listener (an IdM's certificate): coalesced per source
        like every refusal, so a subscriber's certificate, which passes the handshake, cannot
        flood the audit trail; not counted (the handshake proved the certificate)."""
        await self._guard.refused(event, counts=False)

    async def refused(self, actor: Actor, reason: str) -> None:
        """A request to the admin API without usable credentials: audited (coalesced per
        source) and counted against the source, like a wrong token."""
        await self._check_source(actor)
        await self._login_failed(actor, reason, counts=True)

    async def _check_source(self, actor: Actor) -> None:
        """429 for a source that failed too often; the refusal is audited like any other."""
        try:
            await self._guard.check(actor.source)
        except RateLimited as exc:
            await self._login_failed(actor, exc.audit_reason, counts=False)
            raise

    async def _login_failed(self, actor: Actor, reason: str, *, counts: bool) -> None:
        await self._guard.refused(
            AuditEvent(
                action="admin.login_failed",
                outcome=Outcome.REFUSED,
                actor=actor,
                at=self._clock.now(),
                reason=reason,
            ),
            counts=counts,
        )
