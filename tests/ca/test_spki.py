"""The subjectPublicKey bits: what key identifiers (RFC 5280) and OCSP key hashes hash."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.spki import public_key_der, subject_public_key_bits
from tests.helpers import KeyPool


def test_an_rsa_keys_bits_are_its_pkcs1_encoding(keys: KeyPool) -> None:
    public_key = keys.rsa(0).key.public_key()
    pkcs1 = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert subject_public_key_bits(public_key_der(public_key)) == pkcs1


def test_an_ec_keys_bits_are_its_uncompressed_point() -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert subject_public_key_bits(public_key_der(public_key)) == point


def test_their_sha1_is_the_method_one_key_identifier() -> None:
    public_key = ec.generate_private_key(ec.SECP384R1()).public_key()
    expected = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    bits = subject_public_key_bits(public_key_der(public_key))
    assert hashlib.sha1(bits).digest() == expected  # noqa: S324 - what method 1 is defined on
