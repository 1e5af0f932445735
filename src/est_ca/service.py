"""The composition root: settings in, wired domain services out.

The CLI's administrative commands open the service without its CA (they never sign); `serve`
and the tests open it whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from est_ca.admin.idm import Idm
from est_ca.admin.service import Administration
from est_ca.admin.tokens import Tokens
from est_ca.audit import Actor, AuditEvent, AuditSeal, Outcome
from est_ca.audit_trail import AuditTrail
from est_ca.bootstrap import (
    ServiceFiles,
    passphrase_from_environment,
    prepare_files,
    read_passphrase,
)
from est_ca.ca import publication as publication_paths
from est_ca.ca.authority import CertificateAuthority, key_identifier
from est_ca.ca.certificates import KeyId
from est_ca.ca.hierarchy import CA_SIGNATURE, EE_SIGNATURE
from est_ca.ca.issuer import Issuer
from est_ca.ca.labels import CaLabel, CaLabels, LabelledCa
from est_ca.ca.pkcs11_signer import Pkcs11Signer, TokenKeys, TokenPin, read_pin
from est_ca.ca.profiles import ProfileCatalogue
from est_ca.ca.publication import Publication
from est_ca.ca.server_tls import service_names
from est_ca.ca.signing import KeyFileSigner, SignatureScheme, Signer
from est_ca.clock import Clock, SystemClock
from est_ca.config import (
    CaEntry,
    FileKeyRef,
    KeyRef,
    Pkcs11KeyRef,
    Settings,
    TokenRef,
    listed_default,
    token_key,
)
from est_ca.errors import ConfigurationError
from est_ca.keyfiles import load_key
from est_ca.metrics import CrlFacts, Metrics
from est_ca.private_files import refuse_exposed
from est_ca.registration.codes import SecretHasher
from est_ca.registration.enrollment import RegistrationAuthority
from est_ca.registration.registry import OrderPolicy, Registry
from est_ca.revocation.crl import CrlPublisher
from est_ca.revocation.issuers import ServedIssuer
from est_ca.revocation.key_wrap import KeyWrapper
from est_ca.revocation.ocsp import OcspResponder
from est_ca.revocation.publishing import RevocationPublishing
from est_ca.revocation.responders import ResponderKeeper
from est_ca.revocation.revoker import Revocations
from est_ca.rollover import Rollover, SuppliedCa, label_entry, roll_over
from est_ca.store.store import Store
from est_ca.throttle import Admission, FailureThrottle, SourceGuard
from est_ca.tls_files import ensure_service_certificate
from est_ca.workers import Workers, default_threads

_log = structlog.get_logger(__name__)
MAINTENANCE_INTERVAL = dt.timedelta(seconds=5)
MAINTENANCE_LEASE = "maintenance"
# An import still staged after this long belongs to a process that stopped (100,000 rows take
# well under a minute).
STALE_IMPORT = dt.timedelta(hours=1)


@dataclasses.dataclass
class Service:
    settings: Settings
    clock: Clock
    store: Store
    workers: Workers
    profiles: ProfileCatalogue
    registry: Registry
    revocations: Revocations
    tokens: Tokens
    administration: Administration
    publication: Publication
    files: ServiceFiles
    guard: SourceGuard
    audit: AuditTrail
    idm: Idm
    # Present when opened with the CA keys (serving); absent for administrative commands.
    ca: CertificateAuthority | None = None
    authority: RegistrationAuthority | None = None
    publishing: RevocationPublishing | None = None
    metrics: Metrics = dataclasses.field(default_factory=Metrics)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        with_ca: bool = True,
        check_audit_seal: bool = True,
        create: bool = False,
        migrate: bool = False,
    ) -> Service:
        """`create` lets this open generate what the embedded default lacks (a demo CA, keys,
        the database): only `serve` and `init` pass it. `check_audit_seal=False` only for
        reading the audit trail whatever its state (`est-ca audit verify` and `export`);
        everything that writes needs the seal confirmed. `migrate` brings the schema to the
        newest revision even with `database.auto_migrate` off: the operator's explicit `init`
        and `db upgrade` (a cluster's instances start with it off and only check)."""
        clock = clock or SystemClock()
        profiles = ProfileCatalogue.load(settings.profile_dirs)
        publication = publication_of(settings)
        # Key generation (a demo hierarchy's RSA keys take seconds), key decryption and fsync
        # run on threads: the loop stays free for what it already serves (the signal handlers
        # of `serve`, other services in tests and tools).
        files = await asyncio.to_thread(prepare_files, settings, clock, publication, create=create)
        allowed = default_entry(settings, publication).profiles
        if files.demo_root is not None:
            profiles = profiles_for_demo(profiles, files.ca_cert)
        ca = (
            await asyncio.to_thread(_load_ca, settings, files, profiles, allowed)
            if with_ca
            else None
        )
        root = await asyncio.to_thread(_load_root, files, ca) if ca is not None else None
        # The other listed CAs: each served (CRL, OCSP) and enrolled with under its label.
        others = await asyncio.to_thread(_load_listed, settings, profiles) if ca is not None else ()
        key_ids = [c.key_identifier for c in (ca, *(other for _, other in others)) if c]
        if len(set(key_ids)) != len(key_ids):
            raise ConfigurationError(
                "two listed authorities are the same CA (same key): each needs its own CRL"
            )
        store = Store(settings.database_url, seal=AuditSeal(load_key(files.audit_key)))
        try:
            await _prepare_schema(store, settings, _issuing_key_id(files), migrate=migrate)
            if check_audit_seal:
                await store.anchor_audit(fresh_key=files.audit_key_created)
            if ca is not None and not settings.tls.cert_file:
                # No operator certificate: the CA issues the listener's, recorded first.
                await ensure_service_certificate(
                    store,
                    ca,
                    _signature_for(ca, root=False),
                    files.tls_cert,
                    files.tls_key,
                    service_names(settings.service.host, settings.tls.names),
                    clock,
                )
        except BaseException:
            await store.close()
            raise
        workers = Workers(default_threads())
        metrics = Metrics()
        metrics.watch_workers(lambda: workers.pending)
        window = dt.timedelta(seconds=settings.limits.failure_window_seconds)
        guard = SourceGuard(
            throttle=FailureThrottle(
                limit=settings.limits.failures_per_source, window=window, clock=clock
            ),
            store=store,
            clock=clock,
            window=window,
        )
        hasher = SecretHasher(load_key(files.hmac_key))
        order_policy = OrderPolicy(
            validity=dt.timedelta(days=settings.orders.validity_days),
            max_failed_attempts=settings.orders.max_failed_attempts,
            claim_lease=dt.timedelta(seconds=settings.orders.claim_lease_seconds),
            approval_retry_after_seconds=settings.orders.approval_retry_after_seconds,
        )
        registry = Registry(
            store=store,
            clock=clock,
            hasher=hasher,
            workers=workers,
            profiles=profiles,
            order_policy=order_policy,
            labels=labels_of(settings, publication),
        )
        issuing_certificate = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        revocations = Revocations(
            store=store,
            clock=clock,
            issuer_key_id=key_identifier(issuing_certificate).hex(),
            profiles=profiles,
        )
        authority = None
        publishing = None
        if ca is not None:
            authority = RegistrationAuthority(
                store=store,
                clock=clock,
                hasher=hasher,
                workers=workers,
                profiles=profiles,
                labelled=_labelled(settings, publication, ca, others),
                default_label=registry.labels.default,
                order_policy=order_policy,
                guard=guard,
                admission=Admission(settings.limits.max_concurrent_enrollments),
                revocations=revocations,
                metrics=metrics,
            )
            publishing = _revocation_publishing(
                settings, publication, files, ca, root, others, store, clock, workers
            )
            revocations.on_revocation(publishing.revoked)
            metrics.watch_crls(_crl_facts(publishing), clock.now)
        # Certificates our CAs issued authenticate on the admin listener as an IdM's, never
        # as an administrator's.
        tokens = Tokens(
            store=store,
            clock=clock,
            guard=guard,
            hasher=hasher,
            own_cas=authority.trusted if authority is not None else (),
        )
        return cls(
            settings=settings,
            clock=clock,
            store=store,
            workers=workers,
            profiles=profiles,
            registry=registry,
            revocations=revocations,
            tokens=tokens,
            administration=Administration(
                registry=registry,
                revocations=revocations,
                publishing=publishing,
                store=store,
                clock=clock,
            ),
            publication=publication,
            files=files,
            guard=guard,
            audit=AuditTrail(store),
            idm=Idm(store=store, clock=clock, tokens=tokens),
            ca=ca,
            authority=authority,
            publishing=publishing,
            metrics=metrics,
        )

    def ca_certificates(self) -> list[x509.Certificate]:
        """The issuing CA's certificate, then its chain up to the root (as configured)."""
        issuing = x509.load_pem_x509_certificate(self.files.ca_cert.read_bytes())
        chain = x509.load_pem_x509_certificates(self.files.ca_chain.read_bytes())
        return [issuing, *(c for c in chain if c != issuing)]

    def _served_entries(self) -> list[tuple[CaEntry, list[x509.Certificate]]]:
        """Each CA served (the default first) with its certificate and chain, as configured."""
        default, *others = served_entries(self.settings, self.publication)
        served = []
        for entry in [default, *others]:
            if entry is default:
                certificates = self.ca_certificates()
            else:
                certificate = self.settings.data_path(entry.certificate, "").read_bytes()
                chain = self.settings.data_path(entry.chain, "").read_bytes()
                certificates = [
                    *x509.load_pem_x509_certificates(certificate)[:1],
                    *x509.load_pem_x509_certificates(chain),
                ]
            served.append((entry, certificates))
        return served

    async def authority_overview(self) -> list[dict[str, object]]:
        """Each CA served: its name, label, whether it enrolls (or is retired), its key id, and
        its live certificates (a retired CA may be removed once it has none)."""
        async with self.store.read() as tx:
            live = await tx.live_certificates_by_issuer(self.clock.now())
        overview: list[dict[str, object]] = []
        for index, (entry, certificates) in enumerate(self._served_entries()):
            certificate = certificates[0]
            key_id = key_identifier(certificate).hex()
            count, last = live.get(key_id, (0, None))
            overview.append(
                {
                    "name": entry.name,
                    "label": entry.est_label,
                    "state": "retired" if entry.retired else "enrolls",
                    "default": index == 0,
                    "subject": certificate.subject.rfc4514_string(),
                    "key_id": key_id,
                    "live_certificates": count,
                    "last_expiry": last.isoformat() if last else None,
                }
            )
        return overview

    def unpublished_ca_urls(self) -> list[tuple[x509.Certificate, list[str]]]:
        """Each CA certificate (of every CA served, and their chains) that names URLs the
        configured publication does not serve."""
        seen: list[x509.Certificate] = []
        for _, certificates in self._served_entries():
            seen.extend(c for c in certificates if c not in seen)
        found = [
            (certificate, self.publication.unpublished_urls(certificate)) for certificate in seen
        ]
        return [(certificate, urls) for certificate, urls in found if urls]

    async def roll_over(
        self, actor: Actor, *, label: str | None = None, supplied: SuppliedCa | None = None
    ) -> Rollover:
        """Bring the next issuing CA of `label` into service (see rollover.py), audited."""
        current, served = label_entry(served_entries(self.settings, self.publication), label)
        done = await asyncio.to_thread(
            roll_over,
            self.settings,
            self.clock,
            self.publication,
            self.files,
            current,
            served,
            supplied,
            lambda ca: _require_profiles_fit(ca, self.profiles, current.profiles),
        )
        async with self.store.write() as tx:
            await tx.append_audit(
                AuditEvent(
                    action="ca.rolled_over",
                    outcome=Outcome.SUCCESS,
                    actor=actor,
                    at=self.clock.now(),
                    details={
                        "label": done.label,
                        "retired": done.retired.name,
                        "new": done.new.name,
                        "new_key_id": key_identifier(done.certificate).hex(),
                        "new_subject": done.certificate.subject.rfc4514_string(),
                    },
                )
            )
        return done

    async def upgrade_database(self) -> str | None:
        """Migrate the schema to the newest revision; the revision it is at afterwards."""
        await self.store.migrate(issuer_key_id=_issuing_key_id(self.files))
        return await self.store.schema_revision()

    async def schema_revision(self) -> str | None:
        return await self.store.schema_revision()

    def readiness(self) -> dict[str, bool]:
        """What must be true before this instance takes traffic (the database is asked apart):
        `signing_keys` is false while a CA key's token is unavailable."""
        if self.publishing is None:
            return {"ca": self.ca is not None}
        return {
            "ca": self.ca is not None,
            "signing_keys": all(signer.available for signer in self._signers()),
            "crls": all(
                self.publishing.crls.current(issuer.key_id) is not None
                for issuer in self.publishing.issuers
            ),
        }

    def _signers(self) -> Iterator[Signer]:
        if self.publishing is not None:
            for issuer in self.publishing.issuers:
                yield issuer.ca.signer
        elif self.ca is not None:
            yield self.ca.signer

    async def probe_signers(self) -> None:
        """Try each unavailable token key once: readiness recovers when its token is back,
        without waiting for a request to sign."""
        for signer in self._signers():
            if isinstance(signer, Pkcs11Signer) and not signer.available:
                await self.workers.run(signer.probe)

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

    async def maintain(self) -> None:
        """One round of the periodic work of a serving instance: predecessors whose renewal's
        grace period is over are revoked, refusal summaries whose window closed written, and
        what imports that died half way staged removed."""
        await self.probe_signers()
        await self.guard.flush()
        await self.maintain_cluster()

    async def maintain_cluster(self) -> None:
        """The part of `maintain` that one instance does for the whole cluster (the refusal
        summaries are each instance's own): superseded predecessors revoked, abandoned
        imports removed, enrollments that died mid-issuance (on any instance) released, stored
        OCSP responses past their nextUpdate removed, IdM login tokens a day past their
        expiry deleted."""
        await self.revocations.revoke_superseded()
        await self.registry.remove_stale_imports(STALE_IMPORT)
        await self.recover()
        await self.guard.forget_old_failures()
        async with self.store.write() as tx:
            await tx.forget_expired_ocsp_responses(self.clock.now())
        await self.idm.forget_expired_tokens()

    async def run_maintenance(self, every: dt.timedelta = MAINTENANCE_INTERVAL) -> None:
        """`maintain` for ever, every `every`; a failed round is logged and retried. The
        cluster's share runs only in the instance holding the maintenance lease, which
        another instance takes over within a round when the holder dies (`Store.lease`)."""
        lease = self.store.lease(MAINTENANCE_LEASE)
        try:
            while True:
                await asyncio.sleep(every.total_seconds())
                try:
                    await self.probe_signers()  # each instance's own token sessions
                    await self.guard.flush()
                    if await lease.held():
                        await self.maintain_cluster()
                except Exception:  # the loop must outlive any one failure
                    _log.exception("maintenance round failed")
        finally:
            await lease.release()

    async def close(self) -> None:
        try:
            await self.guard.flush(everything=True)
        except Exception:  # the database may be gone already; closing must still finish
            _log.exception("the last refusal summaries could not be recorded")
        self.workers.close()
        await self.store.close()


def profiles_for_demo(profiles: ProfileCatalogue, ca_cert: Path) -> ProfileCatalogue:
    """The generated demo hierarchy with an EC issuing key (`est-ca init --ca-key p256|p384`)
    signs with ECDSA and the curve's hash (SHA-256 for P-256, SHA-384 for P-384) where a
    profile names a scheme that key cannot (the shipped ones name RSASSA-PSS, as OCES3)."""
    key = x509.load_pem_x509_certificate(ca_cert.read_bytes()).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return profiles
    scheme = SignatureScheme(
        algorithm="ecdsa", hash="sha384" if key.curve.key_size >= 384 else "sha256"
    )
    return ProfileCatalogue(
        profiles={
            name: profile
            if profile.signature.fits(key)
            else dataclasses.replace(profile, signature=scheme)
            for name, profile in profiles.profiles.items()
        }
    )


def _crl_facts(publishing: RevocationPublishing) -> Callable[[], list[CrlFacts]]:
    """The published CRLs as the metrics show them; entries counted once per CRL number."""
    counted: dict[tuple[str, int], int] = {}

    def read() -> list[CrlFacts]:
        facts = []
        for issuer in publishing.issuers:
            crl = publishing.crls.current(issuer.key_id)
            if crl is None:
                continue
            key = (issuer.key_id, crl.number)
            if key not in counted:
                counted[key] = len(x509.load_der_x509_crl(crl.der))
            facts.append(CrlFacts(issuer.name, crl.this_update, counted[key]))
        return facts

    return read


def _issuing_key_id(files: ServiceFiles) -> KeyId:
    """The issuing CA's key id: migrations record it as the issuer of rows that cannot name
    their own (reservations never signed)."""
    return KeyId.of(key_identifier(x509.load_pem_x509_certificate(files.ca_cert.read_bytes())))


async def _prepare_schema(
    store: Store, settings: Settings, issuing: KeyId, *, migrate: bool = False
) -> None:
    if migrate or settings.database.auto_migrate:
        await store.migrate(issuer_key_id=issuing)
        return
    if await store.schema_revision() is None:
        raise ConfigurationError(
            "the database has no schema; run `est-ca db upgrade` (database.auto_migrate is off)"
        )


def publication_of(settings: Settings) -> Publication:
    """The URLs certificates carry: under the default listed authority's name, else those of
    the `[ca]` section (issuing.*), which certificates issued before CAs were listed name."""
    base = settings.public_base_url
    listed = settings.authorities
    default = listed_default(listed)
    return Publication(
        base_url=base,
        name_registration_authority=settings.publication.name_registration_authority or base,
        issuing_name=default.name if default else publication_paths.ISSUING,
        authority_names=tuple(entry.name for entry in listed),
    )


def _signature_for(ca: CertificateAuthority, *, root: bool) -> SignatureScheme:
    """How a CA signs CRLs and responder certificates: as it signs end-entity certificates
    (RSASSA-PSS SHA-256), the root as it signs CA certificates (SHA-512)."""
    if isinstance(ca.signer.public_key, rsa.RSAPublicKey):
        return CA_SIGNATURE if root else EE_SIGNATURE
    return SignatureScheme(algorithm="ecdsa", hash="sha384" if root else "sha256")


def _revocation_publishing(
    settings: Settings,
    publication: Publication,
    files: ServiceFiles,
    ca: CertificateAuthority,
    root: CertificateAuthority | None,
    others: Sequence[tuple[CaEntry, CertificateAuthority]],
    store: Store,
    clock: Clock,
    workers: Workers,
) -> RevocationPublishing:
    revocation = settings.revocation
    issuers = [
        ServedIssuer(
            name=publication.issuing_name,
            ca=ca,
            scheme=_signature_for(ca, root=False),
            crl_path=publication_paths.crl_path(publication.issuing_name),
            crl_validity=dt.timedelta(hours=revocation.crl_validity_hours),
            crl_refresh=dt.timedelta(hours=revocation.crl_refresh_hours),
            lists_subscribers=True,
        ),
        *(
            ServedIssuer(
                name=entry.name,
                ca=other,
                scheme=_signature_for(other, root=False),
                crl_path=publication_paths.crl_path(entry.name),
                crl_validity=dt.timedelta(hours=revocation.crl_validity_hours),
                crl_refresh=dt.timedelta(hours=revocation.crl_refresh_hours),
                lists_subscribers=True,
            )
            for entry, other in others
        ),
    ]
    if root is not None:
        root_validity = dt.timedelta(days=revocation.root_crl_validity_days)
        issuers.append(
            ServedIssuer(
                name=publication_paths.ROOT,
                ca=root,
                scheme=_signature_for(root, root=True),
                crl_path=publication_paths.ROOT_CRL_PATH,
                crl_validity=root_validity,
                crl_refresh=root_validity / 2,
                lists_subscribers=False,
            )
        )
    entries = [default_entry(settings, publication), *(entry for entry, _ in others)]
    tokens = {
        entry.name: _token_keys(settings, entry.responder_token)
        for entry in entries
        if entry.responder_token is not None
    }
    wrapper = KeyWrapper(load_key(files.responder_wrap_key))
    keepers = [
        ResponderKeeper(
            issuer=issuer,
            token_keys=tokens.get(issuer.name),
            store=store,
            clock=clock,
            workers=workers,
            wrapper=wrapper,
            validity=dt.timedelta(days=settings.ocsp.responder_validity_days),
            renew_before=dt.timedelta(days=settings.ocsp.responder_renew_days),
        )
        for issuer in issuers
    ]
    return RevocationPublishing(
        store=store,
        clock=clock,
        issuers=issuers,
        keepers=keepers,
        crls=CrlPublisher(store=store, clock=clock, workers=workers, issuers=issuers),
        responder=OcspResponder(
            store=store,
            clock=clock,
            workers=workers,
            keepers=keepers,
            validity=dt.timedelta(hours=settings.ocsp.response_validity_hours),
        ),
        poll=dt.timedelta(seconds=revocation.poll_seconds),
        listen=revocation.listen,
    )


def _load_root(files: ServiceFiles, ca: CertificateAuthority) -> CertificateAuthority | None:
    """The root, when its key is configured: it signs the root's CRL and the OCSP responder
    certificate about the issuing CA. Blocking (decrypts the key): run it on a thread."""
    if files.root_key is None:
        return None
    passphrase = files.ca_passphrase()
    signer = KeyFileSigner.load(files.root_key, passphrase)
    return CertificateAuthority(certificate=ca.root, chain=(), signer=signer)


def _load_listed(
    settings: Settings, profiles: ProfileCatalogue
) -> tuple[tuple[CaEntry, CertificateAuthority], ...]:
    """Each listed CA but the default (`files` has that one). Blocking (decrypts the keys and
    proves each with a signature): run it on a thread."""
    default = listed_default(settings.authorities)
    loaded: list[tuple[CaEntry, CertificateAuthority]] = []
    for entry in settings.authorities:
        if entry is default:
            continue
        signer = signer_for(settings, entry.key)
        certificate = settings.data_path(entry.certificate, "")
        chain = settings.data_path(entry.chain, "")
        ca = CertificateAuthority.load(certificate, chain, signer)
        if not entry.retired:
            _require_profiles_fit(ca, profiles, entry.profiles)
        loaded.append((entry, ca))
    return tuple(loaded)


def default_entry(settings: Settings, publication: Publication) -> CaEntry:
    """The default CA as a list entry: the listed one, or the `[ca]` section's (the demo)."""
    listed = listed_default(settings.authorities)
    if listed is not None:
        return listed
    return CaEntry(
        name=publication.issuing_name,
        certificate=settings.ca.cert_file,
        chain=settings.ca.chain_file,
        key=FileKeyRef(settings.ca.key_file, settings.ca.key_passphrase_file),
        default=True,
    )


def served_entries(settings: Settings, publication: Publication) -> list[CaEntry]:
    """Every CA served, the default first (`default_entry`), then the other listed ones."""
    default = default_entry(settings, publication)
    return [default, *(entry for entry in settings.authorities if entry != default)]


def labels_of(settings: Settings, publication: Publication) -> CaLabels:
    """The CA labels served, from configuration alone (no keys needed to check orders)."""
    default, *others = served_entries(settings, publication)
    entries = [default, *(entry for entry in others if not entry.retired)]
    return CaLabels(
        tuple(
            CaLabel(
                entry.est_label,
                frozenset(entry.profiles),
                require_channel_binding=entry.require_channel_binding,
            )
            for entry in entries
        ),
        default=default.est_label,
    )


def _labelled(
    settings: Settings,
    publication: Publication,
    ca: CertificateAuthority,
    others: Sequence[tuple[CaEntry, CertificateAuthority]],
) -> list[LabelledCa]:
    """Each label with the CA that signs under it now and its retired generations."""
    default = default_entry(settings, publication)
    everything = [(default, ca), *others]
    labelled = []
    for label in labels_of(settings, publication).labels:
        of_label = [(e, c) for e, c in everything if e.est_label == label.name]
        (entry, current), *_ = [(e, c) for e, c in of_label if not e.retired]
        labelled.append(
            LabelledCa(
                label=label,
                issuer=Issuer(current, dataclasses.replace(publication, issuing_name=entry.name)),
                earlier=tuple(c for e, c in of_label if e.retired),
            )
        )
    return labelled


def _require_profiles_fit(
    ca: CertificateAuthority, profiles: ProfileCatalogue, allowed: Sequence[str]
) -> None:
    for profile in profiles.profiles.values():
        if allowed and profile.name not in allowed:
            continue
        if not profile.signature.fits(ca.signer.public_key):
            raise ConfigurationError(
                f"profile {profile.name!r} signs with {profile.signature.algorithm}, "
                f"which the key of CA {ca.subject.rfc4514_string()} cannot do"
            )


def _pin(settings: Settings, pin_file: str, pin_env: str) -> TokenPin:
    """A token PIN from its file (0600, like every secret file) or environment variable."""
    path = settings.data_path(pin_file, "") if pin_file else None
    if path is not None:
        refuse_exposed([path])
    return read_pin(
        pin_file=str(path) if path else None, pin_env=pin_env or None, environ=os.environ
    )


def _token_keys(settings: Settings, token: TokenRef) -> TokenKeys:
    return TokenKeys(
        module=token.module,
        token=token.token,
        pin=_pin(settings, token.pin_file, token.pin_env),
        pool_size=default_threads(),
    )


def signer_for(settings: Settings, key: KeyRef) -> Signer:
    """The `Signer` a key reference names: one branch per key store. Blocking (decrypts a key
    file, or logs in to a token and reads its public key): run it on a thread.

    A token signer's session pool has one session per worker thread, the most that sign at
    once. Its PIN and a key file's passphrase come from files no other user may read (or from
    the environment), never from a command line."""
    if isinstance(key, Pkcs11KeyRef):
        return Pkcs11Signer(
            module=key.module,
            token=key.token,
            label=key.label,
            pin=_pin(settings, key.pin_file, key.pin_env),
            pool_size=default_threads(),
        )
    path = settings.data_path(key.path, "")
    secret = settings.data_path(key.passphrase_file, "") if key.passphrase_file else None
    refuse_exposed([p for p in (path, secret) if p is not None])
    if key.passphrase_env:
        return KeyFileSigner.load(path, passphrase_from_environment(key.passphrase_env))
    return KeyFileSigner.load(path, read_passphrase(secret) if secret else None)


def _load_ca(
    settings: Settings, files: ServiceFiles, profiles: ProfileCatalogue, allowed: Sequence[str]
) -> CertificateAuthority:
    """Blocking (decrypts the key and proves it with a signature): run it on a thread."""
    on_token = token_key(settings)
    if on_token is not None:
        signer = signer_for(settings, on_token)
    else:
        assert files.ca_key is not None
        passphrase = files.ca_passphrase()
        signer = KeyFileSigner.load(files.ca_key, passphrase)
    ca = CertificateAuthority.load(files.ca_cert, files.ca_chain, signer)
    _require_profiles_fit(ca, profiles, allowed)
    return ca
