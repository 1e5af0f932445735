"""Keys the service keeps outside its database: created once, random, readable by the owner only.

A key that lives next to the data it protects protects nothing; these live in the secrets
directory (like the CA key's passphrase), so a copy of the database alone is not enough to
test one-time codes or to rewrite the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from pathlib import Path

from est_ca.errors import ConfigurationError
from est_ca.private_files import open_private
from est_ca.registration.codes import MIN_KEY_BYTES, new_key


def load_or_create_key(path: Path) -> bytes:
    """The key in `path` (base64 text); a new random one is written there, mode 0600, if none."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # FileExistsError: another instance made it a moment ago; read theirs.
        with contextlib.suppress(FileExistsError), open_private(path) as handle:
            handle.write(base64.urlsafe_b64encode(new_key()) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    try:
        key = base64.urlsafe_b64decode(path.read_bytes().strip())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the key {path}: {exc.strerror}") from exc
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"the key {path} is not base64 text") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(f"the key {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key
