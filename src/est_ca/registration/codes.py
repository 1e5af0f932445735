"""Order references and one-time codes, and the slow hash the codes are stored as.

Codes are 100 random bits written in Crockford's base32 (no I, L, O, U), grouped for reading
aloud. Input is normalised the way Crockford intends (case, dashes, spaces, I/L->1, O->0) so a
code typed by a human still matches. Only an scrypt hash is stored, with its parameters, and
comparison is constant-time. The functions here block for tens of milliseconds: callers run
them on a worker thread.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets

from est_ca.errors import ConfigurationError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_GROUPS = 4
_GROUP_LENGTH = 5
_REFERENCE_LENGTH = 12
_SALT_BYTES = 16
_DIGEST_BYTES = 32
_TRANSLATE = str.maketrans({"I": "1", "L": "1", "O": "0", "-": None, " ": None})


def _random_text(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_reference() -> str:
    """A 12-character order reference: 60 random bits, so references reveal no order count."""
    return _random_text(_REFERENCE_LENGTH)


def new_one_time_code() -> str:
    """A code like 7KQ2M-9XZ4P-H3D8R-WT5NB (100 random bits)."""
    groups = (_random_text(_GROUP_LENGTH) for _ in range(_CODE_GROUPS))
    return "-".join(groups)


def normalise(text: str) -> str:
    """Uppercase, without dashes and spaces, with the letters Crockford reads as digits mapped."""
    return text.strip().upper().translate(_TRANSLATE)


@dataclasses.dataclass(frozen=True)
class CodeHasher:
    """scrypt with the configured cost; hashes carry their own cost so it can change later."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise ConfigurationError("scrypt parameters must be n a power of two, r >= 1, p >= 1")

    def hash(self, code: str) -> str:
        salt = secrets.token_bytes(_SALT_BYTES)
        digest = self._derive(normalise(code), salt, self.n, self.r, self.p)
        return "$".join(("scrypt", str(self.n), str(self.r), str(self.p), _b64(salt), _b64(digest)))

    def verify(self, code: str, stored: str) -> bool:
        """True when `code` matches `stored`; constant-time in the comparison of digests."""
        try:
            scheme, n, r, p, salt, digest = stored.split("$")
            if scheme != "scrypt":
                return False
            expected = base64.b64decode(digest, validate=True)
            actual = self._derive(
                normalise(code), base64.b64decode(salt, validate=True), int(n), int(r), int(p)
            )
        except ValueError:
            return False
        return hmac.compare_digest(actual, expected)

    def waste_time(self, code: str) -> None:
        """Spend what a verification costs, so an unknown reference is not told apart by timing."""
        self._derive(normalise(code), b"\0" * _SALT_BYTES, self.n, self.r, self.p)

    @staticmethod
    def _derive(code: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(
            code.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=256 * 1024 * 1024,
            dklen=_DIGEST_BYTES,
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
