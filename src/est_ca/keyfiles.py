"""Keys the service keeps outside its database: created once, random, readable by the owner only.

A key that lives next to the data it protects protects nothing; these live in the secrets
directory (like the CA key's passphrase), so a copy of the database alone is not enough to
test one-time codes or to rewrite the audit trail.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from est_ca.errors import ConfigurationError
from est_ca.private_files import write_private
from est_ca.registration.codes import MIN_KEY_BYTES, new_key


def create_key(path: Path) -> bool:
    """Write a new random key (base64 text, mode 0600) to `path` unless there is one; True
    when this call created it (another instance may have made it a moment ago)."""
    if path.exists():
        return False
    try:
        write_private(path, base64.urlsafe_b64encode(new_key()) + b"\n")
    except FileExistsError:
        return False
    return True


def load_key(path: Path) -> bytes:
    """The key in `path`, checked: base64 text of at least MIN_KEY_BYTES bytes."""
    try:
        key = base64.urlsafe_b64decode(path.read_bytes().strip())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the key {path}: {exc.strerror}") from exc
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"the key {path} is not base64 text") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(f"the key {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key
