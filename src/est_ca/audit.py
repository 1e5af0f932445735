"""Audit events: every enrollment, refusal and administrative action, in the database and the log.

An event names what happened, to which object, by whom, and why it was refused; it never holds
a secret. The store writes events in the same transaction as the change they describe, so the
trail cannot claim something that did not happen, nor miss something that did.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

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

    def log(self) -> None:
        """Write the event to the structured log (the store calls this after commit)."""
        _log.info(
            "audit",
            action=self.action,
            outcome=str(self.outcome),
            actor=str(self.actor),
            source=self.actor.source,
            identity_id=str(self.identity_id) if self.identity_id else None,
            order_reference=self.order_reference,
            serial=self.serial,
            reason=self.reason,
            **dict(self.details),
        )
