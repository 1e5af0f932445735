"""The demo CA hierarchy the embedded default generates on first start.

Root (RSA 4096, 25 years) and issuing CA (RSA 3072, 10 years, pathLen 0), signed with
RSASSA-PSS SHA-512 as OCES3 CA certificates are. Every name carries "Demo" and "Test - not for
production", so no one can mistake it for the Danish state's CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from est_ca.ca.building import authority_information_access, crl_distribution_points
from est_ca.ca.certificates import Serial
from est_ca.ca.publication import Publication
from est_ca.ca.signing import (
    KeyFileSigner,
    SignatureScheme,
    Signer,
    draft_certificate,
    signed_with,
)
from est_ca.private_files import write_private

CA_SIGNATURE = SignatureScheme(algorithm="rsassa-pss", hash="sha512", salt_length=64)
# What OCES3 end-entity certificates are signed with; the issuing CA signs CRLs and OCSP
# responder certificates the same way.
EE_SIGNATURE = SignatureScheme(algorithm="rsassa-pss", hash="sha256", salt_length=32)
ROOT_VALIDITY = dt.timedelta(days=25 * 365 + 6)  # 25 years, leap days included
ISSUING_VALIDITY = dt.timedelta(days=10 * 365 + 2)
DEMO_ORGANISATION = "est-ca Demo"
DEMO_MARKER = "Test - not for production"


@dataclasses.dataclass(frozen=True)
class HierarchyFiles:
    """Where a generated hierarchy lies; the names the configuration points at."""

    root_cert: Path
    root_key: Path
    issuing_cert: Path
    issuing_key: Path
    issuing_chain: Path

    @classmethod
    def in_directory(cls, directory: Path) -> HierarchyFiles:
        return cls(
            root_cert=directory / "root.pem",
            root_key=directory / "root.key",
            issuing_cert=directory / "issuing.pem",
            issuing_key=directory / "issuing.key",
            issuing_chain=directory / "issuing-chain.pem",
        )

    def exist(self) -> bool:
        return all(path.is_file() for path in dataclasses.astuple(self))


def _ca_name(common_name: str) -> x509.Name:
    # Encoded CN first, as the OCES3 CA certificates are.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEMO_MARKER),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEMO_ORGANISATION),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DK"),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def build_root(
    key: rsa.RSAPrivateKey, now: dt.datetime, publication: Publication
) -> x509.Certificate:
    """Self-signed; like the OCES3 root it names its own certificate, OCSP and CRL URLs."""
    name = _ca_name(f"{DEMO_ORGANISATION} Root CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(Serial.random().value)
        .not_valid_before(now)
        .not_valid_after(now + ROOT_VALIDITY - dt.timedelta(seconds=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            authority_information_access(publication.ocsp_url, publication.root_cert_url),
            critical=False,
        )
        .add_extension(crl_distribution_points(publication.root_crl_url), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(_ca_key_usage(), critical=True)
    )
    return signed_with(draft_certificate(builder, CA_SIGNATURE), KeyFileSigner(key), CA_SIGNATURE)


def build_issuing(
    public_key: CertificateIssuerPublicKeyTypes,
    root: x509.Certificate,
    root_signer: Signer,
    now: dt.datetime,
    publication: Publication,
    number: int = 1,
) -> x509.Certificate:
    """pathLen 0: it issues end-entity certificates only. Its revocation is on the root's CRL.
    `number` tells the generations of a rollover apart in the subject ("Issuing CA 2").
    Only its public key is needed: the key itself may live on a token."""
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(_ca_name(f"{DEMO_ORGANISATION} Issuing CA {number}"))
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(Serial.random().value)
        .not_valid_before(now)
        # Never past its root (a rollover late in the root's life).
        .not_valid_after(
            min(now + ISSUING_VALIDITY - dt.timedelta(seconds=1), root.not_valid_after_utc)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .add_extension(
            authority_information_access(publication.ocsp_url, publication.root_cert_url),
            critical=False,
        )
        .add_extension(crl_distribution_points(publication.root_crl_url), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_ca_key_usage(), critical=True)
    )
    return signed_with(draft_certificate(builder, CA_SIGNATURE), root_signer, CA_SIGNATURE)


def generate_demo_hierarchy(
    files: HierarchyFiles,
    passphrase: bytes,
    now: dt.datetime,
    publication: Publication,
    key_type: str = "rsa3072",
) -> HierarchyFiles:
    """Create keys and certificates; refuses to overwrite anything that exists. `key_type`
    is the issuing CA's (config.DEMO_KEY_TYPES); the root is RSA-4096 whatever it is."""
    for path in dataclasses.astuple(files):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwriting CA material")
    files.root_cert.parent.mkdir(parents=True, exist_ok=True)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    issuing_key = demo_issuing_key(key_type)
    root = build_root(root_key, now, publication)
    issuing = build_issuing(
        issuing_key.public_key(), root, KeyFileSigner(root_key), now, publication
    )
    write_private_key(files.root_key, root_key, passphrase)
    write_private_key(files.issuing_key, issuing_key, passphrase)
    files.root_cert.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    files.issuing_cert.write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
    files.issuing_chain.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return files


def demo_issuing_key(key_type: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    curves: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}
    if key_type not in curves:
        raise ValueError(f"unknown CA key type {key_type!r}")
    return ec.generate_private_key(curves[key_type])


def key_type_of(certificate: x509.Certificate) -> str:
    """A CA certificate's key as `--ca-key` names it ("rsa3072", "p256", "p384"), or as
    near as that naming goes ("rsa4096", "ed25519")."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"p{key.curve.key_size}"
    return type(key).__name__.lower().removesuffix("publickey").lstrip("_")


def write_private_key(
    path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, passphrase: bytes
) -> None:
    """An encrypted PKCS#8 PEM file, created with mode 0600 (never readable by others)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    write_private(path, pem)
