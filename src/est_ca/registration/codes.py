"""Order references and one-time codes, and the keyed hash the codes are stored as.

Codes are 100 random bits written in Crockford's base32 (no I, L, O, U), grouped for reading
aloud. Input is normalised the way Crockford intends (case, dashes, spaces, I/L->1, O->0) so a
code typed by a human still matches.

We generate every code ourselves, so each has 100 bits of entropy: a slow password hash buys
nothing (an offline search of 2^100 is out of reach either way) and would cost every enrollment
and every bulk order tens of milliseconds of CPU. A code is stored as HMAC-SHA-256 under a key
kept outside the database (`SecretHasher`), so a copy of the database alone cannot even test a
guess. Hashes made by earlier versions with scrypt carry their parameters and still verify.
Comparison is constant-time in every case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_GROUPS = 4
_GROUP_LENGTH = 5
_REFERENCE_LENGTH = 12
_TRANSLATE = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None, " ": None})
HMAC_SCHEME = "hmac-sha256"
SCRYPT_SCHEME = "scrypt"
# Labels that keep the keyed hashes of different kinds of secret apart under one key.
ORDER_CODE = "order-code"
API_TOKEN = "api-token"  # noqa: S105 - a label, not a secret
MIN_KEY_BYTES = 32


def _random_text(length: int) -> str:
    """`length` characters of the alphabet, 5 random bits each, from one read of the system's
    random source (a read per character made bulk orders slow)."""
    bits = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8), "big")
    return "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def new_reference() -> str:
    """A 12-character order reference: 60 random bits, so references reveal no order count."""
    return _random_text(_REFERENCE_LENGTH)


def new_one_time_code() -> str:
    """A code like 7KQ2M-9XZ4P-H3D8R-WT5NB (100 random bits)."""
    groups = (_random_text(_GROUP_LENGTH) for _ in range(_CODE_GROUPS))
    return "-".join(groups)


def could_be_reference(normalised: str) -> bool:
    """Whether a normalised text has the shape of a reference we hand out (12 characters of
    the alphabet); anything else cannot exist and is not looked up."""
    return len(normalised) == _REFERENCE_LENGTH and all(c in ALPHABET for c in normalised)


def normalise(text: str) -> str:
    """Uppercase, without dashes and spaces, with the letters Crockford reads as digits mapped."""
    return text.strip().upper().translate(_TRANSLATE)


class SecretHasher:
    """Keyed hashes of the high-entropy secrets we hand out (one-time codes, API tokens).

    The key lives in the secrets directory, never in the database; every instance of a
    cluster reads the same key file. `purpose` separates the kinds of secret, so a code's hash
    can never stand for a token's.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a secret-hashing key has at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _digest(self, purpose: str, secret: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{secret}".encode(), hashlib.sha256).digest()

    def hash(self, secret: str, purpose: str = ORDER_CODE) -> str:
        text = normalise(secret) if purpose == ORDER_CODE else secret
        return f"{HMAC_SCHEME}${self._digest(purpose, text).hex()}"

    def verify(self, secret: str, stored: str | None, purpose: str = ORDER_CODE) -> bool:
        """True when `secret` matches `stored`. With nothing stored (an unknown reference) the
        same keyed hash is computed and compared with nothing, so both cost the same."""
        text = normalise(secret) if purpose == ORDER_CODE else secret
        actual = self._digest(purpose, text)
        if stored is None:
            hmac.compare_digest(actual, bytes(len(actual)))
            return False
        scheme, _, rest = stored.partition("$")
        if scheme == HMAC_SCHEME:
            try:
                expected = bytes.fromhex(rest)
            except ValueError:
                return False
            return hmac.compare_digest(actual, expected)
        if scheme == SCRYPT_SCHEME and purpose == ORDER_CODE:
            return verify_scrypt(text, stored)
        return False

    @staticmethod
    def is_slow(stored: str) -> bool:
        """Whether verifying `stored` blocks (an scrypt hash of an earlier version)."""
        return stored.startswith(SCRYPT_SCHEME + "$")


def verify_scrypt(normalised_code: str, stored: str) -> bool:
    """A code against an scrypt hash `scrypt$n$r$p$salt$digest` made by earlier versions.

    Blocking for tens of milliseconds: callers run it on a worker thread.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            normalised_code.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * 1024 * 1024,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return scheme == SCRYPT_SCHEME and hmac.compare_digest(actual, expected)


def new_key() -> bytes:
    """A fresh key for `SecretHasher` or the audit chain."""
    return secrets.token_bytes(MIN_KEY_BYTES)
