"""A certificate authority as the service uses it: its certificate, its chain, and its signer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from est_ca.ca.certificates import KeyId
from est_ca.ca.signing import Signer
from est_ca.ca.spki import public_key_der
from est_ca.errors import ConfigurationError


def issuer_key_id(certificate: x509.Certificate) -> KeyId | None:
    """The key id of the CA that issued `certificate`, as its AuthorityKeyIdentifier names it
    (None without one: we never issue such a certificate)."""
    try:
        identifier = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None
    return KeyId.of(identifier) if identifier else None


def key_identifier(certificate: x509.Certificate) -> bytes:
    """A CA certificate's subjectKeyIdentifier (computed by method 1 when it has none)."""
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """An issuing CA. `chain` runs from its issuer up to and including the root."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    signer: Signer

    def __post_init__(self) -> None:
        subject = self.certificate.subject.rfc4514_string()
        if public_key_der(self.signer.public_key) != public_key_der(self.certificate.public_key()):
            raise ConfigurationError(f"the CA key does not belong to the CA certificate {subject}")
        try:
            constraints = self.certificate.extensions.get_extension_for_class(
                x509.BasicConstraints
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigurationError(f"{subject} is not a CA certificate")
        child = self.certificate
        for parent in self.chain:
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise ConfigurationError(
                    f"the CA chain is broken: {child.subject.rfc4514_string()} is not issued by "
                    f"{parent.subject.rfc4514_string()}"
                ) from exc
            child = parent
        if child.issuer != child.subject:
            raise ConfigurationError("the CA chain must end with the self-signed root")

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.certificate

    @property
    def subject(self) -> x509.Name:
        return self.certificate.subject

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The issuing CA and every certificate above it: what EST cacerts returns."""
        return (self.certificate, *self.chain)

    @property
    def key_identifier(self) -> bytes:
        """The CA's subjectKeyIdentifier: the keyIdentifier of the AKI in what it issues."""
        return key_identifier(self.certificate)

    @property
    def key_id(self) -> KeyId:
        """How the store names this CA as the issuer of the certificates it signs."""
        return KeyId.of(self.key_identifier)

    @classmethod
    def load(cls, cert_file: Path, chain_file: Path, signer: Signer) -> CertificateAuthority:
        certificate = _load_certificates(cert_file)[0]
        chain = tuple(_load_certificates(chain_file))
        return cls(certificate=certificate, chain=chain, signer=signer)


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigurationError(f"{path} holds no PEM certificate") from exc
    return certificates
