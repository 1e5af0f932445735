"""Bringing a new issuing CA into service under a label (`est-ca ca rollover`).

A rollover never edits the operator's configuration. It writes the new generation, and the
retirement of the one it replaces, to `data_dir/ca/authorities.toml`, which settings read after
the operator's file (config.MANAGED_AUTHORITIES). From the next start of each instance the new
CA enrolls and renews under the label and cacerts serves its chain; the retired CA keeps its
CRL (own URL, own cRLNumber) and OCSP responder, and its certificates still authenticate and
renew, to the new CA, until the operator removes it after the last of them expired.

The new CA is either made here, under the hierarchy's root when the service holds the root key
(the demo hierarchy), or one the operator's own root signed (its certificate, chain and key).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from est_ca.bootstrap import ServiceFiles, read_passphrase
from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.hierarchy import build_issuing, write_private_key
from est_ca.ca.publication import Publication
from est_ca.ca.signing import KeyFileSigner
from est_ca.clock import Clock
from est_ca.config import (
    MANAGED_AUTHORITIES,
    CaEntry,
    FileKeyRef,
    KeyRef,
    Settings,
    read_managed,
)
from est_ca.errors import ConfigurationError, NotFound
from est_ca.private_files import write_private


@dataclasses.dataclass(frozen=True)
class SuppliedCa:
    """A new issuing CA the operator's root signed: its files (the key encrypted)."""

    certificate: Path
    chain: Path
    key: Path
    passphrase_file: Path | None = None


@dataclasses.dataclass(frozen=True)
class Rollover:
    label: str
    retired: CaEntry
    new: CaEntry
    certificate: x509.Certificate


def roll_over(
    settings: Settings,
    clock: Clock,
    publication: Publication,
    files: ServiceFiles,
    current: CaEntry,
    served: list[CaEntry],
    supplied: SuppliedCa | None = None,
    fits: Callable[[CertificateAuthority], None] | None = None,
) -> Rollover:
    """Make (or check) the next generation of `current`'s label and record it; blocking.

    `fits` raises when the new CA cannot sign what the label issues: checked before anything
    is recorded, since the next start would refuse it (Service.open checks the same)."""
    label = current.est_label
    names = {entry.name for entry in served} | {current.name}
    number = 2
    # A directory without an entry is what a rollover interrupted before it was recorded left.
    while f"{label}-{number}" in names or (settings.data_dir / "ca" / f"{label}-{number}").exists():
        number += 1
    name = f"{label}-{number}"
    current_entry, root_key = _with_files(settings, files, current)
    served = [current_entry if entry.name == current.name else entry for entry in served]
    if supplied is None:
        new_entry = _generate(settings, clock, publication, current_entry, root_key, name, number)
    else:
        new_entry = dataclasses.replace(
            current_entry,
            name=name,
            certificate=_shown(settings, supplied.certificate),
            chain=_shown(settings, supplied.chain),
            key=FileKeyRef(
                _shown(settings, supplied.key),
                _shown(settings, supplied.passphrase_file) if supplied.passphrase_file else "",
            ),
        )
        new_ca = _load(settings, new_entry)
        for entry in served:
            if _load_certificate(settings, entry).public_key() == new_ca.certificate.public_key():
                raise ConfigurationError(
                    f"the new CA has the key of {entry.name!r}: a rollover needs a new key"
                )
    new_ca = _load(settings, new_entry)
    if fits is not None:
        fits(new_ca)
    retired = dataclasses.replace(current_entry, label=label, retired=True, default=False)
    new_entry = dataclasses.replace(new_entry, label=label, retired=False)
    _record(settings, [retired, new_entry], root_key if supplied is None else None)
    return Rollover(label=label, retired=retired, new=new_entry, certificate=new_ca.certificate)


def _with_files(
    settings: Settings, files: ServiceFiles, entry: CaEntry
) -> tuple[CaEntry, Path | None]:
    """The entry with its files named (the `[ca]` section's, the demo's, have none in the
    settings) and the root key the service holds, if any."""
    if entry.certificate:
        root = settings.data_path(settings.ca.root_key_file, "") if entry.default else None
        return entry, root if root and settings.ca.root_key_file else None
    assert files.ca_key is not None  # the `[ca]` section's key is a file
    named = dataclasses.replace(
        entry,
        certificate=_shown(settings, files.ca_cert),
        chain=_shown(settings, files.ca_chain),
        key=FileKeyRef(
            _shown(settings, files.ca_key),
            _shown(settings, files.ca_key_passphrase) if files.ca_key_passphrase else "",
        ),
    )
    return named, files.root_key


def _generate(
    settings: Settings,
    clock: Clock,
    publication: Publication,
    current: CaEntry,
    root_key_file: Path | None,
    name: str,
    number: int,
) -> CaEntry:
    """The next issuing CA under the current one's root, made with the root key here."""
    if root_key_file is None or not root_key_file.is_file():
        raise ConfigurationError(
            f"the root key of {current.name!r} is not held by this service: have your root "
            "sign a new issuing CA and give its --certificate, --chain and --key"
        )
    key_ref = _file_key(current.key)
    passphrase = (
        read_passphrase(settings.data_path(key_ref.passphrase_file, ""))
        if key_ref.passphrase_file
        else None
    )
    chain = x509.load_pem_x509_certificates(settings.data_path(current.chain, "").read_bytes())
    root = chain[-1]
    root_signer = KeyFileSigner.load(root_key_file, passphrase)
    if passphrase is None:
        raise ConfigurationError("the new CA key is stored encrypted: the CA needs a passphrase")
    directory = settings.data_dir / "ca" / name
    directory.mkdir(mode=0o700, parents=True, exist_ok=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    certificate = build_issuing(
        key.public_key(), root, root_signer, clock.now(), publication, number
    )
    write_private_key(directory / "issuing.key", key, passphrase)
    (directory / "issuing.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "issuing-chain.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    )
    return dataclasses.replace(
        current,
        name=name,
        certificate=_shown(settings, directory / "issuing.pem"),
        chain=_shown(settings, directory / "issuing-chain.pem"),
        key=FileKeyRef(_shown(settings, directory / "issuing.key"), key_ref.passphrase_file),
    )


def _file_key(key: KeyRef) -> FileKeyRef:
    if not isinstance(key, FileKeyRef):
        raise ConfigurationError("only CAs with key files can be rolled over for now")
    return key


def _load(settings: Settings, entry: CaEntry) -> CertificateAuthority:
    """The CA as a start would load it: key and certificate must belong together."""
    key_ref = _file_key(entry.key)
    passphrase = (
        read_passphrase(settings.data_path(key_ref.passphrase_file, ""))
        if key_ref.passphrase_file
        else None
    )
    signer = KeyFileSigner.load(settings.data_path(key_ref.path, ""), passphrase)
    return CertificateAuthority.load(
        settings.data_path(entry.certificate, ""), settings.data_path(entry.chain, ""), signer
    )


def _load_certificate(settings: Settings, entry: CaEntry) -> x509.Certificate:
    path = settings.data_path(entry.certificate, "")
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _shown(settings: Settings, path: Path) -> str:
    """A path as the managed file keeps it: relative to data_dir when under it, so the data
    directory can move; absolute otherwise."""
    absolute = path.absolute()
    data_dir = settings.data_dir.absolute()
    if absolute.is_relative_to(data_dir):
        return str(absolute.relative_to(data_dir))
    return str(absolute)


def _record(settings: Settings, entries: list[CaEntry], root_key: Path | None) -> None:
    """Merge `entries` (the retired current generation, then the new one) into the managed
    file by name and replace it atomically, under an exclusive lock: a rollover of the same
    label that recorded meanwhile (another shell, another instance on this data directory)
    makes this one stop rather than leave two generations enrolling under one label."""
    path = settings.data_dir / MANAGED_AUTHORITIES
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (path.parent / ".rollover.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _record_locked(settings, path, entries, root_key)


def _record_locked(
    settings: Settings, path: Path, entries: list[CaEntry], root_key: Path | None
) -> None:
    existing, kept_root = read_managed(path) if path.is_file() else ((), "")
    retired, new = entries
    for entry in existing:
        moved_on = entry.name == retired.name and entry.retired
        other_current = entry.est_label == new.est_label and not entry.retired
        if moved_on or (other_current and entry.name != retired.name):
            raise ConfigurationError(
                f"label {new.est_label!r} was rolled over meanwhile (to {entry.name!r} or "
                f"from {retired.name!r}); nothing was recorded: check `est-ca status`, then "
                "run the rollover again if it is still wanted"
            )
    names = {entry.name for entry in entries}
    kept = [entry for entry in existing if entry.name not in names]
    lines = [
        "# Written by `est-ca ca rollover`: the CA generations it brought into service.",
        "# Read after the configuration file; an entry replaces the configured one of its name.",
    ]
    root = _shown(settings, root_key) if root_key else kept_root
    if root:
        lines.append(f"root_key_file = {_toml_string(root)}")
    for entry in (*kept, *entries):
        lines.append(_toml_table(entry))
    write_private(path, ("\n".join(lines) + "\n").encode("utf-8"), replace=True)


def _toml_string(value: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's, but not its \\uD83D\\uDD11 pairs for
    characters beyond U+FFFF (TOML wants scalar values): those stay as they are, in UTF-8."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_table(entry: CaEntry) -> str:
    """One `[[authorities]]` table."""
    key = _file_key(entry.key)
    fields = [
        "",
        "[[authorities]]",
        f"name = {_toml_string(entry.name)}",
        f"label = {_toml_string(entry.est_label)}",
        f"certificate = {_toml_string(entry.certificate)}",
        f"chain = {_toml_string(entry.chain)}",
        f'key = {{ kind = "file", path = {_toml_string(key.path)}, '
        f"passphrase_file = {_toml_string(key.passphrase_file)} }}",
        f"default = {'true' if entry.default else 'false'}",
        f"retired = {'true' if entry.retired else 'false'}",
        f"profiles = [{', '.join(_toml_string(profile) for profile in entry.profiles)}]",
    ]
    return "\n".join(fields)


def label_entry(served: list[CaEntry], label: str | None) -> tuple[CaEntry, list[CaEntry]]:
    """The entry that enrolls under `label` now (None: the default one, first of `served`)
    and every CA served."""
    wanted = label or served[0].est_label
    for entry in served:
        if entry.est_label == wanted and not entry.retired:
            return entry, served
    raise NotFound(f"no CA label {wanted!r} to roll over")
