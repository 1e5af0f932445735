"""Console sessions: what a sign-in (token or administrator certificate) leaves on the server.

A browser holds only `<id>.<secret>` in an HttpOnly cookie. The server keeps, per session, the
keyed hash (HMAC-SHA-256 under the service's `hmac.key`, its own purpose label) of the secret,
the principal the sign-in proved and a CSRF token; the secret is compared in constant time,
so a copy of this table (or a memory dump of it) does not give a usable cookie.

Limit of this slice: sessions live in this process's memory. A restart signs everyone out, and
behind a load balancer in front of several instances a browser must stick to one instance.
The `Sessions` interface is what a store-backed table would implement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import re
import secrets
import uuid

from est_ca.admin.access import Principal
from est_ca.clock import Clock
from est_ca.registration.codes import SecretHasher

SESSION_PURPOSE = "console-session"
_COOKIE = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
IDLE = dt.timedelta(minutes=15)
# However active, a session ends after this: a revoked token stops working here within it.
LIFETIME = dt.timedelta(hours=8)


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

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "replace"), self.csrf.encode()
        )


@dataclasses.dataclass
class _Stored:
    secret_hash: str
    session: Session
    # One-time codes of orders placed in this session, shown once on the next page, then gone.
    handouts: dict[str, str] = dataclasses.field(default_factory=dict)


class Sessions:
    """Server-side sessions in this process (see the module's note on the limit)."""

    def __init__(
        self,
        hasher: SecretHasher,
        clock: Clock,
        *,
        idle: dt.timedelta = IDLE,
        lifetime: dt.timedelta = LIFETIME,
    ) -> None:
        self._hasher = hasher
        self._clock = clock
        self._idle = idle
        self._lifetime = lifetime
        self._sessions: dict[str, _Stored] = {}

    def open(
        self,
        principal: Principal,
        *,
        certificate_sha256: str | None = None,
        token_id: uuid.UUID | None = None,
    ) -> str:
        """A new session for `principal`; returns the cookie value, which exists only here."""
        self._forget_expired()
        session_id = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        now = self._clock.now()
        session = Session(
            id=session_id,
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            certificate_sha256=certificate_sha256,
            token_id=token_id,
        )
        self._sessions[session_id] = _Stored(self._hasher.hash(secret, SESSION_PURPOSE), session)
        return f"{session_id}.{secret}"

    def find(self, cookie: str | None) -> Session | None:
        """The live session the cookie names (and marks it used now), else None."""
        stored = self._stored(cookie)
        if stored is None:
            return None
        now = self._clock.now()
        session = stored.session
        if now - session.last_seen > self._idle or now - session.created_at > self._lifetime:
            del self._sessions[session.id]
            return None
        stored.session = dataclasses.replace(session, last_seen=now)
        return stored.session

    def close(self, cookie: str | None) -> bool:
        """Sign-out: the session is gone on the server, whatever the browser keeps."""
        stored = self._stored(cookie)
        if stored is None:
            return False
        del self._sessions[stored.session.id]
        return True

    def end(self, session: Session) -> None:
        """End a session found to be no longer good (e.g. its token was revoked elsewhere)."""
        self._sessions.pop(session.id, None)

    def revoke(self, principal_name: str) -> int:
        """End every session of a principal (e.g. when its token is revoked); how many."""
        ended = [k for k, s in self._sessions.items() if s.session.principal.name == principal_name]
        for key in ended:
            del self._sessions[key]
        return len(ended)

    def keep_handout(self, session: Session, reference: str, code: str) -> None:
        stored = self._sessions.get(session.id)
        if stored is not None:
            stored.handouts[reference] = code

    def take_handout(self, session: Session, reference: str) -> str | None:
        """The one-time code of an order placed in this session, once; None ever after."""
        stored = self._sessions.get(session.id)
        return None if stored is None else stored.handouts.pop(reference, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _stored(self, cookie: str | None) -> _Stored | None:
        match = _COOKIE.fullmatch(cookie or "")
        if match is None:
            return None
        stored = self._sessions.get(match.group(1))
        secret_hash = stored.secret_hash if stored is not None else None
        # Computed and compared even for an unknown id: both cost the same.
        if not self._hasher.verify(match.group(2), secret_hash, SESSION_PURPOSE):
            return None
        return stored

    def _forget_expired(self) -> None:
        now = self._clock.now()
        for key, stored in list(self._sessions.items()):
            session = stored.session
            if now - session.last_seen > self._idle or now - session.created_at > self._lifetime:
                del self._sessions[key]
