"""The certificate lifecycle rules, under real concurrency on SQLite and PostgreSQL:
a compromised key is dead everywhere, a certificate renews at most once, disabling an identity
wins against an enrollment in flight, and one key belongs to one identity."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp

from est_ca.ca.building import IssuanceRequest
from est_ca.ca.certificates import CertificateStatus, Serial
from est_ca.clock import SettableClock
from est_ca.config import shipped_config_dir
from est_ca.errors import (
    BadRequest,
    CertificateNotUsable,
    Conflict,
    EstCaError,
    NotEntitled,
    Unauthenticated,
)
from est_ca.registration.identities import Identity
from est_ca.registration.orders import OrderStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.service import Service
from tests.conftest import OpenService
from tests.helpers import ADMIN, csr_der, make_csr, new_order, new_system
from tests.revocation.helpers import ocsp_request


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def p256() -> CertificateIssuerPrivateKeyTypes:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def lifecycle(database_url: str, open_service: OpenService, ec_profiles: Path) -> Service:
    """A service on each database, whose system profile takes P-256 keys (cheap, distinct)."""
    return await open_service(
        database_url=database_url,
        profiles={"extra_dirs": [str(ec_profiles)]},
        limits={"max_concurrent_enrollments": 1000, "failures_per_source": 10_000},
    )


async def enroll(
    service: Service, key: CertificateIssuerPrivateKeyTypes, identity: Identity | None = None
) -> x509.Certificate:
    assert service.authority is not None
    identity = identity or await new_system(service)
    placed = await new_order(service, identity)
    return await service.authority.enroll_with_order(
        placed.order.reference, placed.one_time_code, csr_der(make_csr(key)), source="test"
    )


async def renew(
    service: Service, current: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    assert service.authority is not None
    return await service.authority.reenroll(
        der(current), csr_der(make_csr(key, subject=current.subject)), source="test"
    )


async def record_of(service: Service, certificate: x509.Certificate) -> tuple[str, str | None]:
    record = await service.registry.get_certificate(Serial(certificate.serial_number))
    return record.status.value, record.revocation_reason


async def ocsp_status(service: Service, certificate: x509.Certificate) -> ocsp.OCSPCertStatus:
    assert service.publishing is not None
    assert service.ca is not None
    await service.publishing.start()
    try:
        answer = await service.publishing.responder.answer(
            ocsp_request(certificate, service.ca.certificate)
        )
    finally:
        await service.publishing.stop()
    return ocsp.load_der_ocsp_response(answer.der).certificate_status


class HeldSigning:
    """The real issuer, made to wait inside its signing step until the test lets it go, so a
    test can act while an enrollment is between its reservation and its final commit."""

    def __init__(self, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
        assert service.authority is not None
        issuer = service.authority.labelled(None).issuer
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        real = issuer.produce

        def produce(request: IssuanceRequest) -> x509.Certificate:
            self.entered.release()
            self.release.wait(timeout=30)
            return real(request)

        monkeypatch.setattr(issuer, "produce", produce)

    async def wait_until_signing(self, count: int = 1, within: float = 10) -> bool:
        """True when `count` enrollments are inside the signing step within `within` s each."""

        def acquire() -> bool:
            return all(self.entered.acquire(timeout=within) for _ in range(count))

        return await asyncio.to_thread(acquire)


@pytest.fixture
def held(lifecycle: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSigning]:
    holder = HeldSigning(lifecycle, monkeypatch)
    yield holder
    holder.release.set()


# -- 1. key compromise reaches every certificate of the key ---------------------------------------


async def test_revoking_for_key_compromise_revokes_every_live_certificate_of_the_key(
    lifecycle: Service, clock: SettableClock
) -> None:
    key = p256()
    first = await enroll(lifecycle, key)
    second = await renew(lifecycle, first, key)  # a renewal that kept its key
    clock.advance(dt.timedelta(hours=2))
    invalid_since = lifecycle.clock.now() - dt.timedelta(hours=1)
    await lifecycle.revocations.revoke_certificate(
        ADMIN, Serial(first.serial_number), RevocationReason.KEY_COMPROMISE, invalid_since
    )
    first_record = await lifecycle.registry.get_certificate(Serial(first.serial_number))
    second_record = await lifecycle.registry.get_certificate(Serial(second.serial_number))
    assert second_record.status is CertificateStatus.REVOKED
    assert second_record.revocation_reason is RevocationReason.KEY_COMPROMISE
    assert second_record.revoked_at == first_record.revoked_at
    assert second_record.invalidity_date == invalid_since
    assert await ocsp_status(lifecycle, second) is ocsp.OCSPCertStatus.REVOKED
    async with lifecycle.store.read() as tx:
        revoked = [str(e.serial) for e in await tx.list_audit(action="certificate.revoked")]
    assert sorted(revoked) == sorted(
        [Serial(first.serial_number).hex, Serial(second.serial_number).hex]
    )


async def test_a_certificate_whose_key_was_reported_compromised_cannot_renew(
    lifecycle: Service,
) -> None:
    key = p256()
    first = await enroll(lifecycle, key)
    second = await renew(lifecycle, first, key)
    await lifecycle.revocations.revoke_certificate(
        ADMIN, Serial(first.serial_number), RevocationReason.KEY_COMPROMISE
    )
    with pytest.raises(CertificateNotUsable):
        await renew(lifecycle, second, p256())


async def test_a_certificate_whose_key_was_reported_compromised_cannot_enroll_by_tls(
    lifecycle: Service,
) -> None:
    assert lifecycle.authority is not None
    key = p256()
    first = await enroll(lifecycle, key)
    second = await renew(lifecycle, first, key)
    await lifecycle.revocations.revoke_certificate(
        ADMIN, Serial(first.serial_number), RevocationReason.KEY_COMPROMISE
    )
    record = await lifecycle.registry.get_certificate(Serial(second.serial_number))
    await new_order(lifecycle, await lifecycle.registry.get_identity(record.identity_id))
    with pytest.raises(CertificateNotUsable):
        await lifecycle.authority.enroll_with_certificate(
            der(second), csr_der(make_csr(p256())), source="test"
        )


async def test_an_enrollment_in_flight_for_a_key_reported_compromised_is_never_issued(
    lifecycle: Service, held: HeldSigning
) -> None:
    key = p256()
    held.release.set()
    current = await enroll(lifecycle, key)
    held.release.clear()
    identity = (await lifecycle.registry.get_certificate(Serial(current.serial_number))).identity_id
    in_flight = asyncio.create_task(
        enroll(lifecycle, key, await lifecycle.registry.get_identity(identity))
    )
    assert await held.wait_until_signing(2)  # the first enrollment's signing, then this one's
    await lifecycle.revocations.revoke_certificate(
        ADMIN, Serial(current.serial_number), RevocationReason.KEY_COMPROMISE
    )
    held.release.set()
    with pytest.raises(BadRequest, match="compromised"):
        await in_flight
    issued = await lifecycle.registry.list_certificates(status=CertificateStatus.ISSUED)
    assert issued == []


# -- 2. renewal lineage ---------------------------------------------------------------------------


async def test_concurrent_renewals_of_one_certificate_yield_exactly_one_certificate(
    lifecycle: Service,
) -> None:
    current = await enroll(lifecycle, p256())
    outcomes = await asyncio.gather(
        *(renew(lifecycle, current, p256()) for _ in range(10)), return_exceptions=True
    )
    renewed = [o for o in outcomes if isinstance(o, x509.Certificate)]
    refused = [o for o in outcomes if isinstance(o, EstCaError)]
    assert len(renewed) == 1, outcomes
    assert len(refused) == 9
    assert all(isinstance(o, NotEntitled | Conflict) for o in refused)
    record = await lifecycle.registry.get_certificate(Serial(current.serial_number))
    live = await lifecycle.registry.list_certificates(
        identity_id=record.identity_id, status=CertificateStatus.ISSUED
    )
    assert len(live) == 2
    successor = await lifecycle.registry.get_certificate(Serial(renewed[0].serial_number))
    assert successor.renewal_of == record.serial


async def test_a_renewal_retried_with_the_same_key_returns_the_successor_already_issued(
    lifecycle: Service,
) -> None:
    current = await enroll(lifecycle, p256())
    new_key = p256()
    successor = await renew(lifecycle, current, new_key)
    again = await renew(lifecycle, current, new_key)
    assert der(again) == der(successor)
    record = await lifecycle.registry.get_certificate(Serial(current.serial_number))
    everything = await lifecycle.registry.list_certificates(identity_id=record.identity_id)
    assert len(everything) == 2


async def test_a_renewal_retried_with_another_key_is_refused_naming_the_successor(
    lifecycle: Service,
) -> None:
    current = await enroll(lifecycle, p256())
    successor = await renew(lifecycle, current, p256())
    with pytest.raises(NotEntitled, match=Serial(successor.serial_number).hex):
        await renew(lifecycle, current, p256())


async def test_a_superseded_certificate_cannot_renew_again_through_its_successor_key(
    lifecycle: Service,
) -> None:
    """Renewing from the successor works; renewing the predecessor a second time does not."""
    first = await enroll(lifecycle, p256())
    second = await renew(lifecycle, first, p256())
    third = await renew(lifecycle, second, p256())
    assert third.serial_number != second.serial_number
    with pytest.raises(NotEntitled):
        await renew(lifecycle, first, p256())


async def test_the_predecessor_is_revoked_as_superseded_once_the_grace_period_ends(
    lifecycle: Service, clock: SettableClock
) -> None:
    first = await enroll(lifecycle, p256())
    second = await renew(lifecycle, first, p256())
    clock.advance(dt.timedelta(hours=23))
    assert await lifecycle.revocations.revoke_superseded() == []
    assert await record_of(lifecycle, first) == ("issued", None)
    clock.advance(dt.timedelta(hours=1))
    revoked = await lifecycle.revocations.revoke_superseded()
    assert [r.serial.value for r in revoked] == [first.serial_number]
    assert await record_of(lifecycle, first) == ("revoked", "superseded")
    assert await record_of(lifecycle, second) == ("issued", None)
    assert await lifecycle.revocations.revoke_superseded() == []


async def test_a_lineage_never_has_more_than_two_live_certificates(lifecycle: Service) -> None:
    first = await enroll(lifecycle, p256())
    second = await renew(lifecycle, first, p256())
    await renew(lifecycle, second, p256())
    assert await record_of(lifecycle, first) == ("revoked", "superseded")
    assert await record_of(lifecycle, second) == ("issued", None)


@pytest.fixture
def no_grace_profiles(tmp_path: Path, ec_profiles: Path) -> Path:
    directory = tmp_path / "no-grace"
    directory.mkdir()
    text = (ec_profiles / "system.toml").read_text()
    text = text.replace("renewal_grace_hours = 24", "renewal_grace_hours = 0")
    assert "renewal_grace_hours = 0" in text
    (directory / "system.toml").write_text(text)
    return directory


async def test_with_a_grace_period_of_zero_the_predecessor_is_revoked_at_once(
    open_service: OpenService, no_grace_profiles: Path
) -> None:
    service = await open_service(profiles={"extra_dirs": [str(no_grace_profiles)]})
    first = await enroll(service, p256())
    await renew(service, first, p256())
    assert await record_of(service, first) == ("revoked", "superseded")


def test_the_shipped_profiles_keep_a_predecessor_for_24_hours() -> None:
    for name in ("user", "organisation", "system"):
        text = (shipped_config_dir() / "profiles" / f"{name}.toml").read_text()
        assert "renewal_grace_hours = 24" in text


# -- 3. disabling an identity wins against an enrollment in flight ---------------------------------


async def test_an_identity_disabled_while_its_certificate_is_being_signed_gets_none(
    lifecycle: Service, held: HeldSigning
) -> None:
    identity = await new_system(lifecycle)
    in_flight = asyncio.create_task(enroll(lifecycle, p256(), identity))
    assert await held.wait_until_signing()
    await lifecycle.revocations.revoke_identity(ADMIN, identity.id)
    held.release.set()
    with pytest.raises(NotEntitled, match="disabled"):
        await in_flight
    records = await lifecycle.registry.list_certificates(identity_id=identity.id)
    assert [r.status for r in records] == [CertificateStatus.ABANDONED]
    [order] = await lifecycle.registry.list_orders(identity_id=identity.id)
    assert order.status is OrderStatus.CANCELLED
    async with lifecycle.store.read() as tx:
        [abandoned] = await tx.list_audit(action="certificate.abandoned")
    assert abandoned.reason is not None
    assert "disabled" in abandoned.reason


async def test_an_identity_disabled_while_its_renewal_is_being_signed_gets_none(
    lifecycle: Service, held: HeldSigning
) -> None:
    held.release.set()
    current = await enroll(lifecycle, p256())
    held.release.clear()
    record = await lifecycle.registry.get_certificate(Serial(current.serial_number))
    in_flight = asyncio.create_task(renew(lifecycle, current, p256()))
    assert await held.wait_until_signing(2)
    await lifecycle.revocations.revoke_identity(ADMIN, record.identity_id)
    held.release.set()
    with pytest.raises(NotEntitled):
        await in_flight
    live = await lifecycle.registry.list_certificates(
        identity_id=record.identity_id, status=CertificateStatus.ISSUED
    )
    assert live == []


# -- 4. one key, one identity ---------------------------------------------------------------------


async def test_one_key_enrolled_for_two_identities_at_once_is_certified_for_one(
    lifecycle: Service, held: HeldSigning
) -> None:
    key = p256()
    racing = [
        asyncio.create_task(enroll(lifecycle, key, await new_system(lifecycle, f"twin-{n}")))
        for n in range(2)
    ]
    await held.wait_until_signing(2, within=2)  # without the rule both reach the signer
    held.release.set()
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    issued = [o for o in outcomes if isinstance(o, x509.Certificate)]
    assert len(issued) == 1, outcomes
    [refused] = [o for o in outcomes if isinstance(o, BaseException)]
    assert isinstance(refused, BadRequest)
    assert "another identity" in refused.detail


# -- 10. concurrent wrong codes respect the lock --------------------------------------------------


async def test_concurrent_wrong_codes_check_at_most_the_allowed_number_of_codes(
    lifecycle: Service,
) -> None:
    assert lifecycle.authority is not None
    authority = lifecycle.authority
    placed = await new_order(lifecycle, await new_system(lifecycle))
    request = csr_der(make_csr(p256()))

    async def wrong(n: int) -> BaseException | None:
        try:
            await authority.enroll_with_order(
                placed.order.reference, f"WRONG-{n:05d}-AAAAA-AAAAA", request, source=f"s{n}"
            )
        except EstCaError as exc:
            return exc
        return None

    outcomes = await asyncio.gather(*(wrong(n) for n in range(30)))
    limit = lifecycle.settings.orders.max_failed_attempts
    order = await lifecycle.registry.get_order(placed.order.reference)
    assert order.failed_attempts == limit
    assert sum(isinstance(o, Unauthenticated) for o in outcomes) == limit
    assert order.locked_at is not None
