"""The composition root: settings in, wired domain services out.

The CLI's administrative commands open the service without its CA (they never sign); `serve`
and the tests open it whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import structlog

from est_ca.bootstrap import ServiceFiles, ensure_data_dir, prepare_files, read_passphrase
from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.issuer import Issuer
from est_ca.ca.profiles import ProfileCatalogue
from est_ca.ca.publication import Publication
from est_ca.ca.signing import KeyFileSigner
from est_ca.clock import Clock, SystemClock
from est_ca.config import Settings
from est_ca.errors import ConfigurationError
from est_ca.registration.codes import CodeHasher
from est_ca.registration.enrollment import RegistrationAuthority
from est_ca.registration.registry import OrderPolicy, Registry
from est_ca.store.store import Store
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)


@dataclasses.dataclass
class Service:
    settings: Settings
    clock: Clock
    store: Store
    workers: Workers
    profiles: ProfileCatalogue
    registry: Registry
    publication: Publication
    # Present when opened with the CA (serving); absent for administrative commands.
    files: ServiceFiles | None = None
    ca: CertificateAuthority | None = None
    authority: RegistrationAuthority | None = None

    @classmethod
    async def open(
        cls, settings: Settings, *, clock: Clock | None = None, with_ca: bool = True
    ) -> Service:
        clock = clock or SystemClock()
        profiles = ProfileCatalogue.load(settings.profile_dirs)
        files = prepare_files(settings, clock, publication_of(settings)) if with_ca else None
        if files is None:
            ensure_data_dir(settings)
        ca = _load_ca(files, profiles) if files is not None else None
        store = Store(settings.database_url)
        try:
            await _prepare_schema(store, settings)
        except BaseException:
            await store.close()
            raise
        workers = Workers()
        hasher = CodeHasher(
            n=settings.secrets.scrypt_n, r=settings.secrets.scrypt_r, p=settings.secrets.scrypt_p
        )
        order_policy = OrderPolicy(
            validity=dt.timedelta(days=settings.orders.validity_days),
            max_failed_attempts=settings.orders.max_failed_attempts,
            claim_lease=dt.timedelta(seconds=settings.orders.claim_lease_seconds),
        )
        registry = Registry(
            store=store,
            clock=clock,
            hasher=hasher,
            workers=workers,
            profiles=profiles,
            order_policy=order_policy,
        )
        authority = (
            RegistrationAuthority(
                store=store,
                clock=clock,
                hasher=hasher,
                workers=workers,
                profiles=profiles,
                issuer=Issuer(ca, publication_of(settings)),
                order_policy=order_policy,
            )
            if ca is not None
            else None
        )
        return cls(
            settings=settings,
            clock=clock,
            store=store,
            workers=workers,
            profiles=profiles,
            registry=registry,
            publication=publication_of(settings),
            files=files,
            ca=ca,
            authority=authority,
        )

    async def recover(self) -> None:
        """Release what enrollments that died mid-issuance left behind (see enrollment.py)."""
        lease = dt.timedelta(seconds=self.settings.orders.claim_lease_seconds)
        async with self.store.write() as tx:
            released, abandoned = await tx.recover_stale_issuances(self.clock.now() - lease)
        if released or abandoned:
            _log.warning(
                "recovered interrupted issuances",
                orders_released=released,
                reservations_abandoned=abandoned,
            )

    async def close(self) -> None:
        self.workers.close()
        await self.store.close()


async def _prepare_schema(store: Store, settings: Settings) -> None:
    if settings.database.auto_migrate:
        await store.migrate()
        return
    if await store.schema_revision() is None:
        raise ConfigurationError(
            "the database has no schema; run `est-ca db upgrade` (database.auto_migrate is off)"
        )


def publication_of(settings: Settings) -> Publication:
    base = settings.public_base_url
    return Publication(
        base_url=base,
        name_registration_authority=settings.publication.name_registration_authority or base,
    )


def _load_ca(files: ServiceFiles, profiles: ProfileCatalogue) -> CertificateAuthority:
    passphrase = read_passphrase(files.ca_key_passphrase) if files.ca_key_passphrase else None
    signer = KeyFileSigner.load(files.ca_key, passphrase)
    ca = CertificateAuthority.load(files.ca_cert, files.ca_chain, signer)
    for profile in profiles.profiles.values():
        if not profile.signature.fits(signer.public_key):
            raise ConfigurationError(
                f"profile {profile.name!r} signs with {profile.signature.algorithm}, "
                "which the configured CA key cannot do"
            )
    return ca
