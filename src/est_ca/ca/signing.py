"""Signature schemes and the one signer interface: "sign these bytes with CA key K".

cryptography's builders want the private key in memory, which an HSM never gives. So every
certificate (and later every CRL and OCSP response) is built the same way whatever the backend:
build and sign it with a throwaway key of the same algorithm, take the to-be-signed bytes, have
the `Signer` sign them, and assemble TBS + algorithm + signature. The throwaway-signed copy is
also what pre-issuance checks inspect.

Signers block (a private-key operation, or a PKCS#11 call): callers run them on a worker thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.x509 import ocsp

from est_ca.ca.spki import public_key_der, subject_public_key_bits
from est_ca.errors import ConfigurationError

HashName = Literal["sha256", "sha384", "sha512"]
_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclasses.dataclass(frozen=True)
class SignatureScheme:
    """How a CA signs: RSASSA-PSS (MGF1 with the same hash), RSA PKCS#1 v1.5, or ECDSA."""

    algorithm: Literal["rsassa-pss", "rsa-pkcs1v15", "ecdsa"]
    hash: HashName
    # RSASSA-PSS only: the salt length in bytes, stated in every signature's parameters.
    salt_length: int | None = None

    def __post_init__(self) -> None:
        if self.hash not in _HASHES:
            raise ConfigurationError(f"unsupported signature hash {self.hash!r}")
        if self.algorithm == "rsassa-pss":
            if self.salt_length is None or not 0 <= self.salt_length <= 64:
                raise ConfigurationError("RSASSA-PSS needs a salt_length between 0 and 64")
        elif self.salt_length is not None:
            raise ConfigurationError(f"{self.algorithm} takes no salt_length")

    def hash_algorithm(self) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
        return _HASHES[self.hash]()

    def rsa_padding(self) -> padding.PSS | padding.PKCS1v15 | None:
        if self.algorithm == "rsassa-pss":
            assert self.salt_length is not None
            return padding.PSS(
                mgf=padding.MGF1(self.hash_algorithm()), salt_length=self.salt_length
            )
        if self.algorithm == "rsa-pkcs1v15":
            return padding.PKCS1v15()
        return None

    def fits(self, key: CertificateIssuerPublicKeyTypes) -> bool:
        if self.algorithm == "ecdsa":
            return isinstance(key, ec.EllipticCurvePublicKey)
        return isinstance(key, rsa.RSAPublicKey)

    def sign(self, key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
        if isinstance(key, rsa.RSAPrivateKey):
            rsa_padding = self.rsa_padding()
            assert rsa_padding is not None
            return key.sign(data, rsa_padding, self.hash_algorithm())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(self.hash_algorithm()))
        raise ConfigurationError(f"{self.algorithm} cannot sign with a {type(key).__name__}")

    def verify(self, key: CertificateIssuerPublicKeyTypes, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(key, rsa.RSAPublicKey):
                rsa_padding = self.rsa_padding()
                assert rsa_padding is not None
                key.verify(signature, data, rsa_padding, self.hash_algorithm())
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(self.hash_algorithm()))
            else:
                return False
        except InvalidSignature:
            return False
        return True

    def throwaway_key(self) -> CertificateIssuerPrivateKeyTypes:
        """A cheap key of the same algorithm: builders sign with it, the real key signs the TBS.

        The algorithm identifier a builder writes depends only on the key type and the scheme's
        parameters (PSS salt is explicit), never on the key's size, so a small RSA key stands
        in for RSA-4096 and P-256 for any curve. The RSA key only has to be large enough for the
        PSS encoding: hash length + salt length + 2 octets.
        """
        if self.algorithm == "ecdsa":
            return _throwaway_key("ecdsa", 0)
        digest_octets = self.hash_algorithm().digest_size
        needed = digest_octets + (self.salt_length or 0) + 2
        return _throwaway_key("rsa", 1024 if needed < 1024 // 8 else 2048)


@functools.cache
def _throwaway_key(kind: str, bits: int) -> CertificateIssuerPrivateKeyTypes:
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    # Never certified nor trusted: it only fills the signature field of drafts.
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class Signer(Protocol):
    """A CA key. Implementations: `KeyFileSigner` (an encrypted key file) and
    `pkcs11_signer.Pkcs11Signer` (a key on a PKCS#11 token).

    The contract every implementation keeps:
    - `sign` blocks (a private-key operation, or a call to a token): call it on a worker
      thread, never on the event loop. It is safe to call from several threads at once.
    - It signs `data` itself (it hashes; callers never pre-hash) under `scheme`, and returns
      the signature as X.509 carries it in a BIT STRING: RSA octets as they are, ECDSA as the
      DER Ecdsa-Sig-Value (SEQUENCE of r and s), whatever the backend produced.
    - A key that cannot sign for now (its token is away) raises `errors.Unavailable`, which
      callers pass on (503 + Retry-After), and says so in `available` until it signs again.
    - `public_key` never blocks; no repr shows a secret.
    """

    @property
    def public_key(self) -> CertificateIssuerPublicKeyTypes: ...

    @property
    def available(self) -> bool:
        """False while the key cannot sign (readiness reports it)."""
        ...

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        """Sign `data` (a TBS structure) under `scheme`. Blocks; never call on the event loop."""
        ...


class KeyFileSigner:
    """A CA key kept in a passphrase-encrypted PKCS#8 PEM file."""

    def __init__(self, key: CertificateIssuerPrivateKeyTypes) -> None:
        self._key = key

    @classmethod
    def load(cls, path: Path, passphrase: bytes | None) -> KeyFileSigner:
        """Load and prove the key with one signature: OpenSSL's full RSA key check (about 0.3 s
        for RSA-4096) is skipped, because every signature this key makes is verified before
        it leaves the signer's caller anyway (`signed_with`), which catches a faulty key."""
        try:
            key = serialization.load_pem_private_key(
                path.read_bytes(), password=passphrase, unsafe_skip_rsa_key_validation=True
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot read CA key {path}: {exc.strerror}") from exc
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot load CA key {path}: wrong passphrase or not a PEM private key"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"CA key {path} must be RSA or ECDSA")
        scheme = SignatureScheme(
            algorithm="ecdsa" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsassa-pss",
            hash="sha256",
            salt_length=None if isinstance(key, ec.EllipticCurvePrivateKey) else 32,
        )
        probe = b"est-ca key self-test"
        if not scheme.verify(key.public_key(), scheme.sign(key, probe), probe):
            raise ConfigurationError(f"the key in {path} is damaged: its signatures do not verify")
        return cls(key)

    @property
    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self._key.public_key()

    @property
    def available(self) -> bool:
        return True  # in memory: it cannot go away

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        return scheme.sign(self._key, data)

    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        """For cryptography's builders, which sign themselves (OCSP answers)."""
        return self._key

    def __repr__(self) -> str:  # never print key material
        return f"KeyFileSigner({type(self._key).__name__})"


def _signature_over(tbs: bytes, signer: Signer, scheme: SignatureScheme) -> bytes:
    """The signer's signature over `tbs`, verified before anyone sees it: a faulty signer (or
    token) can never produce a certificate, CRL or OCSP response that does not verify."""
    signature = signer.sign(tbs, scheme)
    if not scheme.verify(signer.public_key, signature, tbs):
        raise ValueError("the signer produced a signature that does not verify")
    return signature


def signed_with(
    draft: x509.Certificate, signer: Signer, scheme: SignatureScheme
) -> x509.Certificate:
    """The draft certificate's TBS signed by `signer`: the certificate we actually issue."""
    tbs = draft.tbs_certificate_bytes
    signature = _signature_over(tbs, signer, scheme)
    parsed = asn1_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
    assembled = asn1_x509.Certificate(
        {
            "tbs_certificate": parsed["tbs_certificate"],
            "signature_algorithm": parsed["signature_algorithm"],
            "signature_value": signature,
        }
    )
    certificate = x509.load_der_x509_certificate(assembled.dump())
    if certificate.tbs_certificate_bytes != tbs:
        raise ValueError("assembling the certificate changed its TBS bytes")
    return certificate


def draft_certificate(
    builder: x509.CertificateBuilder, scheme: SignatureScheme
) -> x509.Certificate:
    """The builder's certificate signed with a throwaway key: complete, parseable, not issued."""
    return builder.sign(
        scheme.throwaway_key(),
        scheme.hash_algorithm(),
        rsa_padding=scheme.rsa_padding(),
    )


def draft_crl(builder: x509.CertificateRevocationListBuilder, scheme: SignatureScheme) -> bytes:
    """The builder's CRL signed with a throwaway key: DER, complete, not yet ours."""
    return builder.sign(
        scheme.throwaway_key(), scheme.hash_algorithm(), rsa_padding=scheme.rsa_padding()
    ).public_bytes(serialization.Encoding.DER)


def signed_crl(draft: bytes, signer: Signer, scheme: SignatureScheme) -> bytes:
    """The draft CRL's TBS signed by `signer`: DER.

    Only asn1crypto touches the (possibly megabytes large) draft here: it slices the TBS out
    and puts it back unchanged, in Python, so a large CRL never holds the GIL for long.
    """
    parsed = asn1_crl.CertificateList.load(draft)
    tbs_cert_list = parsed["tbs_cert_list"]
    tbs = bytes(tbs_cert_list.dump())
    signature = _signature_over(tbs, signer, scheme)
    return bytes(
        asn1_crl.CertificateList(
            {
                "tbs_cert_list": tbs_cert_list,
                "signature_algorithm": parsed["signature_algorithm"],
                "signature": signature,
            }
        ).dump()
    )


@functools.cache
def _throwaway_responder(kind: str) -> x509.Certificate:
    """A certificate for the throwaway key, so cryptography's OCSP builder accepts it."""
    key = _throwaway_key(kind, 1024 if kind == "rsa" else 0)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "draft responder")])
    moment = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(moment)
        .not_valid_after(moment)
        .sign(key, hashes.SHA256())
    )


def signed_ocsp_response(
    single_responses: Sequence[ocsp.OCSPResponseBuilder],
    responder: x509.Certificate,
    signer: Signer,
    scheme: SignatureScheme,
    extensions: Sequence[x509.ExtensionType] = (),
) -> bytes:
    """A successful OCSP response, signed by `signer` for the responder certificate: DER.

    Each builder holds one SingleResponse (cryptography's builder takes no more, RFC 6960
    allows a list): each is drafted alone and asn1crypto lists them, in order, in one
    ResponseData with `extensions` (the nonce) as its responseExtensions.
    cryptography's builder also insists on signing with the responder certificate's own key, so
    the drafts name a throwaway responder; its responderID (by key hash) and certificate are then
    replaced with the real responder's before the real signature is made over the result.
    OCSPResponseBuilder cannot state RSASSA-PSS parameters: OCSP schemes are ECDSA or PKCS#1.
    """
    if scheme.algorithm == "rsassa-pss":
        raise ValueError("OCSP responses are signed with ECDSA or RSA PKCS#1 v1.5")
    if not single_responses:
        raise ValueError("an OCSP response answers at least one CertID")
    kind = "ecdsa" if scheme.algorithm == "ecdsa" else "rsa"
    stand_in = _throwaway_responder(kind)
    first, *others = single_responses
    for extension in extensions:
        first = first.add_extension(extension, critical=False)
    drafts = [_draft_ocsp_response(b, stand_in, scheme) for b in (first, *others)]
    basic = drafts[0]["response_bytes"]["response"].parsed
    tbs_response = basic["tbs_response_data"]
    if others:
        tbs_response["responses"] = asn1_ocsp.Responses(
            [
                draft["response_bytes"]["response"].parsed["tbs_response_data"]["responses"][0]
                for draft in drafts
            ]
        )
    key_bits = subject_public_key_bits(public_key_der(responder.public_key()))
    tbs_response["responder_id"] = asn1_ocsp.ResponderId(
        name="by_key",
        value=hashlib.sha1(key_bits).digest(),  # noqa: S324 - RFC 6960 KeyHash
    )
    tbs = bytes(tbs_response.dump(force=True))
    signature = _signature_over(tbs, signer, scheme)
    assembled = bytes(
        asn1_ocsp.OCSPResponse(
            {
                "response_status": "successful",
                "response_bytes": {
                    "response_type": "basic_ocsp_response",
                    "response": asn1_ocsp.BasicOCSPResponse(
                        {
                            "tbs_response_data": asn1_ocsp.ResponseData.load(tbs),
                            "signature_algorithm": basic["signature_algorithm"],
                            "signature": signature,
                            "certs": [
                                asn1_x509.Certificate.load(
                                    responder.public_bytes(serialization.Encoding.DER)
                                )
                            ],
                        }
                    ),
                },
            }
        ).dump()
    )
    if ocsp.load_der_ocsp_response(assembled).tbs_response_bytes != tbs:
        raise ValueError("assembling the OCSP response changed its TBS bytes")
    return assembled


@dataclasses.dataclass(frozen=True)
class SingleOcspAnswer:
    """One SingleResponse: the CertID as asked (hash name as asn1crypto spells it: sha1,
    sha256, ...), its status, and for "revoked" when and (None: unspecified) why."""

    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    status: Literal["good", "revoked", "unknown"]
    this_update: dt.datetime
    next_update: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


# The CertID hashes a request may use (asn1crypto's names), for cryptography's builder.
_CERT_ID_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - RFC 5019 CertID
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_CERT_STATUSES = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


def _single_builder(single: SingleOcspAnswer) -> ocsp.OCSPResponseBuilder:
    return ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=single.issuer_name_hash,
        issuer_key_hash=single.issuer_key_hash,
        serial_number=single.serial_number,
        algorithm=_CERT_ID_HASHES[single.hash_name],
        cert_status=_CERT_STATUSES[single.status],
        this_update=single.this_update,
        next_update=single.next_update,
        revocation_time=single.revoked_at if single.status == "revoked" else None,
        revocation_reason=single.reason if single.status == "revoked" else None,
    )


def ocsp_response(
    singles: Sequence[SingleOcspAnswer],
    responder: x509.Certificate,
    signer: Signer,
    scheme: SignatureScheme,
    nonce: bytes | None,
) -> bytes:
    """A successful OCSP response answering `singles` in order, with the nonce (RFC 8954) if
    any, signed by `signer` for the responder certificate: DER.

    The common case, one CertID and a responder key in memory, is cryptography's builder
    signing with the real key: one signature, no draft, no re-encoding in Python (a nonce
    answer in ~0.1 ms where the draft path took ~1.4). A key on a token, or several CertIDs
    (the builder takes one), go the draft path, `signed_ocsp_response`. Either way the
    signature is verified before the response leaves.
    """
    if scheme.algorithm == "rsassa-pss":
        raise ValueError("OCSP responses are signed with ECDSA or RSA PKCS#1 v1.5")
    if not singles:
        raise ValueError("an OCSP response answers at least one CertID")
    extensions = [x509.OCSPNonce(nonce)] if nonce is not None else []
    key = signer.private_key if isinstance(signer, KeyFileSigner) else None
    if key is None or len(singles) > 1:
        builders = [_single_builder(single) for single in singles]
        return signed_ocsp_response(builders, responder, signer, scheme, extensions)
    builder = (
        _single_builder(singles[0])
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
        .certificates([responder])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    response = builder.sign(key, scheme.hash_algorithm())
    if not scheme.verify(signer.public_key, response.signature, response.tbs_response_bytes):
        raise ValueError("the signer produced a signature that does not verify")
    return response.public_bytes(serialization.Encoding.DER)


def _draft_ocsp_response(
    builder: ocsp.OCSPResponseBuilder, stand_in: x509.Certificate, scheme: SignatureScheme
) -> asn1_ocsp.OCSPResponse:
    """The builder's response signed with a throwaway key and its stand-in certificate."""
    draft = (
        builder.responder_id(ocsp.OCSPResponderEncoding.HASH, stand_in)
        .certificates([stand_in])
        .sign(scheme.throwaway_key(), scheme.hash_algorithm())
    )
    return asn1_ocsp.OCSPResponse.load(draft.public_bytes(serialization.Encoding.DER))
