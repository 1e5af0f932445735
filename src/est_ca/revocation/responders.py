"""Delegated OCSP responder certificates (RFC 6960 4.2.2.2): one per served CA and instance.

The responder key is a P-256 key of its own, so the CA key stays out of the hot path. Its
certificate is issued by the CA with id-kp-OCSPSigning and id-pkix-ocsp-nocheck, recorded in
the database before it is used, and replaced well before it expires (no response may outlive
the certificate that signs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

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
from est_ca.private_files import write_private
from est_ca.revocation.issuers import ServedIssuer
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
    """The current responder credential of one CA, kept in files under `directory`, or, with
    `token_keys`, its certificate in a file and its key on the PKCS#11 token (a new key per
    certificate, labelled with the CA's name and the certificate's serial).

    Loading (decrypting the key), generating, signing, encrypting and writing (fsync) run on
    the service's workers, never on the event loop.
    """

    def __init__(
        self,
        *,
        issuer: ServedIssuer,
        store: Store,
        clock: Clock,
        workers: Workers,
        directory: Path,
        passphrase: bytes | None,
        validity: dt.timedelta,
        renew_before: dt.timedelta,
        token_keys: TokenKeys | None = None,
    ) -> None:
        self.issuer = issuer
        self._store = store
        self._clock = clock
        self._workers = workers
        self._key_file = directory / f"{issuer.name}-responder.key"
        self._cert_file = directory / f"{issuer.name}-responder.pem"
        self._passphrase = passphrase
        self._validity = validity
        self._renew_before = renew_before
        self._current: ResponderCredential | None = None
        self._token_keys = token_keys
        # One preparation at a time: two would issue two certificates, and their key and
        # certificate files, written on worker threads, could end up from different ones.
        self._preparing = asyncio.Lock()

    @property
    def current(self) -> ResponderCredential:
        if self._current is None:
            raise RuntimeError("the responder credential has not been prepared")
        return self._current

    async def prepare(self) -> ResponderCredential:
        """Load the credential from its files, or issue a new one when it is missing or due."""
        async with self._preparing:
            if self._current is None:
                self._current = await self._workers.run(self._load)
            if self._current is None or self._is_due(self._current):
                self._current = await self._issue()
            return self._current

    def _is_due(self, credential: ResponderCredential) -> bool:
        return self._clock.now() >= credential.not_after - self._renew_before

    def _load(self) -> ResponderCredential | None:
        """Blocking (file reads, key decryption): run it on a worker."""
        if not self._cert_file.is_file():
            return None
        if self._token_keys is None and not self._key_file.is_file():
            return None
        certificate = x509.load_pem_x509_certificate(self._cert_file.read_bytes())
        if certificate.issuer != self.issuer.ca.subject:
            return None  # a responder of another CA (the data directory was re-used)
        if self._token_keys is not None:
            try:
                token_signer = self._token_keys.signer(self._token_label(certificate.serial_number))
            except ConfigurationError:
                return None  # not on this token (the files are a key file's): issue anew
            return ResponderCredential(certificate=certificate, signer=token_signer)
        signer = KeyFileSigner.load(self._key_file, self._passphrase)
        return ResponderCredential(certificate=certificate, signer=signer)

    def _token_label(self, serial: int) -> str:
        return f"ocsp-{self.issuer.name}-{serial:x}"

    async def _issue(self) -> ResponderCredential:
        serial = Serial.random()
        now = self._clock.now()
        if self._token_keys is not None:
            return await self._issue_on_token(self._token_keys, serial, now)
        key, certificate = await self._workers.run(self._new_credential, serial, now)
        async with self._store.write() as tx:  # recorded before it is ever used
            await tx.insert_ocsp_responder(
                serial=serial,
                issuer_key_id=self.issuer.key_id,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                der=certificate.public_bytes(serialization.Encoding.DER),
                created_at=now,
            )
        await self._workers.run(self._write, key, certificate)
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
        async with self._store.write() as tx:  # recorded before it is ever used
            await tx.insert_ocsp_responder(
                serial=serial,
                issuer_key_id=self.issuer.key_id,
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                der=certificate.public_bytes(serialization.Encoding.DER),
                created_at=now,
            )
        signer = await self._workers.run(token_keys.signer, label)
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        await self._workers.run(write_private, self._cert_file, pem, replace=True)
        _log.info(
            "OCSP responder certificate issued",
            ca=self.issuer.name,
            serial=serial.hex,
            key_label=label,
            not_after=certificate.not_valid_after_utc.isoformat(),
        )
        return ResponderCredential(certificate=certificate, signer=signer)

    def _new_credential(
        self, serial: Serial, not_before: dt.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Blocking (a new key, a CA signature): run it on a worker."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = responder_certificate(
            self.issuer, key.public_key(), serial, not_before, self._validity
        )
        return key, certificate

    def _write(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        """Replace both files atomically (write, then rename), the key never world-readable.
        Blocking (key encryption, fsync): run it on a worker."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        write_private(self._key_file, key_pem, replace=True)
        write_private(
            self._cert_file, certificate.public_bytes(serialization.Encoding.PEM), replace=True
        )
