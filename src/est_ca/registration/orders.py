"""Orders: an administrator's permission for one certificate for one identity.

No order, no certificate. An order is used with its reference (public, the Basic user name) and
its one-time code (secret, the Basic password, stored only as a slow hash).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from enum import StrEnum

from est_ca.ca.certificates import Serial


class OrderStatus(StrEnum):
    """What is stored. Expiry and lockout are derived from times, see `Order.state`."""

    PENDING = "pending"
    # Claimed by an enrollment in progress: its serial is reserved, the signature not yet stored.
    ISSUING = "issuing"
    CONSUMED = "consumed"
    CANCELLED = "cancelled"
    # Placed by a bulk import that has not finished (see IdentityStatus.STAGED).
    STAGED = "staged"


class OrderState(StrEnum):
    """What an administrator and an enrolling client see."""

    PENDING = "pending"
    ISSUING = "issuing"
    CONSUMED = "consumed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    LOCKED = "locked"
    STAGED = "staged"


@dataclasses.dataclass(frozen=True)
class Order:
    id: uuid.UUID
    reference: str
    identity_id: uuid.UUID
    profile: str
    status: OrderStatus
    created_at: dt.datetime
    expires_at: dt.datetime
    failed_attempts: int
    locked_at: dt.datetime | None
    claimed_serial: Serial | None
    claimed_at: dt.datetime | None
    consumed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    certificate_serial: Serial | None
    # The CA label (ca/labels.py) it must be enrolled under; None (orders placed before labels
    # existed): the default label.
    ca_label: str | None = None
    # RFC 7030 4.2.3: an enrollment stores its CSR and waits (202) for an administrator.
    require_approval: bool = False

    def __post_init__(self) -> None:
        if self.expires_at <= self.created_at:
            raise ValueError("an order must expire after it was created")
        if self.failed_attempts < 0:
            raise ValueError("failed_attempts cannot be negative")

    def state(self, now: dt.datetime) -> OrderState:
        if self.status is OrderStatus.STAGED:
            return OrderState.STAGED
        if self.status is OrderStatus.CONSUMED:
            return OrderState.CONSUMED
        if self.status is OrderStatus.CANCELLED:
            return OrderState.CANCELLED
        if self.status is OrderStatus.ISSUING:
            return OrderState.ISSUING
        if self.locked_at is not None:
            return OrderState.LOCKED
        if now >= self.expires_at:
            return OrderState.EXPIRED
        return OrderState.PENDING

    @classmethod
    def place(
        cls,
        *,
        reference: str,
        identity_id: uuid.UUID,
        profile: str,
        created_at: dt.datetime,
        validity: dt.timedelta,
        ca_label: str | None = None,
        require_approval: bool = False,
    ) -> Order:
        return cls(
            id=uuid.uuid4(),
            reference=reference,
            identity_id=identity_id,
            profile=profile,
            status=OrderStatus.PENDING,
            created_at=created_at,
            expires_at=created_at + validity,
            failed_attempts=0,
            locked_at=None,
            claimed_serial=None,
            claimed_at=None,
            consumed_at=None,
            cancelled_at=None,
            certificate_serial=None,
            ca_label=ca_label,
            require_approval=require_approval,
        )


@dataclasses.dataclass(frozen=True)
class PlacedOrder:
    """An order as returned once, at creation: the only time its one-time code exists in clear."""

    order: Order
    one_time_code: str = dataclasses.field(repr=False)
