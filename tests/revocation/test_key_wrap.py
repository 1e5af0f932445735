"""Responder keys wrapped for the database: they unwrap only under the same wrapping key, for
the CA key id and serial they were wrapped for, and unaltered."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from est_ca.ca.certificates import Serial
from est_ca.errors import ConfigurationError
from est_ca.registration.codes import new_key
from est_ca.revocation.key_wrap import KeyWrapper

CA = "a1" * 20
OTHER_CA = "b2" * 20


def _public(key: ec.EllipticCurvePrivateKey) -> int:
    return key.public_key().public_numbers().x


def test_a_wrapped_key_unwraps_for_its_ca_and_serial() -> None:
    wrapper = KeyWrapper(new_key())
    key = ec.generate_private_key(ec.SECP256R1())
    serial = Serial.random()
    wrapped = wrapper.wrap(key, CA, serial)
    assert _public(wrapper.unwrap(wrapped, CA, serial)) == _public(key)


def test_a_wrapped_key_holds_no_key_material_in_the_clear() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    assert secret not in KeyWrapper(new_key()).wrap(key, CA, Serial.random())


@pytest.mark.parametrize("position", [0, 5, 20, -1], ids=["version", "nonce", "body", "tag"])
def test_an_altered_wrapped_key_is_refused(position: int) -> None:
    wrapper = KeyWrapper(new_key())
    serial = Serial.random()
    wrapped = bytearray(wrapper.wrap(ec.generate_private_key(ec.SECP256R1()), CA, serial))
    wrapped[position] ^= 0x01
    with pytest.raises(ConfigurationError, match="does not unwrap"):
        wrapper.unwrap(bytes(wrapped), CA, serial)


def test_a_key_wrapped_for_another_ca_is_refused() -> None:
    wrapper = KeyWrapper(new_key())
    serial = Serial.random()
    wrapped = wrapper.wrap(ec.generate_private_key(ec.SECP256R1()), OTHER_CA, serial)
    with pytest.raises(ConfigurationError, match="does not unwrap"):
        wrapper.unwrap(wrapped, CA, serial)


def test_a_key_wrapped_for_another_serial_is_refused() -> None:
    wrapper = KeyWrapper(new_key())
    wrapped = wrapper.wrap(ec.generate_private_key(ec.SECP256R1()), CA, Serial.random())
    with pytest.raises(ConfigurationError, match="does not unwrap"):
        wrapper.unwrap(wrapped, CA, Serial.random())


def test_a_key_wrapped_under_another_wrapping_key_is_refused() -> None:
    serial = Serial.random()
    wrapped = KeyWrapper(new_key()).wrap(ec.generate_private_key(ec.SECP256R1()), CA, serial)
    with pytest.raises(ConfigurationError, match=r"same secrets\.responder_wrap_key_file"):
        KeyWrapper(new_key()).unwrap(wrapped, CA, serial)
