"""Regenerate the hostile CSR vectors in this folder: `python tests/vectors/generate.py [NAME...]`.

The files are committed because some take long to make (3072-bit moduli with a small factor or
with close primes need a prime search). Each file is one way a CSR can be wrong; README.md
lists what each one is and what the CA must answer.
"""

from __future__ import annotations

import functools
import math
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
SMALL_PRIMES = [p for p in range(3, 20000, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))]
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile vector")])


def probable_prime(n: int) -> bool:
    if any(n % p == 0 for p in SMALL_PRIMES):
        return n in SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(40):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def prime_in(low: int, high: int) -> int:
    while True:
        candidate = (secrets.randbelow(high - low) + low) | 1
        if probable_prime(candidate):
            return candidate


def next_prime(n: int) -> int:
    candidate = n | 1
    while not probable_prime(candidate):
        candidate += 2
    return candidate


def private_key(p: int, q: int, e: int = 65537) -> rsa.RSAPrivateKey:
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    d = pow(e, -1, lam)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def csr(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **extensions: x509.ExtensionType
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(SUBJECT)
    for value in extensions.values():
        builder = builder.add_extension(value, critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def openssl_csr(key: rsa.RSAPrivateKey, digest: str) -> bytes:
    with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        handle.flush()
        return subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                "-key",
                handle.name,
                "-subj",
                "/CN=hostile vector",
                f"-{digest}",
                "-outform",
                "DER",
            ],
            check=True,
            capture_output=True,
        ).stdout


def resigned(
    key: rsa.RSAPrivateKey, good: x509.CertificateSigningRequest, **changes: object
) -> bytes:
    """`good` with fields of its request info replaced, validly signed again by `key`."""
    request = asn1_csr.CertificationRequest.load(good.public_bytes(serialization.Encoding.DER))
    info = request["certification_request_info"]
    fields = {name: info[name] for name in ("version", "subject", "subject_pk_info", "attributes")}
    altered = asn1_csr.CertificationRequestInfo({**fields, **changes})
    assembled = asn1_csr.CertificationRequest(
        {
            "certification_request_info": altered,
            "signature_algorithm": request["signature_algorithm"],
            "signature": key.sign(altered.dump(), padding.PKCS1v15(), hashes.SHA256()),
        }
    )
    return bytes(assembled.dump())


def duplicated_extension(key: rsa.RSAPrivateKey) -> bytes:
    """A CSR requesting the same extension twice (builders refuse to make it)."""
    san = x509.SubjectAlternativeName([x509.RFC822Name("a@example.dk")])
    good = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(SUBJECT)
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    info = asn1_csr.CertificationRequest.load(good.public_bytes(serialization.Encoding.DER))[
        "certification_request_info"
    ]
    attribute = info["attributes"][0]
    extension = attribute["values"][0][0]
    doubled = [{"type": attribute["type"], "values": [[extension, extension]]}]
    return resigned(key, good, attributes=doubled)


def unknown_version(key: rsa.RSAPrivateKey) -> bytes:
    """A CSR claiming version 2 (INTEGER 1): PKCS#10 knows only v1 (0)."""
    good = x509.CertificateSigningRequestBuilder().subject_name(SUBJECT).sign(key, hashes.SHA256())
    return resigned(key, good, version=1)


def odd_exponent_key(bits: int) -> rsa.RSAPrivateKey:
    """A sound RSA-3072 key whose public exponent is a random odd number of exactly `bits` bits
    (cryptography generates keys with 3 or 65537 only: its primes are reused, the exponent set)."""
    while True:
        numbers = rsa.generate_private_key(65537, 3072).private_numbers()
        e = secrets.randbits(bits) | 1 << (bits - 1) | 1
        if math.gcd(e, (numbers.p - 1) * (numbers.q - 1)) == 1:
            return private_key(numbers.p, numbers.q, e)


@functools.cache
def good_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


@functools.cache
def good() -> bytes:
    return csr(good_key())


def small_factor() -> bytes:
    q = prime_in((1 << 3071) // 3 + 1, (1 << 3072) // 3)
    return csr(private_key(3, q))


def fermat_close_primes() -> bytes:
    p = prime_in(1 << 1535 | 1 << 1534, 1 << 1536)
    return csr(private_key(p, next_prime(p + (1 << 64))))


VECTORS: dict[str, Callable[[], bytes]] = {
    "valid-rsa-3072": good,
    "rsa-2048": lambda: csr(rsa.generate_private_key(65537, 2048)),
    "ec-p256": lambda: csr(ec.generate_private_key(ec.SECP256R1())),
    "exponent-3": lambda: csr(rsa.generate_private_key(3, 3072)),
    # Sound keys but for exponents Go's crypto/x509 cannot read (>= 2^63) or use (> 2^31-1).
    "exponent-64-bit": lambda: csr(odd_exponent_key(64)),
    "exponent-3071-bit": lambda: csr(odd_exponent_key(3071)),
    "sha1-signature": lambda: openssl_csr(good_key(), "sha1"),
    "md5-signature": lambda: openssl_csr(good_key(), "md5"),
    "bad-signature": lambda: good()[:-8] + bytes(b ^ 0x5A for b in good()[-8:]),
    "truncated": lambda: good()[:-20],
    "trailing-garbage": lambda: good() + b"\x00\x00",
    "unknown-critical-extension": lambda: csr(
        good_key(),
        unknown=x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
        ),
    ),
    "duplicate-extension": lambda: duplicated_extension(good_key()),
    "unknown-version": lambda: unknown_version(good_key()),
    "small-factor": small_factor,
    "fermat-close-primes": fermat_close_primes,
}


def main(names: Sequence[str]) -> None:
    """Every vector, or only the ones named (`generate.py exponent-64-bit`): a vector added
    later is made without changing the committed bytes of the others."""
    for name in names or VECTORS:
        der = VECTORS[name]()
        (HERE / f"csr-{name}.der").write_bytes(der)
        print(f"csr-{name}.der", len(der))


if __name__ == "__main__":
    main(sys.argv[1:])
