"""Delegated OCSP responder certificates (RFC 6960 4.2.2.2): one per served CA for the cluster.

The responder key is a P-256 key of its own, so the CA key stays out of the hot path. Its
certificate is issued by the CA with id-kp-OCSPSigning and id-pkix-ocsp-nocheck, recorded in
the database before it is used, and replaced well before it expires (no response may outlive
the certificate that signs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from est_ca.ca.building import own_certificate_builder
from est_ca.ca.certificates import Serial
from est_ca.ca.pkcs11_signer import TokenKeys
from est_ca.ca.precheck import check_responder_draft
from est_ca.ca.signing import (
    KeyFileSigner,
    SignatureScheme,
    Signer,
    draft_certificate,
    signed_with,
)
from est_ca.ca.spki import public_key_der
from est_ca.clock import Clock
from est_ca.errors import ConfigurationError
from est_ca.revocation.issuers import ServedIssuer
from est_ca.revocation.key_wrap import KeyWrapper
from est_ca.revocation.state import RecordedResponder
from est_ca.store.store import Store
from est_ca.workers import Workers

_log = structlog.get_logger(__name__)
RESPONDER_SCHEME = SignatureScheme(algorithm="ecdsa", hash="sha256")


@dataclasses.dataclass(frozen=True)
class ResponderCredential:
    certificate: x509.Certificate
    signer: Signer

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def serial(self) -> Serial:
        return Serial(self.certificate.serial_number)


def responder_certificate(
    issuer: ServedIssuer,
    public_key: ec.EllipticCurvePublicKey,
    serial: Serial,
    not_before: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    """Blocking (a CA signature): run it on a worker thread."""
    common_name = issuer.ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    builder = own_certificate_builder(
        issuer.ca,
        common_name=f"{common_name!s} OCSP responder",
        public_key=public_key,
        serial=serial,
        not_before=not_before,
        not_after=not_before + validity - dt.timedelta(seconds=1),
        purpose=ExtendedKeyUsageOID.OCSP_SIGNING,
    ).add_extension(x509.OCSPNoCheck(), critical=False)
    draft = draft_certificate(builder, issuer.scheme)
    # The CA key signs nothing unchecked: a responder certificate is as powerful as the CA
    # for OCSP answers.
    check_responder_draft(draft, issuer.ca, public_key_der(public_key))
    return signed_with(draft, issuer.ca.signer, issuer.scheme)


class ResponderKeeper:
    """The cluster's current responder credential of one CA, kept in the database: the newest
    recorded responder certificate whose key this instance can use (wrapped in its row under
    the wrapping key, `key_wrap.py`; or, with `token_keys`, on the shared PKCS#11 token under
    the label its row names: a new key per certificate, labelled with the CA's name and the
    certificate's serial).

    Every instance adopts that one; a new one is issued only when there is none or it is due,
    under the CA's responder lock (`Store.exclusive`, as CRLs are made) and after reading the
    database again under it, so one instance of the cluster issues it and the others adopt it
    in their next publishing round. Generating, signing and unwrapping run on the service's
    workers, never on the event loop.
    """

    def __init__(
        self,
        *,
        issuer: ServedIssuer,
        store: Store,
        clock: Clock,
        workers: Workers,
        wrapper: KeyWrapper,
        validity: dt.timedelta,
        renew_before: dt.timedelta,
        token_keys: TokenKeys | None = None,
    ) -> None:
        self.issuer = issuer
        self._store = store
        self._clock = clock
        self._workers = workers
        self._wrapper = wrapper
        self._validity = validity
        self._renew_before = renew_before
        self._current: ResponderCredential | None = None
        self._token_keys = token_keys
        # One preparation at a time in this process (the lock below orders the processes).
        self._preparing = asyncio.Lock()

    @property
    def current(self) -> ResponderCredential:
        if self._current is None:
            raise RuntimeError("the responder credential has not been prepared")
        return self._current

    async def prepare(self) -> ResponderCredential:
        """Adopt the cluster's credential from the database, or issue it when it is missing
        or due (one instance of the cluster does). A key that does not unwrap, or is not on
        the token, is a `ConfigurationError`: issuing another would only leave the other
        instances unable to use that one."""
        async with self._preparing:
            recorded = await self._newest()
            if recorded is None or self._is_due(recorded):
                async with self._store.exclusive(_responder_lock(self.issuer.key_id)):
                    # Again under the lock: the instance that held it may have issued it.
                    recorded = await self._newest()
                    if recorded is None or self._is_due(recorded):
                        self._current = await self._issue()
                        return self._current
            if self._current is None or self._current.serial != recorded.serial:
                self._current = await self._workers.run(self._adopt, recorded)
                _log.info(
                    "OCSP responder certificate adopted",
                    ca=self.issuer.name,
                    serial=recorded.serial.hex,
                    not_after=recorded.not_after.isoformat(),
                )
            return self._current

    async def _newest(self) -> RecordedResponder | None:
        async with self._store.read() as tx:
            return await tx.newest_ocsp_responder(
                self.issuer.key_id, on_token=self._token_keys is not None
            )

    def _is_due(self, recorded: RecordedResponder) -> bool:
        """Due within `renew_before` of the notAfter the database records."""
        return self._clock.now() >= recorded.not_after - self._renew_before

    def _adopt(self, recorded: RecordedResponder) -> ResponderCredential:
        """Blocking (unwrapping, a token session): run it on a worker."""
        certificate = x509.load_der_x509_certificate(recorded.der)
        signer: Signer
        if self._token_keys is not None:
            assert recorded.key_label is not None
            try:
                signer = self._token_keys.signer(recorded.key_label)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"the OCSP responder key {recorded.key_label!r} that the database names "
                    f"for CA {self.issuer.name!r} is not on this instance's responder token: "
                    "every instance needs the same token"
                ) from exc
        else:
            assert recorded.wrapped_key is not None
            signer = KeyFileSigner(
                self._wrapper.unwrap(recorded.wrapped_key, self.issuer.key_id, recorded.serial)
            )
        if public_key_der(signer.public_key) != public_key_der(certificate.public_key()):
            raise ConfigurationError(
                f"the OCSP responder key {recorded.serial.hex} does not match its certificate"
            )
        return ResponderCredential(certificate=certificate, signer=signer)

    def _token_label(self, serial: int) -> str:
        return f"ocsp-{self.issuer.name}-{serial:x}"

    async def _issue(self) -> ResponderCredential:
        """Only under the CA's responder lock."""
        serial = Serial.random()
        now = self._clock.now()
        if self._token_keys is not None:
            return await self._issue_on_token(self._token_keys, serial, now)
        key, certificate = await self._workers.run(self._new_credential, serial, now)
        wrapped = await self._workers.run(self._wrapper.wrap, key, self.issuer.key_id, serial)
        await self._record(serial, certificate, now, wrapped_key=wrapped)
        _log.info(
            "OCSP responder certificate issued",
            ca=self.issuer.name,
            serial=serial.hex,
            not_after=certificate.not_valid_after_utc.isoformat(),
        )
        return ResponderCredential(certificate=certificate, signer=KeyFileSigner(key))

    async def _issue_on_token(
        self, token_keys: TokenKeys, serial: Serial, now: dt.datetime
    ) -> ResponderCredential:
        """A key made on the token (it never leaves it), certified, recorded, then used."""
        label = self._token_label(serial.value)
        public_key = await self._workers.run(token_keys.generate, label, "ec-p256")
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        certificate = await self._workers.run(
            responder_certificate, self.issuer, public_key, serial, now, self._validity
        )
        await self._record(serial, certificate, now, key_label=label)
        signer = await self._workers.run(token_keys.signer, label)
        _log.info(
            "OCSP responder certificate issued",
            ca=self.issuer.name,
            serial=serial.hex,
            key_label=label,
            not_after=certificate.not_valid_after_utc.isoformat(),
        )
        return ResponderCredential(certificate=certificate, signer=signer)

    async def _record(
        self,
        serial: Serial,
        certificate: x509.Certificate,
        now: dt.datetime,
        *,
        wrapped_key: bytes | None = None,
        key_label: str | None = None,
    ) -> None:
        """Recorded before it is ever used (OCSP says "good" for it from then on)."""
        async with self._store.write() as tx:
            await tx.insert_ocsp_responder(
                serial=serial,
                issuer_key_id=self.issuer.key_id,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                der=certificate.public_bytes(serialization.Encoding.DER),
                created_at=now,
                wrapped_key=wrapped_key,
                key_label=key_label,
            )

    def _new_credential(
        self, serial: Serial, not_before: dt.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Blocking (a new key, a CA signature): run it on a worker."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = responder_certificate(
            self.issuer, key.public_key(), serial, not_before, self._validity
        )
        return key, certificate


def _responder_lock(key_id: str) -> str:
    return f"ocsp-responder:{key_id}"
