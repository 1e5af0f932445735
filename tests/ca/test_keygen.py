"""Keys the service generates (serverkeygen): which key, the CSR built for it, and the policy
that refuses it under a profile that does not allow it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from asn1crypto import algos, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from est_ca.ca.csr_policy import SERVER_GENERATED_KEY, check_csr
from est_ca.ca.keygen import KEY_ENCRYPTION_REQUESTS, key_for_label, request_with_generated_key
from est_ca.ca.profiles import KeyPolicy, KeySpec, Profile, ProfileCatalogue
from est_ca.config import shipped_config_dir
from est_ca.errors import BadRequest, ConfigurationError, NotEntitled

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHIPPED = ProfileCatalogue.load([shipped_config_dir() / "profiles"])


def generating(
    name: str, rsa: tuple[int, ...] = (), ec_: tuple[str, ...] = (), *, allowed: bool = True
) -> Profile:
    return dataclasses.replace(
        SHIPPED.profiles["system"],
        name=name,
        keys=KeyPolicy(rsa_sizes=rsa, ec_curves=ec_),
        server_key_generation=allowed,
    )


def client_csr(*, san: bool = True) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-17")])
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("device-17.example.dk")]), critical=False
        )
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


def test_only_the_shipped_system_profile_allows_server_key_generation() -> None:
    allowed = {p.name for p in SHIPPED.profiles.values() if p.server_key_generation}
    assert allowed == {"system"}
    assert key_for_label(SHIPPED.profiles.values(), "issuing") == KeySpec("rsa", 3072)


def test_a_label_without_a_generating_profile_generates_nothing() -> None:
    assert key_for_label([generating("a", rsa=(3072,), allowed=False)], "x") is None


def test_a_curve_goes_before_an_rsa_size_and_the_profiles_order_decides() -> None:
    chosen = key_for_label([generating("a", rsa=(3072,), ec_=("P-384", "P-256"))], "x")
    assert chosen == KeySpec("ec", "P-384")


def test_the_key_is_one_every_generating_profile_accepts() -> None:
    profiles = [generating("a", ec_=("P-384", "P-256")), generating("b", ec_=("P-256",))]
    assert key_for_label(profiles, "x") == KeySpec("ec", "P-256")


def test_generating_profiles_with_no_common_key_stop_the_start() -> None:
    profiles = [generating("a", ec_=("P-384",)), generating("b", rsa=(3072,))]
    with pytest.raises(ConfigurationError, match="no key in common"):
        key_for_label(profiles, "x")


def test_the_built_csr_has_the_clients_names_and_the_new_key() -> None:
    asked = client_csr()
    made = request_with_generated_key(asked, KeySpec("ec", "P-256"))
    built = x509.load_der_x509_csr(made.csr_der)
    assert built.subject == asked.subject
    assert list(built.extensions) == list(asked.extensions)
    assert built.public_key() == made.private_key.public_key()
    assert built.public_key() != asked.public_key()
    assert built.is_signature_valid
    checked = check_csr(built, generating("a", ec_=("P-256",)))
    assert checked.key.description == "ECDSA P-256"


def test_a_client_csr_that_does_not_verify_is_refused_before_any_key_is_made() -> None:
    forged = x509.load_der_x509_csr((VECTORS / "csr-bad-signature.der").read_bytes())
    with pytest.raises(BadRequest, match="does not verify"):
        request_with_generated_key(forged, KeySpec("ec", "P-256"))


def test_a_generated_key_is_refused_under_a_profile_that_does_not_allow_it() -> None:
    built = x509.load_der_x509_csr(
        request_with_generated_key(client_csr(), KeySpec("ec", "P-256")).csr_der
    )
    with pytest.raises(NotEntitled, match="serverkeygen"):
        check_csr(built, generating("a", ec_=("P-256",), allowed=False))


def test_a_client_adding_the_marker_to_its_own_csr_only_restricts_itself() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    own = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_attribute(SERVER_GENERATED_KEY, b"serverkeygen")
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(NotEntitled):
        check_csr(own, generating("a", ec_=("P-256",), allowed=False))
    assert check_csr(own, generating("b", ec_=("P-256",))).key.public_key == key.public_key()


@pytest.mark.parametrize("oid", KEY_ENCRYPTION_REQUESTS, ids=["symmetric", "asymmetric"])
def test_a_client_asking_for_the_key_encrypted_is_refused_not_sent_it_in_the_clear(
    oid: x509.ObjectIdentifier,
) -> None:
    """RFC 7030 4.4.1.2: the server holds no key with that identifier, so it MUST end the
    request with an error (the key used to be returned unencrypted)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-17")]))
        .add_attribute(oid, b"key-17", _tag=_ASN1Type.OctetString)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(BadRequest, match="encrypted"):
        request_with_generated_key(csr, KeySpec("ec", "P-256"))


def _tlv(tag: int, contents: bytes) -> bytes:
    """One DER element (up to 255 octets), to build what no CSR builder would."""
    size = len(contents)
    length = bytes([size]) if size < 0x80 else bytes([0x81, size]) if size < 0x100 else b""
    assert length, "short test elements only"
    return bytes([tag]) + length + contents


def test_a_client_csr_whose_subject_cannot_be_read_is_refused_not_an_internal_error() -> None:
    """A verifying CSR with a commonName that is an INTEGER: the CSR loads (names are read
    lazily), and copying its subject failed with ValueError, a 500 on serverkeygen."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    common_name = _tlv(0x30, core.ObjectIdentifier("2.5.4.3").dump() + core.Integer(5).dump())
    subject = _tlv(0x30, _tlv(0x31, common_name))
    info = _tlv(0x30, core.Integer(0).dump() + subject + spki + b"\xa0\x00")
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()
    der = _tlv(0x30, info + algorithm + core.OctetBitString(signature).dump())
    csr = x509.load_der_x509_csr(der)
    with pytest.raises(BadRequest, match="subject"):
        request_with_generated_key(csr, KeySpec("ec", "P-256"))
