"""Responder private keys wrapped for the database (AES-256-GCM), under a key that is not there.

Every instance of a cluster signs OCSP responses with the same responder key, so the key
travels through the database; the wrapping key lives in the shared secrets directory
(`secrets.responder_wrap_key_file`, made like the HMAC key), so a copy of the database alone
yields no responder key. The associated data binds a wrapped key to its CA's key id and its
certificate's serial: a blob moved to another row, or altered, does not unwrap.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from est_ca.ca.certificates import Serial
from est_ca.errors import ConfigurationError

_VERSION = b"\x01"
_NONCE_OCTETS = 12
_INFO = b"est-ca OCSP responder key wrapping v1"


class KeyWrapper:
    """Wraps and unwraps responder keys under the key from the secrets directory."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own derived from the file, whatever the file's length.
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
        self._aead = AESGCM(key)

    def wrap(self, key: ec.EllipticCurvePrivateKey, issuer_key_id: str, serial: Serial) -> bytes:
        plain = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(_NONCE_OCTETS)
        sealed = self._aead.encrypt(nonce, plain, _associated(issuer_key_id, serial))
        return _VERSION + nonce + sealed

    def unwrap(
        self, wrapped: bytes, issuer_key_id: str, serial: Serial
    ) -> ec.EllipticCurvePrivateKey:
        """The key, or ConfigurationError when this wrapping key did not wrap it for this CA
        and serial (another instance's secrets directory, or an altered row)."""
        nonce, sealed = wrapped[1 : 1 + _NONCE_OCTETS], wrapped[1 + _NONCE_OCTETS :]
        try:
            if wrapped[:1] != _VERSION:
                raise InvalidTag
            plain = self._aead.decrypt(nonce, sealed, _associated(issuer_key_id, serial))
        except InvalidTag:
            raise ConfigurationError(
                f"the OCSP responder key {serial.hex} in the database does not unwrap with this "
                "instance's responder wrapping key: every instance needs the same "
                "secrets.responder_wrap_key_file, and the row must not be altered "
                "(docs/deployment.md: when the file is lost)"
            ) from None
        key = serialization.load_der_private_key(plain, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"the OCSP responder key {serial.hex} is not an EC key")
        return key


def _associated(issuer_key_id: str, serial: Serial) -> bytes:
    return b"est-ca responder key\x00" + issuer_key_id.encode() + b"\x00" + serial.hex.encode()
