"""Audit events: every enrollment, refusal and administrative action, in the database and the log.

An event names what happened, to which object, by whom, and why it was refused; it never holds
a secret. The store writes events in the same transaction as the change they describe, so the
trail cannot claim something that did not happen, nor miss something that did.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
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
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

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

    def log(self) -> None:
        """Write the event to the structured log (the store calls this after commit)."""
        fields = self.fields()
        details = fields.pop("details")
        fields.pop("at")  # the log line has its own timestamp
        fields.pop("request_id")  # bound to every line of the request already
        _log.info("audit", **fields, **details)


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


@dataclasses.dataclass(frozen=True)
class ChainedEvent:
    seq: int
    prev_hash: str
    hash: str
    event: AuditEvent


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain: how far it held, and the first place it did not."""

    checked: int
    problem: str | None = None
    seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Feed it the chain in order; it recomputes every hash and checks every link."""

    def __init__(self) -> None:
        self._previous = GENESIS_HASH
        self._checked = 0
        self.report: ChainReport | None = None

    def add(self, row: ChainedEvent) -> bool:
        """False (and a report) at the first row that breaks the chain."""
        expected_seq = self._checked + 1
        if row.seq != expected_seq:
            return self._broken(f"event {expected_seq} is missing", expected_seq)
        if row.prev_hash != self._previous:
            return self._broken("the link to the previous event is broken", row.seq)
        if chain_hash(row.prev_hash, row.seq, row.event) != row.hash:
            return self._broken("the event was modified after it was written", row.seq)
        self._previous = row.hash
        self._checked += 1
        return True

    def finish(self, head_seq: int, head_hash: str) -> ChainReport:
        """Also compare with the chain's head: events removed from the end show here."""
        if self.report is not None:
            return self.report
        if (head_seq, head_hash) != (self._checked, self._previous):
            return ChainReport(
                self._checked,
                f"the chain ends at {self._checked}, its head says {head_seq}",
                self._checked + 1,
            )
        return ChainReport(self._checked)

    def _broken(self, problem: str, seq: int) -> bool:
        self.report = ChainReport(self._checked, problem, seq)
        return False
