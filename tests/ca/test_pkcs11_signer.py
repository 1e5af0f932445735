"""The PKCS#11 signer and `est-ca key generate` against a real SoftHSM2 token (issue 13, item 2)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from est_ca.ca.pkcs11_signer import Pkcs11Signer, TokenKeyType, generate_token_key, read_pin
from est_ca.ca.signing import SignatureScheme
from est_ca.errors import ConfigurationError
from tests.conftest import TOKEN_PIN, SoftHsm

SCHEMES = {
    "rsa3072": [
        SignatureScheme("rsassa-pss", "sha256", 32),
        SignatureScheme("rsassa-pss", "sha512", 64),
        SignatureScheme("rsa-pkcs1v15", "sha256"),
    ],
    "ec-p256": [SignatureScheme("ecdsa", "sha256"), SignatureScheme("ecdsa", "sha384")],
}


def _new_key(softhsm: SoftHsm, key_type: TokenKeyType) -> str:
    label = f"unit-{key_type}-{uuid.uuid4().hex[:8]}"
    generate_token_key(
        module=softhsm.module,
        token=softhsm.token,
        label=label,
        pin=read_pin(pin_file=str(softhsm.pin_file), environ={}),
        key_type=key_type,
    )
    return label


def _signer(softhsm: SoftHsm, label: str, pool_size: int = 2) -> Pkcs11Signer:
    return Pkcs11Signer(
        module=softhsm.module,
        token=softhsm.token,
        label=label,
        pin=read_pin(pin_env="TEST_TOKEN_PIN", environ={"TEST_TOKEN_PIN": TOKEN_PIN}),
        pool_size=pool_size,
    )


@pytest.mark.parametrize("key_type", ["rsa3072", "ec-p256"])
def test_every_scheme_signs_in_the_encoding_x509_carries(
    softhsm: SoftHsm, key_type: TokenKeyType
) -> None:
    """RSA octets as they are; ECDSA converted from the token's r||s to DER Ecdsa-Sig-Value,
    which is what `SignatureScheme.verify` (cryptography) accepts."""
    signer = _signer(softhsm, _new_key(softhsm, key_type))
    for scheme in SCHEMES[key_type]:
        signature = signer.sign(b"tbs bytes", scheme)
        assert scheme.verify(signer.public_key, signature, b"tbs bytes"), scheme
        if scheme.algorithm == "ecdsa":
            assert signature[0] == 0x30  # a DER SEQUENCE, not raw r||s


def test_more_threads_than_sessions_all_get_valid_signatures(softhsm: SoftHsm) -> None:
    """The pool is bounded: eight threads share two sessions, waiting for one when both are
    busy, and every signature verifies."""
    signer = _signer(softhsm, _new_key(softhsm, "ec-p256"), pool_size=2)
    scheme = SCHEMES["ec-p256"][0]

    def sign(index: int) -> bool:
        data = f"tbs {index}".encode()
        return scheme.verify(signer.public_key, signer.sign(data, scheme), data)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(sign, range(64)))
    assert signer.available


def test_a_wrong_pin_is_refused_without_repeating_it(softhsm: SoftHsm) -> None:
    """Refused even when the token is logged in already (login is per token and process)."""
    label = _new_key(softhsm, "ec-p256")
    wrong = "wrong-pin-0000"
    with pytest.raises(ConfigurationError) as refused:
        Pkcs11Signer(
            module=softhsm.module,
            token=softhsm.token,
            label=label,
            pin=read_pin(pin_env="PIN", environ={"PIN": wrong}),
            pool_size=1,
        )
    assert wrong not in str(refused.value)
    assert TOKEN_PIN not in repr(_signer(softhsm, label))


def _est_ca(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "est_ca", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_key_generate_makes_a_key_on_the_token_with_the_pin_from_a_file_or_the_environment(
    softhsm: SoftHsm,
) -> None:
    common = ["key", "generate", "--kind", "pkcs11", "--module", softhsm.module]
    common += ["--token", softhsm.token]
    label = f"cli-{uuid.uuid4().hex[:8]}"
    made = _est_ca(
        *common, "--label", label, "--type", "ec-p256", "--pin-file", str(softhsm.pin_file)
    )
    assert made.returncode == 0, made.stderr
    public_key = serialization.load_pem_public_key(made.stdout.encode())
    assert _signer(softhsm, label).public_key == public_key
    assert f'label = "{label}"' in made.stdout
    from_env = _est_ca(
        *common, "--label", f"{label}-env", "--pin-env", "TOKEN_PIN", env={"TOKEN_PIN": TOKEN_PIN}
    )
    assert from_env.returncode == 0, from_env.stderr
    again = _est_ca(*common, "--label", label, "--pin-file", str(softhsm.pin_file))
    assert again.returncode == 2
    assert "already holds objects labelled" in again.stderr
    for result in (made, from_env, again):
        assert TOKEN_PIN not in result.stdout + result.stderr


def test_key_generate_takes_no_pin_on_the_command_line(softhsm: SoftHsm) -> None:
    """A PIN in argv is visible to every user in the process listing: there is no --pin."""
    result = _est_ca(
        "key", "generate", "--kind", "pkcs11", "--module", softhsm.module,
        "--token", softhsm.token, "--label", "never", "--pin", TOKEN_PIN,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--pin-file" in result.stderr
