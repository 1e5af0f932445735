"""Audit events: every enrollment, refusal and administrative action, in the database and the log.

An event names what happened, to which object, by whom, and why it was refused; it never holds
a secret. The store writes events in the same transaction as the change they describe, so the
trail cannot claim something that did not happen, nor miss something that did.

Tamper evidence has two layers. The hash chain (SHA-256 over the previous hash and the event)
shows a changed, removed or inserted event to anyone. But whoever can write the database can
also recompute an unkeyed chain, or cut events off its end and rewrite the head; so the chain
is also sealed with a key kept outside the database (`AuditSeal`): every event's hash carries
an HMAC, the head carries one over its position and hash, and an anchor seals the point where
sealing began (events written before a version with the key are covered by the anchor, through
the chain). Without the key, a rewritten or shortened trail cannot be sealed again, and
`est-ca audit verify` says so. What the key cannot show is the whole database put back to an
earlier state; the structured log, which carries every event with its chain position as it
is written, is the witness for that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import structlog

_log = structlog.get_logger("est_ca.audit")


class Outcome(StrEnum):
    SUCCESS = "success"
    REFUSED = "refused"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who asked: an order holder, a certificate holder, an administrator, or the service."""

    kind: str
    name: str
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SERVICE = Actor("service", "est-ca")


def _current_request_id() -> str | None:
    """The id of the HTTP request being served, if any (bound by the web layer's middleware)."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None


def printable(text: str) -> str:
    """`text` with every non-printable character written as its escape (\\x00, \\n)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    action: str
    outcome: Outcome
    actor: Actor
    at: dt.datetime
    identity_id: uuid.UUID | None = None
    order_reference: str | None = None
    serial: str | None = None
    reason: str | None = None
    request_id: str | None = dataclasses.field(default_factory=_current_request_id)
    details: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Refusals quote what callers sent: control characters (a NUL, which PostgreSQL text
        # cannot hold; escape sequences for a terminal) are written escaped.
        object.__setattr__(
            self,
            "details",
            MappingProxyType({printable(k): printable(v) for k, v in self.details.items()}),
        )
        object.__setattr__(
            self,
            "actor",
            Actor(
                printable(self.actor.kind),
                printable(self.actor.name),
                printable(self.actor.source) if self.actor.source is not None else None,
            ),
        )
        for name in ("order_reference", "reason", "serial"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, printable(value))

    @classmethod
    def as_stored(cls, **values: Any) -> AuditEvent:
        """An event read back exactly as it was written (no escaping again: the chain's
        hashes were computed over these very values, by this version or an earlier one)."""
        event = object.__new__(cls)
        for field in dataclasses.fields(cls):
            object.__setattr__(event, field.name, values[field.name])
        object.__setattr__(event, "details", MappingProxyType(dict(values["details"])))
        return event

    def fields(self) -> dict[str, Any]:
        """The event as plain values: what the log, the JSON export and the chain hash hold."""
        return {
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "action": self.action,
            "outcome": self.outcome.value,
            "actor": str(self.actor),
            "source": self.actor.source,
            "request_id": self.request_id,
            "identity_id": str(self.identity_id) if self.identity_id else None,
            "order_reference": self.order_reference,
            "serial": self.serial,
            "reason": self.reason,
            "details": dict(self.details),
        }

    def log(self, seq: int | None = None) -> None:
        """Write the event to the structured log (the store calls this after commit, with the
        event's position in the chain: the log is a witness kept apart from the database)."""
        fields = self.fields()
        details = fields.pop("details")
        fields.pop("at")  # the log line has its own timestamp
        fields.pop("request_id")  # bound to every line of the request already
        position = {"seq": seq} if seq is not None else {}
        _log.info("audit", **fields, **details, **position)


GENESIS_HASH = "0" * 64


def chain_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    """The hash a row carries: SHA-256 over the previous hash and a canonical JSON of the event.

    Never change this encoding: every stored chain was computed with it.
    """
    canonical = json.dumps(
        {"seq": seq, **event.fields()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


class AuditSeal:
    """HMACs under the audit key: one domain each for events, the head and the anchor, so a
    seal of one kind can never stand for another."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, domain: str, *parts: object) -> str:
        message = "\0".join([f"est-ca audit {domain}", *(str(part) for part in parts)])
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def event(self, seq: int, digest: str) -> str:
        return self._mac("event", seq, digest)

    def anchor(self, seq: int, digest: str) -> str:
        return self._mac("anchor", seq, digest)

    def confirms_anchor(self, head: ChainHead, digest: str) -> bool:
        """Whether the head's anchor seals `digest`, the hash at its anchor position."""
        return head.anchor_seq is not None and self.same(
            head.anchor_mac, self.anchor(head.anchor_seq, digest)
        )

    def head(self, head: ChainHead) -> str:
        return self._mac("head", head.seq, head.hash, head.anchor_seq, head.anchor_mac)

    @staticmethod
    def same(mac: str | None, expected: str) -> bool:
        return mac is not None and hmac.compare_digest(mac, expected)


@dataclasses.dataclass(frozen=True)
class ChainHead:
    """The chain's last position and hash, where sealing began, and the head's own seal."""

    seq: int
    hash: str
    anchor_seq: int | None = None
    anchor_mac: str | None = None
    mac: str | None = None


@dataclasses.dataclass(frozen=True)
class ChainedEvent:
    seq: int
    prev_hash: str
    hash: str
    event: AuditEvent
    # The event's seal; None for events written before sealing began (the anchor covers them).
    mac: str | None = None


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain: how far it held, and the first place it did not."""

    checked: int
    problem: str | None = None
    seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


UNSEALED = "is not sealed by the audit key"


class ChainVerifier:
    """Feed it the chain in order; it recomputes every hash, checks every link and, with the
    audit key, every seal: the anchor where sealing began, each event after it, the head."""

    def __init__(self, seal: AuditSeal, head: ChainHead) -> None:
        self._seal = seal
        self._head = head
        self._previous = GENESIS_HASH
        self._checked = 0
        self.report: ChainReport | None = None
        if head.anchor_seq == 0:
            self._check_anchor(0, GENESIS_HASH)

    def add(self, row: ChainedEvent) -> bool:
        """False (and a report) at the first row that breaks the chain."""
        if self.report is not None:
            return False
        expected_seq = self._checked + 1
        if row.seq != expected_seq:
            return self._broken(f"event {expected_seq} is missing", expected_seq)
        if row.prev_hash != self._previous:
            return self._broken("the link to the previous event is broken", row.seq)
        if chain_hash(row.prev_hash, row.seq, row.event) != row.hash:
            return self._broken("the event was modified after it was written", row.seq)
        anchor = self._head.anchor_seq
        if anchor is not None and row.seq > anchor:
            if not self._seal.same(row.mac, self._seal.event(row.seq, row.hash)):
                return self._broken(
                    f"the event {UNSEALED}: it was rewritten, inserted or its seal removed",
                    row.seq,
                )
        elif row.mac is not None:
            return self._broken("the event carries a seal from before sealing began", row.seq)
        if row.seq == anchor and not self._check_anchor(row.seq, row.hash):
            return False
        self._previous = row.hash
        self._checked += 1
        return True

    def finish(self) -> ChainReport:
        """Also compare with the chain's head: events removed from the end show here, and
        without the key no one can move the head's seal along."""
        if self.report is not None:
            return self.report
        head = self._head
        if (head.seq, head.hash) != (self._checked, self._previous):
            return ChainReport(
                self._checked,
                f"the chain ends at {self._checked}, its head says {head.seq}",
                self._checked + 1,
            )
        if head.anchor_seq is None:
            return ChainReport(
                self._checked,
                "the chain has no anchor: it was never sealed, or its seals were removed",
                None,
            )
        if not self._seal.same(head.mac, self._seal.head(head)):
            return ChainReport(
                self._checked,
                f"the chain's head {UNSEALED}: events were cut off the end or the chain "
                "was rewritten",
                head.seq,
            )
        return ChainReport(self._checked)

    def _check_anchor(self, seq: int, digest: str) -> bool:
        if self._seal.confirms_anchor(self._head, digest):
            return True
        return self._broken(
            f"the anchor where sealing began {UNSEALED}: the events up to it were rewritten, "
            "or this is not the key the trail was sealed with",
            seq,
        )

    def _broken(self, problem: str, seq: int) -> bool:
        self.report = ChainReport(self._checked, problem, seq)
        return False
