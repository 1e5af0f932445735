"""A CSR is refused with a reason unless it is well-formed, signed by its key, of an allowed key."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.csr_policy import check_channel_binding, check_csr, check_rsa_exponent, parse_csr
from est_ca.ca.profiles import KeyPolicy, ProfileCatalogue
from est_ca.config import shipped_config_dir
from est_ca.errors import BadRequest
from tests.helpers import KeyPool, csr_der, make_csr, require_tool

PROFILES = ProfileCatalogue.load([shipped_config_dir() / "profiles"])
USER = PROFILES.profiles["user"]
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
EXPONENT_RULE = "exponent must be odd, from 65537 to 2^31-1"
# Each hostile vector and the words its refusal must contain (see tests/vectors/README.md).
REFUSALS = {
    "rsa-2048": "RSA 2048 keys are not allowed",
    "ec-p256": "ECDSA P-256 keys are not allowed",
    "exponent-3": EXPONENT_RULE,
    "exponent-64-bit": EXPONENT_RULE,
    "exponent-3071-bit": EXPONENT_RULE,
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


@pytest.mark.parametrize("e", [65537, 65539, 2**31 - 1], ids=["65537", "65539", "2^31-1"])
def test_an_odd_exponent_from_65537_to_2_31_minus_1_is_accepted(e: int) -> None:
    check_rsa_exponent(e)


@pytest.mark.parametrize(
    "e",
    [3, 65535, 65538, 2**31 + 1, 2**63 + 1, 2**256 - 1, 2**256 + 1, 2**3071 + 1],
    ids=["3", "65535", "even", "2^31+1", "2^63+1", "2^256-1", "2^256+1", "3072-bit"],
)
def test_an_exponent_below_65537_above_2_31_minus_1_or_even_is_refused(e: int) -> None:
    """Go's crypto/rsa uses no key with an exponent above 2^31-1 and its crypto/x509 cannot
    even read one of 2^63 or more: the certificate would be useless to Go relying parties."""
    with pytest.raises(BadRequest, match=r"must be odd, from 65537 to 2\^31-1"):
        check_rsa_exponent(e)


# -- channel binding (RFC 7030 3.5) -------------------------------------------------------------

SESSION = bytes(range(12))  # a TLS 1.2 tls-unique is the 12-octet Finished verify_data


def _openssl_csr(tmp_path: Path, keys: KeyPool, password: str) -> x509.CertificateSigningRequest:
    """A CSR made by `openssl req` with challengePassword, as an openssl-based client makes it."""
    config = tmp_path / "req.cnf"
    config.write_text(
        "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n"
        f"[dn]\nCN = openssl client\n[attrs]\nchallengePassword = {password}\n"
    )
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            keys.ec().pem_path,
            "-config",
            config,
            "-outform",
            "DER",
        ],
        capture_output=True,
        check=True,
    )
    return parse_csr(made.stdout)


def test_an_openssl_made_challenge_password_carrying_the_binding_is_accepted(
    tmp_path: Path, keys: KeyPool
) -> None:
    require_tool("openssl")
    csr = _openssl_csr(tmp_path, keys, base64.b64encode(SESSION).decode())
    check_channel_binding(csr, SESSION)


def test_a_challenge_password_of_another_session_is_refused(tmp_path: Path, keys: KeyPool) -> None:
    require_tool("openssl")
    csr = _openssl_csr(tmp_path, keys, base64.b64encode(bytes(12)).decode())
    with pytest.raises(BadRequest, match="not this TLS session's tls-unique"):
        check_channel_binding(csr, SESSION)


def test_without_a_session_binding_the_request_is_refused_asking_for_tls_1_2(
    keys: KeyPool,
) -> None:
    with pytest.raises(BadRequest, match=r"only check on TLS 1\.2"):
        check_channel_binding(make_csr(keys.ec().key), None)
