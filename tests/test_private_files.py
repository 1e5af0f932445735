"""Owner-only files: 0600 in a 0700 directory, complete or not at all, never over another."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from est_ca.private_files import write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_and_the_directory_made_for_it_are_the_owners_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secrets" / "key.pem"
    write_private(path, b"secret\n")
    assert path.read_bytes() == b"secret\n"
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)


def test_a_private_file_is_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    write_private(path, b"first\n")
    with pytest.raises(FileExistsError):
        write_private(path, b"second\n")
    assert path.read_bytes() == b"first\n"
    assert list(tmp_path.iterdir()) == [path]


def test_a_replaced_private_file_has_the_new_content_and_leaves_nothing_beside_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "responder.key"
    write_private(path, b"old\n")
    path.chmod(0o640)
    write_private(path, b"new\n", replace=True)
    assert path.read_bytes() == b"new\n"
    assert mode(path) == 0o600
    assert list(tmp_path.iterdir()) == [path]
