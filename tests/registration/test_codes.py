"""One-time codes: random, stored only as a keyed hash, forgiving to human typing; the scrypt
hashes of earlier versions still verify."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

import pytest

from est_ca.registration import codes
from est_ca.registration.codes import API_TOKEN, SecretHasher

HASHER = SecretHasher(codes.new_key())


def scrypt_hash(code: str, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """A hash as versions before the keyed hash stored it."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(codes.normalise(code).encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    encoded = (base64.b64encode(part).decode() for part in (salt, digest))
    return "$".join(("scrypt", str(n), str(r), str(p), *encoded))


def test_a_code_is_four_groups_of_five_crockford_characters() -> None:
    code = codes.new_one_time_code()
    assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{5}-){3}[0-9A-HJKMNP-TV-Z]{5}", code)


def test_codes_and_references_do_not_repeat() -> None:
    assert len({codes.new_one_time_code() for _ in range(1000)}) == 1000
    assert len({codes.new_reference() for _ in range(1000)}) == 1000


def test_the_right_code_verifies_against_its_hash() -> None:
    code = codes.new_one_time_code()
    assert HASHER.verify(code, HASHER.hash(code))


def test_a_wrong_code_does_not_verify() -> None:
    stored = HASHER.hash(codes.new_one_time_code())
    assert not HASHER.verify(codes.new_one_time_code(), stored)


def test_the_hash_is_an_hmac_holding_neither_the_code_nor_its_groups() -> None:
    code = codes.new_one_time_code()
    stored = HASHER.hash(code)
    assert re.fullmatch(r"hmac-sha256\$[0-9a-f]{64}", stored)
    for group in code.split("-"):
        assert group not in stored


def test_without_the_key_a_hash_cannot_be_checked() -> None:
    code = codes.new_one_time_code()
    assert not SecretHasher(codes.new_key()).verify(code, HASHER.hash(code))
    unkeyed = hashlib.sha256(codes.normalise(code).encode()).hexdigest()
    assert unkeyed not in HASHER.hash(code)


def test_a_code_hash_never_stands_for_a_token_hash() -> None:
    secret = "SAME-SECRET"
    assert HASHER.hash(secret, API_TOKEN) != HASHER.hash(secret)
    assert not HASHER.verify(secret, HASHER.hash(secret), API_TOKEN)


def test_a_code_typed_in_lower_case_without_dashes_still_verifies() -> None:
    code = codes.new_one_time_code()
    assert HASHER.verify(code.replace("-", "").lower(), HASHER.hash(code))


def test_letters_read_as_digits_are_accepted() -> None:
    stored = HASHER.hash("10000-00000-00000-00000")
    assert HASHER.verify("IO000-OOOOO-00000-0000O", stored)
    assert HASHER.verify("L0000 00000 00000 00000", stored)


def test_an_scrypt_hash_of_an_earlier_version_still_verifies_whatever_its_cost() -> None:
    code = codes.new_one_time_code()
    for n in (2**10, 2**14):
        stored = scrypt_hash(code, n=n)
        assert SecretHasher.is_slow(stored)
        assert HASHER.verify(code.lower(), stored)
        assert not HASHER.verify(codes.new_one_time_code(), stored)


def test_a_corrupt_stored_hash_never_verifies() -> None:
    assert not HASHER.verify("anything", "scrypt$16384$8$1$not-base64$x")
    assert not HASHER.verify("anything", "hmac-sha256$not-hex")
    assert not HASHER.verify("anything", "bcrypt$whatever")


def test_an_unknown_reference_is_checked_against_nothing_and_never_verifies() -> None:
    assert not HASHER.verify(codes.new_one_time_code(), None)


def test_a_key_shorter_than_256_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretHasher(b"short")
