"""Console sessions: what a sign-in (token or administrator certificate) leaves on the server.

A browser holds only `<id>.<secret>` in an HttpOnly cookie. The store keeps, per session
(table console_sessions), the keyed hash (HMAC-SHA-256 under the service's `hmac.key`, its own
purpose label) of the secret and the principal the sign-in proved; the secret is compared in
constant time. The CSRF token and the key that seals the one-time codes kept for the next page
derive from the secret, so a copy of the table opens no session and shows no code.

In the store, a restart signs no one out and the instances behind one name share the sessions
(no sticky sessions). `last_seen` is written at most once a minute per session, so a page
costs one read of the session (and, for a token's, one of the token) and rarely a write.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import uuid
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from est_ca.admin.access import Principal, PrincipalKind, Scope
from est_ca.clock import Clock
from est_ca.registration.codes import SecretHasher
from est_ca.store.store import Store

SESSION_PURPOSE = "console-session"
_COOKIE = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
IDLE = dt.timedelta(minutes=15)
# However active, a session ends after this.
LIFETIME = dt.timedelta(hours=8)
# How stale `last_seen` may be before a request writes it again (idle is judged to this).
TOUCH = dt.timedelta(minutes=1)


def _derived(secret: str, label: str) -> bytes:
    return hmac.new(
        secret.encode(), f"est-ca {SESSION_PURPOSE} {label}".encode(), hashlib.sha256
    ).digest()


@dataclasses.dataclass(frozen=True)
class Session:
    id: str
    principal: Principal
    # Bound to this session: every form carries it, every POST must return it.
    csrf: str
    created_at: dt.datetime
    last_seen: dt.datetime
    # For a certificate sign-in: the certificate's SHA-256, which every request must present.
    certificate_sha256: str | None = None
    # For a token sign-in: the token's id, checked on every request (revoked or expired: gone).
    token_id: uuid.UUID | None = None
    # Seals the one-time codes kept for the next page; from the cookie's secret, never stored.
    handout_key: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "replace"), self.csrf.encode()
        )


class Sessions:
    """Server-side sessions in the store (see the module's note)."""

    def __init__(
        self,
        store: Store,
        hasher: SecretHasher,
        clock: Clock,
        *,
        idle: dt.timedelta = IDLE,
        lifetime: dt.timedelta = LIFETIME,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._idle = idle
        self._lifetime = lifetime

    async def open(
        self,
        principal: Principal,
        *,
        certificate_sha256: str | None = None,
        token_id: uuid.UUID | None = None,
    ) -> str:
        """A new session for `principal`; returns the cookie value, which exists only here."""
        session_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._store.write() as tx:
            await tx.delete_console_sessions(
                idle_since=now - self._idle, created_before=now - self._lifetime
            )
            await tx.insert_console_session(
                {
                    "id": session_id,
                    "secret_hash": self._hasher.hash(secret, SESSION_PURPOSE),
                    "principal_kind": principal.kind.value,
                    "principal_name": principal.name,
                    "scopes": ",".join(sorted(principal.scopes)),
                    "cvr": principal.cvr,
                    "source": principal.source,
                    "created_at": now,
                    "last_seen": now,
                    "certificate_sha256": certificate_sha256,
                    "token_id": token_id,
                    "handouts": "{}",
                }
            )
        return f"{session_id}.{secret}"

    async def find(self, cookie: str | None) -> Session | None:
        """The live session the cookie names (and marks it used now), else None."""
        match = _COOKIE.fullmatch(cookie or "")
        if match is None:
            return None
        session_id, secret = match.groups()
        async with self._store.read() as tx:
            row = await tx.get_console_session(session_id)
        # Computed and compared even for an unknown id: both cost the same.
        if not self._hasher.verify(secret, row["secret_hash"] if row else None, SESSION_PURPOSE):
            return None
        assert row is not None
        now = self._clock.now()
        if now - row["last_seen"] > self._idle or now - row["created_at"] > self._lifetime:
            await self.end(session_id)
            return None
        if now - row["last_seen"] >= TOUCH:
            async with self._store.write() as tx:
                await tx.update_console_session(session_id, last_seen=now)
            row["last_seen"] = now
        return _session(row, secret)

    async def close(self, cookie: str | None) -> bool:
        """Sign-out: the session is gone on the server, whatever the browser keeps."""
        session = await self.find(cookie)
        if session is None:
            return False
        await self.end(session.id)
        return True

    async def end(self, session_id: str) -> None:
        """End a session (signed out, or no longer good: e.g. its token was revoked)."""
        async with self._store.write() as tx:
            await tx.delete_console_sessions(session_id=session_id)

    async def revoke(self, principal_name: str) -> int:
        """End every session of a token (when it is revoked); how many."""
        async with self._store.write() as tx:
            return await tx.delete_console_sessions(
                principal=(PrincipalKind.TOKEN.value, principal_name)
            )

    async def keep_handout(self, session: Session, reference: str, code: str) -> None:
        """Keep a one-time code for the next page, sealed under the session's own key."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(session.handout_key).encrypt(
            nonce, code.encode(), f"{session.id} {reference}".encode()
        )
        async with self._store.write() as tx:
            row = await tx.get_console_session(session.id, for_update=True)
            if row is None:
                return
            handouts = json.loads(row["handouts"])
            handouts[reference] = base64.b64encode(nonce + sealed).decode()
            await tx.update_console_session(session.id, handouts=json.dumps(handouts))

    async def take_handout(self, session: Session, reference: str) -> str | None:
        """The one-time code kept under `reference` in this session, once; None ever after."""
        async with self._store.write() as tx:
            row = await tx.get_console_session(session.id, for_update=True)
            if row is None:
                return None
            handouts = json.loads(row["handouts"])
            sealed = handouts.pop(reference, None)
            if sealed is None:
                return None
            await tx.update_console_session(session.id, handouts=json.dumps(handouts))
        raw = base64.b64decode(sealed)
        try:
            code = AESGCM(session.handout_key).decrypt(
                raw[:12], raw[12:], f"{session.id} {reference}".encode()
            )
        except InvalidTag:
            return None
        return code.decode()


def _session(row: dict[str, Any], secret: str) -> Session:
    return Session(
        id=row["id"],
        principal=Principal(
            kind=PrincipalKind(row["principal_kind"]),
            name=row["principal_name"],
            scopes=frozenset(Scope(s) for s in row["scopes"].split(",") if s),
            cvr=row["cvr"],
            source=row["source"],
        ),
        csrf=base64.urlsafe_b64encode(_derived(secret, "csrf")).decode().rstrip("="),
        created_at=row["created_at"],
        last_seen=row["last_seen"],
        certificate_sha256=row["certificate_sha256"],
        token_id=row["token_id"],
        handout_key=_derived(secret, "handouts"),
    )
