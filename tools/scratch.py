"""What the benchmarks share: a service on a scratch data directory, and certificates
recorded straight into its store (no signing), so a run measures only what it means to."""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.config import load_settings
from est_ca.registration.identities import Identity, IdentityType
from est_ca.service import Service
from est_ca.store.store import CERTIFICATES


async def open_service(data_dir: Path) -> Service:
    """The service with a generated CA (no demo order), its HTTP port out of the way."""
    settings = load_settings(
        None,
        {},
        {"data_dir": str(data_dir), "service": {"demo": False, "http_port": 18080}},
    )
    return await Service.open(settings, create=True)


async def record_certificates(service: Service, count: int, *, revoked: bool) -> list[Serial]:
    """`count` issued (or revoked, half with keyCompromise) certificates of one identity of
    the issuing CA, in one insert."""
    now = service.clock.now()
    identity = Identity.create(
        type=IdentityType.SYSTEM,
        organisation_name="Bench ApS",
        cvr="99999999",
        display_name="bench",
        created_at=now,
    )
    serials = [Serial.random() for _ in range(count)]
    status = CertificateStatus.REVOKED if revoked else CertificateStatus.ISSUED
    async with service.store.write() as tx:
        await tx.insert_identity(identity)
        rows = [
            {
                "issuer_key_id": service.revocations.issuer_key_id,
                "serial": serial.hex,
                "identity_id": identity.id,
                "order_id": None,
                "renewal_of": None,
                "profile": "system",
                "status": str(status),
                "public_key_sha256": uuid.uuid4().hex * 2,
                "created_at": now,
                "not_before": now,
                "not_after": now + dt.timedelta(days=1095),
                "issued_at": now,
                "revoked_at": now if revoked else None,
                "revocation_reason": "keyCompromise" if revoked and i % 2 else None,
            }
            for i, serial in enumerate(serials)
        ]
        await tx._conn.execute(CERTIFICATES.insert(), rows)
    return serials


def run(bench: Callable[[Path], Coroutine[Any, Any, None]], data_dir: Path | None) -> None:
    """Run `bench` on `data_dir`, or on a scratch directory removed afterwards."""
    if data_dir:
        asyncio.run(bench(data_dir))
        return
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(bench(Path(scratch)))
