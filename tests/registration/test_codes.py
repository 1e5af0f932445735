"""One-time codes: random, stored only as salted scrypt hashes, forgiving to human typing."""

from __future__ import annotations

import re

from est_ca.registration import codes
from est_ca.registration.codes import CodeHasher

HASHER = CodeHasher(n=2**14, r=8, p=1)


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


def test_the_hash_holds_neither_the_code_nor_its_groups() -> None:
    code = codes.new_one_time_code()
    stored = HASHER.hash(code)
    assert stored.startswith("scrypt$16384$8$1$")
    for group in code.split("-"):
        assert group not in stored


def test_hashing_the_same_code_twice_gives_different_salts() -> None:
    code = codes.new_one_time_code()
    assert HASHER.hash(code) != HASHER.hash(code)


def test_a_code_typed_in_lower_case_without_dashes_still_verifies() -> None:
    code = codes.new_one_time_code()
    assert HASHER.verify(code.replace("-", "").lower(), HASHER.hash(code))


def test_letters_read_as_digits_are_accepted() -> None:
    stored = HASHER.hash("10000-00000-00000-00000")
    assert HASHER.verify("IO000-OOOOO-00000-0000O", stored)
    assert HASHER.verify("L0000 00000 00000 00000", stored)


def test_a_hash_made_with_other_costs_still_verifies() -> None:
    code = codes.new_one_time_code()
    stored = CodeHasher(n=2**10, r=8, p=1).hash(code)
    assert HASHER.verify(code, stored)


def test_a_corrupt_stored_hash_never_verifies() -> None:
    assert not HASHER.verify("anything", "scrypt$16384$8$1$not-base64$x")
    assert not HASHER.verify("anything", "bcrypt$whatever")
