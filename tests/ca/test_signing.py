"""Certificates are built with a throwaway key and signed, TBS unchanged, by the signer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from est_ca.ca.signing import (
    KeyFileSigner,
    SignatureScheme,
    SingleOcspAnswer,
    draft_certificate,
    ocsp_response,
    signed_ocsp_response,
    signed_with,
)
from est_ca.errors import ConfigurationError

PSS_SHA256 = SignatureScheme(algorithm="rsassa-pss", hash="sha256", salt_length=32)
PSS_SHA512 = SignatureScheme(algorithm="rsassa-pss", hash="sha512", salt_length=64)


@pytest.fixture(scope="module")
def ca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


def builder(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )


@pytest.mark.parametrize("scheme", [PSS_SHA256, PSS_SHA512])
def test_the_signed_certificate_keeps_the_drafts_tbs_and_verifies(
    ca_key: rsa.RSAPrivateKey, scheme: SignatureScheme
) -> None:
    draft = draft_certificate(builder(ca_key), scheme)
    certificate = signed_with(draft, KeyFileSigner(ca_key), scheme)
    assert certificate.tbs_certificate_bytes == draft.tbs_certificate_bytes
    assert certificate.signature != draft.signature
    ca_key.public_key().verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        padding.PSS(padding.MGF1(scheme.hash_algorithm()), scheme.salt_length or 0),
        scheme.hash_algorithm(),
    )


def test_the_pss_parameters_are_stated_in_the_certificate(ca_key: rsa.RSAPrivateKey) -> None:
    certificate = signed_with(
        draft_certificate(builder(ca_key), PSS_SHA256), KeyFileSigner(ca_key), PSS_SHA256
    )
    parameters = certificate.signature_algorithm_parameters
    assert isinstance(parameters, padding.PSS)
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"
    assert certificate.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"


class _BrokenSigner:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.public_key = key.public_key()
        self.available = True

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        return b"\x00" * 384


def test_a_signature_that_does_not_verify_never_becomes_a_certificate(
    ca_key: rsa.RSAPrivateKey,
) -> None:
    with pytest.raises(ValueError, match="does not verify"):
        signed_with(
            draft_certificate(builder(ca_key), PSS_SHA256), _BrokenSigner(ca_key), PSS_SHA256
        )


def test_a_key_file_signer_does_not_print_its_key(ca_key: rsa.RSAPrivateKey) -> None:
    assert repr(KeyFileSigner(ca_key)) == "KeyFileSigner(RSAPrivateKey)"


def test_a_damaged_key_file_is_refused_at_load(ca_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    numbers = ca_key.private_numbers()
    # Both d and a CRT exponent: OpenSSL falls back from a faulty CRT result to d.
    broken = rsa.RSAPrivateNumbers(
        numbers.p,
        numbers.q,
        numbers.d + 2,
        numbers.dmp1 + 2,
        numbers.dmq1,
        numbers.iqmp,
        numbers.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    path = tmp_path / "broken.key"
    path.write_bytes(
        broken.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigurationError, match="damaged"):
        KeyFileSigner.load(path, None)


ECDSA_SHA256 = SignatureScheme(algorithm="ecdsa", hash="sha256")


def _responder(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return builder(key).sign(key, hashes.SHA256())


def _single_response(serial: int, status: ocsp.OCSPCertStatus) -> ocsp.OCSPResponseBuilder:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=b"\x01" * 32,
        issuer_key_hash=b"\x02" * 32,
        serial_number=serial,
        algorithm=hashes.SHA256(),
        cert_status=status,
        this_update=now,
        next_update=now + dt.timedelta(hours=8),
        revocation_time=now if status is ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=None,
    )


def test_an_ocsp_response_lists_every_single_response_in_order_under_one_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    responder = _responder(key)
    statuses = [ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED, ocsp.OCSPCertStatus.UNKNOWN]
    der = signed_ocsp_response(
        [_single_response(serial, status) for serial, status in enumerate(statuses, 1)],
        responder,
        KeyFileSigner(key),
        ECDSA_SHA256,
        [x509.OCSPNonce(b"n" * 16)],
    )
    response = ocsp.load_der_ocsp_response(der)
    assert [(s.serial_number, s.certificate_status) for s in response.responses] == list(
        enumerate(statuses, 1)
    )
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16
    assert response.certificates == [responder]
    key.public_key().verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
    )


def test_an_ocsp_response_without_a_single_response_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="at least one"):
        signed_ocsp_response([], _responder(key), KeyFileSigner(key), ECDSA_SHA256)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ocsp.OCSPCertStatus.GOOD, None),
        (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.key_compromise),
        (ocsp.OCSPCertStatus.REVOKED, None),
        (ocsp.OCSPCertStatus.UNKNOWN, None),
    ],
)
def test_an_ocsp_answer_signed_in_memory_says_what_the_token_path_says(
    status: ocsp.OCSPCertStatus, reason: x509.ReasonFlags | None
) -> None:
    """`ocsp_response` signs with cryptography's builder when the responder key is in memory,
    and drafts under a throwaway key then signs when it is not (a token): both must say the
    same, down to the nonce's and the reason's encoding, and both verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    responder = _responder(key)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    single = SingleOcspAnswer(
        hash_name="sha1",
        issuer_name_hash=b"\x01" * 20,
        issuer_key_hash=b"\x02" * 20,
        serial_number=77,
        status=status.name.lower(),  # type: ignore[arg-type]
        this_update=now,
        next_update=now + dt.timedelta(hours=8),
        revoked_at=now if status is ocsp.OCSPCertStatus.REVOKED else None,
        reason=reason,
    )
    in_memory = ocsp_response([single], responder, KeyFileSigner(key), ECDSA_SHA256, b"n" * 16)
    on_token = ocsp_response([single], responder, _KeyElsewhere(key), ECDSA_SHA256, b"n" * 16)
    old, new = (
        asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        for der in (on_token, in_memory)
    )
    for field in ("version", "responder_id", "responses", "response_extensions"):
        assert old["tbs_response_data"][field].dump() == new["tbs_response_data"][field].dump()
    for field in ("signature_algorithm", "certs"):
        assert old[field].dump() == new[field].dump()
    for der in (in_memory, on_token):
        response = ocsp.load_der_ocsp_response(der)
        assert response.certificate_status is status
        key.public_key().verify(
            response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
        )


class _KeyElsewhere:
    """A signer whose key the process cannot hand to cryptography, as with a PKCS#11 token."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._signer = KeyFileSigner(key)
        self.public_key = key.public_key()
        self.available = True

    def sign(self, data: bytes, scheme: SignatureScheme) -> bytes:
        return self._signer.sign(data, scheme)
