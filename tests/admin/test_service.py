"""Administration, driven directly: what it records when it refuses an authenticated caller."""

from __future__ import annotations

import uuid

import pytest

from est_ca.admin.access import Principal, PrincipalKind, Scope
from est_ca.errors import NotFound
from est_ca.service import Service

ORG = "96908409"


def confined_reader() -> Principal:
    return Principal(
        kind=PrincipalKind.TOKEN,
        name="idm-reader",
        scopes=frozenset({Scope.READ}),
        cvr=ORG,
        source="192.0.2.7",
    )


async def test_a_refused_operation_is_audited_with_the_caller_the_operation_and_why(
    service: Service,
) -> None:
    principal = confined_reader()
    missing = uuid.uuid4()
    with pytest.raises(NotFound) as refusal:
        await service.administration.identity(principal, missing)
    await service.administration.refused(
        principal, f"GET /admin/v1/identities/{missing}", refusal.value
    )
    [event] = await service.audit.events(action="admin.refused")
    assert str(event.actor) == "token:idm-reader"
    assert event.actor.source == "192.0.2.7"
    assert event.reason == refusal.value.audit_reason
    assert event.details == {"operation": f"GET /admin/v1/identities/{missing}"}
