"""A CSR is refused with a reason unless it is well-formed, signed by its key, of an allowed key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.csr_policy import check_csr, parse_csr
from est_ca.ca.profiles import KeyPolicy, ProfileCatalogue
from est_ca.config import shipped_config_dir
from est_ca.errors import BadRequest
from tests.helpers import KeyPool, csr_der, make_csr

PROFILES = ProfileCatalogue.load([shipped_config_dir() / "profiles"])
USER = PROFILES.profiles["user"]
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
# Each hostile vector and the words its refusal must contain (see tests/vectors/README.md).
REFUSALS = {
    "rsa-2048": "RSA 2048 keys are not allowed",
    "ec-p256": "ECDSA P-256 keys are not allowed",
    "exponent-3": "exponent must be odd and at least 65537",
    "small-factor": "small prime factor",
    "fermat-close-primes": "Fermat",
    "sha1-signature": "SHA1",
    "md5-signature": "MD5",
    "bad-signature": "proof of possession",
    "truncated": "not a DER PKCS#10",
    "trailing-garbage": "not a DER PKCS#10",
    "unknown-critical-extension": "unknown critical extension 1.3.6.1.4.1.99999.1",
    "duplicate-extension": "malformed",
    "unknown-version": "not a DER PKCS#10",
}


def vector(name: str) -> bytes:
    return (VECTORS / f"csr-{name}.der").read_bytes()


def test_the_control_vector_passes() -> None:
    assert check_csr(parse_csr(vector("valid-rsa-3072")), USER).key.description == "RSA 3072"


@pytest.mark.parametrize(("name", "reason"), REFUSALS.items(), ids=list(REFUSALS))
def test_each_hostile_vector_is_refused_with_its_reason(name: str, reason: str) -> None:
    with pytest.raises(BadRequest) as refusal:
        check_csr(parse_csr(vector(name)), USER)
    assert reason in refusal.value.detail


def test_every_vector_on_disk_is_covered() -> None:
    on_disk = {p.name.removeprefix("csr-").removesuffix(".der") for p in VECTORS.glob("*.der")}
    assert on_disk == {*REFUSALS, "valid-rsa-3072"}


@pytest.mark.parametrize(
    "body",
    [b"", b"garbage", b"\x30\x82\xff\xff", b"\x30\x03\x02\x01\x00"],
    ids=["empty", "garbage", "announces-more-than-sent", "not-a-csr"],
)
def test_what_is_not_a_der_csr_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest, match="not a DER PKCS#10"):
        parse_csr(body)


def test_a_truncated_csr_is_refused(keys: KeyPool) -> None:
    with pytest.raises(BadRequest):
        parse_csr(csr_der(make_csr(keys.rsa().key))[:-10])


def test_a_csr_with_trailing_bytes_is_refused(keys: KeyPool) -> None:
    with pytest.raises(BadRequest):
        parse_csr(csr_der(make_csr(keys.rsa().key)) + b"\x00")


def test_a_valid_rsa_3072_csr_passes(keys: KeyPool) -> None:
    checked = check_csr(make_csr(keys.rsa().key), USER)
    assert checked.key.description == "RSA 3072"
    assert len(checked.key.sha256) == 64


def test_an_ecdsa_key_is_refused_where_the_profile_allows_only_rsa(keys: KeyPool) -> None:
    with pytest.raises(BadRequest, match=r"ECDSA P-256 keys are not allowed .* RSA 3072, RSA 4096"):
        check_csr(make_csr(keys.ec().key), USER)


def test_an_unknown_curve_is_refused_even_where_ecdsa_is_allowed(keys: KeyPool) -> None:
    ec_profile = dataclasses.replace(USER, keys=KeyPolicy(rsa_sizes=(), ec_curves=("P-256",)))
    check_csr(make_csr(keys.ec().key), ec_profile)
    with pytest.raises(BadRequest, match="secp256k1"):
        check_csr(make_csr(keys.ec(curve=ec.SECP256K1()).key), ec_profile)
