"""What a CSR must be before we sign its key: each refusal is a BadRequest saying what to fix.

Only the CSR's public key and proof of possession matter to us: the subject and extensions of
the certificate come from the identity record and the profile, never from the CSR.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import math

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AttributeOID

from est_ca.ca.profiles import Profile
from est_ca.ca.spki import public_key_der
from est_ca.errors import BadRequest, NotEntitled

_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_ALLOWED_CSR_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
# The attribute the service puts in the CSR it builds for a key it generated (EST serverkeygen,
# ca/keygen.py): a UUID-based OID (ITU-T X.667, arc 2.25) so it needs no registered arc. It only
# ever restricts: a CSR carrying it is refused under a profile that does not allow server key
# generation, so a client that adds it to its own CSR gains nothing.
SERVER_GENERATED_KEY = x509.ObjectIdentifier("2.25.325934133917408236551449062720819570031")
MIN_RSA_EXPONENT = 65537
MAX_RSA_EXPONENT = 2**31 - 1


# A modulus sharing a factor with this product has a prime factor below 20,000 (Boulder's
# good-key check looks at the primes below 752; more costs one gcd, a few microseconds).
def _primes_below(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i, is_prime in enumerate(sieve) if is_prime]


_SMALL_PRIMES_PRODUCT = math.prod(_primes_below(20000))
# Fermat's method finds p and q within these many steps when they share their upper half:
# the mark of a broken key generator (CVE-2022-26320, the "ROCA"-adjacent Fermat keys).
FERMAT_ROUNDS = 100


@dataclasses.dataclass(frozen=True)
class SubscriberKey:
    """The public key to certify, with the fingerprint the store indexes it by."""

    public_key: CertificatePublicKeyTypes
    spki_der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.spki_der).hexdigest()

    @property
    def description(self) -> str:
        key = self.public_key
        if isinstance(key, rsa.RSAPublicKey):
            return f"RSA {key.key_size}"
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"ECDSA {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
        return type(key).__name__


@dataclasses.dataclass(frozen=True)
class CheckedCsr:
    """A CSR that passed every check: its signature verifies and its key suits the profile."""

    csr: x509.CertificateSigningRequest
    key: SubscriberKey


def parse_csr(der: bytes) -> x509.CertificateSigningRequest:
    """A DER PKCS#10 request; anything else (truncated, trailing bytes, not a CSR) is refused."""
    try:
        return x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise BadRequest(
            "the body is not a DER PKCS#10 certificate request (send base64 of the DER CSR)"
        ) from exc


def subscriber_key(csr: x509.CertificateSigningRequest) -> SubscriberKey:
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadRequest("the CSR's public key is of an unsupported type") from exc
    return SubscriberKey(public_key=key, spki_der=public_key_der(key))


def check_proof_of_possession(csr: x509.CertificateSigningRequest) -> None:
    """The CSR must be signed, with a modern hash, by the key it asks us to certify."""
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise BadRequest("the CSR is signed with an unsupported algorithm") from exc
    if not isinstance(algorithm, _ALLOWED_CSR_HASHES):
        name = algorithm.name.upper() if algorithm is not None else "no hash"
        raise BadRequest(f"the CSR is signed with {name}; sign it with SHA-256 or stronger")
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadRequest("the CSR's signature cannot be checked") from exc
    if not valid:
        raise BadRequest(
            "the CSR's signature does not verify: it must be signed with the private key of "
            "the public key it contains (proof of possession)"
        )


def check_rsa_exponent(e: int) -> None:
    """Small exponents invite low-exponent attacks on careless padding; large ones make
    certificates that relying parties cannot use (Go's crypto/rsa refuses exponents above
    2^31-1, its crypto/x509 cannot read one of 2^63 or more). The range is within the CA/Browser
    Forum's (odd, 2^16+1 to 2^256-1): every ordinary key generator uses 65537."""
    if not MIN_RSA_EXPONENT <= e <= MAX_RSA_EXPONENT or e % 2 == 0:
        shown = str(e) if e.bit_length() <= 64 else f"a {e.bit_length()}-bit number"
        raise BadRequest(
            "the RSA public exponent must be odd, from 65537 to 2^31-1 (65537 is usual), "
            f"not {shown}"
        )


def check_rsa_key_is_sound(key: rsa.RSAPublicKey) -> None:
    """Refuse RSA keys that are weak by construction, whatever their size."""
    numbers = key.public_numbers()
    n, e = numbers.n, numbers.e
    check_rsa_exponent(e)
    if math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise BadRequest("the RSA modulus has a small prime factor; generate a new key")
    a = math.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(FERMAT_ROUNDS):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            raise BadRequest(
                "the RSA modulus's primes are too close together (factorable by Fermat's "
                "method); generate a new key with a sound key generator"
            )
        a += 1


def check_key_allowed(key: SubscriberKey, profile: Profile) -> None:
    public_key = key.public_key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in profile.keys.rsa_sizes:
        check_rsa_key_is_sound(public_key)
        return
    if (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and _CURVE_NAMES.get(public_key.curve.name) in profile.keys.ec_curves
    ):
        return
    allowed = [f"RSA {size}" for size in profile.keys.rsa_sizes] + [
        f"ECDSA {curve}" for curve in profile.keys.ec_curves
    ]
    raise BadRequest(
        f"{key.description} keys are not allowed for {profile.name} certificates; "
        f"allowed: {', '.join(allowed)}"
    )


def check_requested_extensions(csr: x509.CertificateSigningRequest) -> None:
    """Duplicate or malformed requested extensions make a CSR ambiguous; a critical one we do
    not know asks for something we will not do. Refuse both rather than silently ignore them."""
    try:
        extensions = csr.extensions
        csr.attributes  # noqa: B018 - parsing is the check
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise BadRequest(
            f"the CSR's requested extensions or attributes are malformed: {exc}"
        ) from exc
    for extension in extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            raise BadRequest(
                f"the CSR requests an unknown critical extension {extension.oid.dotted_string}"
            )


def check_key_origin(csr: x509.CertificateSigningRequest, profile: Profile) -> None:
    """A key the service generated (serverkeygen) is certified only under a profile that
    allows it: the order's profile is known only once the order is authenticated, so this is
    where the registration authority's ordinary path refuses it, before the order is claimed."""
    if profile.server_key_generation:
        return
    try:
        csr.attributes.get_attribute_for_oid(SERVER_GENERATED_KEY)
    except x509.AttributeNotFound:
        return
    raise NotEntitled(
        f"{profile.name} certificates are not issued for keys the CA generates (serverkeygen); "
        "generate the key yourself and use simpleenroll (the order is still usable)"
    )


def check_channel_binding(csr: x509.CertificateSigningRequest, tls_unique: bytes | None) -> None:
    """RFC 7030 3.5: the CSR's challengePassword must be base64 of the TLS session's tls-unique
    (RFC 5929), as libest's client puts it, so a CSR made for another session is refused.
    `tls_unique` is None when the session has no tls-unique: it is defined for TLS 1.2 only,
    and the RFC 9266 exporter that replaces it under TLS 1.3 is out of reach of Python's ssl
    module (docs/est.md). The CSR's own signature is checked later, with the other checks."""
    if tls_unique is None:
        raise BadRequest(
            "this EST label requires channel binding (RFC 7030 3.5), which this server can "
            "only check on TLS 1.2: connect with TLS 1.2 and put base64 of the session's "
            "tls-unique in the CSR's challengePassword"
        )
    try:
        attribute = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    except x509.AttributeNotFound:
        raise BadRequest(
            "this EST label requires channel binding (RFC 7030 3.5): put base64 of this TLS "
            "session's tls-unique in the CSR's challengePassword"
        ) from None
    except ValueError as exc:
        raise BadRequest("the CSR's attributes are malformed") from exc
    expected = base64.b64encode(tls_unique)
    if not hmac.compare_digest(attribute.value.strip(), expected):
        raise BadRequest(
            "the CSR's challengePassword is not this TLS session's tls-unique (channel "
            "binding, RFC 7030 3.5): make the CSR on the connection that sends it"
        )


def check_csr(csr: x509.CertificateSigningRequest, profile: Profile) -> CheckedCsr:
    """All checks that need nothing but the CSR and the profile. Blocking (signature check)."""
    check_proof_of_possession(csr)
    check_requested_extensions(csr)
    check_key_origin(csr, profile)
    key = subscriber_key(csr)
    check_key_allowed(key, profile)
    return CheckedCsr(csr=csr, key=key)
