"""Files only the service's own user may read: how they are created, and the check at start.

Keys, passphrases, one-time codes and the database are created with mode 0600 whatever the
umask, and never by opening a file that exists (its mode and owner were someone else's
choice). At every start `refuse_exposed` stops the service when the data directory or a secret
file is open to other users or writable by its group: whoever can read the CA key is the CA.
Group read stays allowed, because root:est-ca 0640 keys and a 0750 directory are a deployment
that keeps everyone else out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from est_ca.errors import ConfigurationError

OWNER_ONLY = 0o600
# Bits that must be clear: any access for others, write access for the group.
_EXPOSING = stat.S_IRWXO | stat.S_IWGRP


def open_private(path: Path) -> BinaryIO:
    """A new file (FileExistsError if there is one) that only its owner can read."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    return os.fdopen(descriptor, "wb")


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """`data` in a file that only its owner can read, in a directory made owner-only if new.

    The one way secrets reach the disk: written in full to a new file beside `path` and flushed
    to disk, then put in place, so nobody (another instance starting at the same moment, or the
    next start after a crash) reads half a key. An existing `path` is an error
    (FileExistsError) unless `replace`: then it is replaced in one step.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    try:
        with open_private(temporary) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            temporary.replace(path)
        else:
            os.link(temporary, path)  # unlike a rename, never over an existing file
    finally:
        temporary.unlink(missing_ok=True)


def create_private(path: Path) -> None:
    """An empty file only its owner can read, unless `path` exists (then it is left alone).

    SQLite creates a database 0644 and its -wal and -shm files with the database's mode;
    created empty here first, all three are the owner's alone.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))


def refuse_exposed(paths: Iterable[Path]) -> None:
    """Stop the start if any of `paths` (directories or files) is open to other users or
    writable by its group; the message has the command that fixes it. Missing paths are
    skipped: whatever needs them says so."""
    for path in paths:
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(status.st_mode)
        if mode & _EXPOSING:
            is_directory = stat.S_ISDIR(status.st_mode)
            what, fixed, shared = (
                ("data", "700", "750") if is_directory else ("secret", "600", "640")
            )
            raise ConfigurationError(
                f"{path} is open to other users or writable by its group (mode {mode:04o}); "
                f"the service does not start with its {what} exposed. Run: "
                f"chmod {fixed} {shlex.quote(str(path))} ({shared} if its group must read it)"
            )
