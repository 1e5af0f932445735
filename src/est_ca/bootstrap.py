"""First start of the embedded default: the data directory, a demo CA and the keys kept
outside the database. (The listener's TLS certificate, when none is configured, is issued by
the CA once the store is open: tls_files.ensure_service_certificate, from Service.open.)

Nothing here overwrites anything. Files an operator configured are used as they are; only
what is left empty in the configuration is generated, once, under data_dir, and only when the
caller may create a CA (`serve` and `init`): every other command run on a directory without
one fails with `NoCertificateAuthority` rather than making a new CA nobody meant. Every start
then checks that no other user can read the data directory or a secret (`secret_paths`).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

import structlog
from sqlalchemy.engine import make_url

from est_ca.ca.hierarchy import HierarchyFiles, generate_demo_hierarchy
from est_ca.ca.publication import Publication
from est_ca.clock import Clock
from est_ca.config import Settings, token_key
from est_ca.errors import ConfigurationError, NoCertificateAuthority
from est_ca.keyfiles import create_key
from est_ca.private_files import create_private, refuse_exposed, write_private

_log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class ServiceFiles:
    ca_cert: Path
    ca_chain: Path
    # None when the CA key lives on a PKCS#11 token (`config.token_key`).
    ca_key: Path | None
    ca_key_passphrase: Path | None
    # The root's key, when the service may sign with it (root CRL, OCSP about the issuing CA).
    root_key: Path | None
    tls_cert: Path
    tls_key: Path
    # Set when the demo hierarchy is in use: the root, for `openssl verify -CAfile`.
    demo_root: Path | None
    # Keys kept outside the database: one-time codes and tokens, the audit chain's anchor,
    # the wrapping of the OCSP responder keys kept in the database (revocation/key_wrap.py).
    hmac_key: Path
    audit_key: Path
    responder_wrap_key: Path
    # The audit key was created by this start: the audit chain may be anchored now.
    audit_key_created: bool = False
    # This start generated the demo CA hierarchy.
    demo_created: bool = False
    # The environment variable holding the CA key's passphrase, if configured (wins).
    ca_key_passphrase_env: str = ""

    def ca_passphrase(self) -> bytes | None:
        """The CA key's (and the root's) passphrase: from the environment
        variable when one is named, else from the passphrase file, else none."""
        if self.ca_key_passphrase_env:
            return passphrase_from_environment(self.ca_key_passphrase_env)
        return read_passphrase(self.ca_key_passphrase) if self.ca_key_passphrase else None


def secret_paths(settings: Settings, files: ServiceFiles) -> list[Path]:
    """What no other user may read nor the group change; a new secret file is one more line."""
    paths = [
        settings.data_dir,
        files.ca_key,
        files.root_key,
        files.ca_key_passphrase,
        files.tls_key,
        files.hmac_key,
        files.audit_key,
        files.responder_wrap_key,
        # Responder keys that versions before the cluster shared them left: their
        # certificates stay valid until they expire, so the files stay the owner's alone.
        *sorted((settings.data_dir / "ocsp").glob("*.key")),
    ]
    return [path for path in paths if path is not None]


def ensure_data_dir(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite database file the settings name, or None for another database (or an
    in-memory or URI-configured SQLite, whose file SQLite manages itself)."""
    url = make_url(settings.database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def shown_database_url(settings: Settings) -> str:
    """The database URL as it may be shown: its password hidden, an SQLite file absolute."""
    url = make_url(settings.database_url)
    database = sqlite_file(settings)
    if database is not None:
        url = url.set(database=str(database.resolve()))
    return url.render_as_string(hide_password=True)


def _require_existing(settings: Settings, what: str, path: Path) -> None:
    if not path.exists():
        raise NoCertificateAuthority(settings.data_dir, f"{what} {path.absolute()} does not exist")


def create_database_file(settings: Settings) -> None:
    """Create the SQLite database file 0600 before SQLite would create it 0644.

    mkdir(0o700) protects nothing when the data directory already existed; the database
    holds the audit trail and the one-time codes' hashes, so it is the owner's alone too.
    """
    path = sqlite_file(settings)
    if path is not None and path.parent.is_dir():
        create_private(path)


def prepare_files(
    settings: Settings, clock: Clock, publication: Publication, *, create: bool
) -> ServiceFiles:
    """The files of the configured CA; with `create`, what is missing of the embedded
    default is generated first, without it a missing piece is `NoCertificateAuthority`."""
    if create:
        ensure_data_dir(settings)
    else:
        if not settings.data_dir.is_dir():
            raise NoCertificateAuthority(settings.data_dir, "there is no such directory")
    demo_root: Path | None = None
    demo_created = False
    if settings.ca.cert_file:
        ca_cert = settings.data_path(settings.ca.cert_file, "")
        ca_chain = settings.data_path(settings.ca.chain_file, "")
        on_token = token_key(settings) is not None
        ca_key = None if on_token else settings.data_path(settings.ca.key_file, "")
        if not (settings.ca.chain_file and (settings.ca.key_file or on_token)):
            raise ConfigurationError("ca.cert_file needs ca.chain_file and ca.key_file as well")
        passphrase = (
            settings.data_path(settings.ca.key_passphrase_file, "")
            if settings.ca.key_passphrase_file
            else None
        )
        root_key = (
            settings.data_path(settings.ca.root_key_file, "") if settings.ca.root_key_file else None
        )
    elif settings.ca.generate_demo:
        hierarchy = HierarchyFiles.in_directory(settings.data_dir / "ca")
        passphrase = settings.data_path(
            settings.ca.key_passphrase_file, "secrets/ca-key-passphrase"
        )
        if not hierarchy.exist():
            if not create:
                _require_existing(settings, "the demo CA", hierarchy.issuing_cert)
                _require_existing(settings, "the demo CA", hierarchy.root_cert)
                raise ConfigurationError(
                    f"the demo CA under {hierarchy.root_cert.parent.absolute()} is incomplete; "
                    "restore it from a backup"
                )
            _generate_demo(hierarchy, passphrase, clock, publication, settings.ca.demo_key_type)
            demo_created = True
        ca_cert, ca_chain, ca_key = (
            hierarchy.issuing_cert,
            hierarchy.issuing_chain,
            hierarchy.issuing_key,
        )
        demo_root = hierarchy.root_cert
        root_key = (
            settings.data_path(settings.ca.root_key_file, "")
            if settings.ca.root_key_file
            else hierarchy.root_key
        )
    else:
        raise ConfigurationError(
            "no CA is configured: set ca.cert_file, ca.chain_file and ca.key_file, "
            "or ca.generate_demo = true"
        )

    if bool(settings.tls.cert_file) != bool(settings.tls.key_file):
        # One without the other would have the CA's certificate overwrite an operator's key.
        raise ConfigurationError(
            "tls.cert_file and tls.key_file go together: set both (your own certificate) "
            "or neither (the CA issues the listener's)"
        )
    tls_cert = settings.data_path(settings.tls.cert_file, "tls/server.pem")
    tls_key = settings.data_path(settings.tls.key_file, "tls/server.key")
    files = ServiceFiles(
        ca_cert=ca_cert,
        ca_chain=ca_chain,
        ca_key=ca_key,
        ca_key_passphrase=passphrase,
        root_key=root_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        demo_root=demo_root,
        demo_created=demo_created,
        hmac_key=settings.data_path(settings.secrets.hmac_key_file, "secrets/hmac.key"),
        audit_key=settings.data_path(settings.secrets.audit_key_file, "secrets/audit.key"),
        responder_wrap_key=settings.data_path(
            settings.secrets.responder_wrap_key_file, "secrets/responder-wrap.key"
        ),
        ca_key_passphrase_env=settings.ca.key_passphrase_env,
    )
    if create:
        create_key(files.hmac_key)
        # Like the HMAC key: made at the first start of a version that needs it, once for a
        # cluster that shares the secrets directory. Only a serving start (`create`) signs
        # OCSP, so other commands do not require it.
        create_key(files.responder_wrap_key)
        files = dataclasses.replace(files, audit_key_created=create_key(files.audit_key))
        refuse_exposed(secret_paths(settings, files))
        create_database_file(settings)
        return files
    _require_existing(settings, "the CA certificate", files.ca_cert)
    _require_existing(settings, "the one-time-code key", files.hmac_key)
    _require_existing(settings, "the audit key", files.audit_key)
    database = sqlite_file(settings)
    if database is not None:
        _require_existing(settings, "the database", database)
    refuse_exposed(secret_paths(settings, files))
    return files


def _generate_demo(
    hierarchy: HierarchyFiles,
    passphrase_file: Path,
    clock: Clock,
    publication: Publication,
    key_type: str,
) -> None:
    existing = [p for p in dataclasses.astuple(hierarchy) if Path(p).exists()]
    if existing:
        raise ConfigurationError(
            f"the demo CA under {hierarchy.root_cert.parent} is incomplete ({existing[0]} "
            "exists, others do not); restore it or remove the directory"
        )
    if not passphrase_file.exists():
        write_private(passphrase_file, (secrets.token_urlsafe(32) + "\n").encode("ascii"))
    _log.info("generating the demo CA hierarchy (Test - not for production)", key=key_type)
    generate_demo_hierarchy(
        hierarchy, read_passphrase(passphrase_file), clock.now(), publication, key_type
    )


def passphrase_from_environment(name: str) -> bytes:
    """A key's passphrase from the environment variable `name` (never a command line)."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"the environment variable {name} (a key passphrase) is empty")
    return value.encode()


def read_passphrase(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the CA key passphrase {path}: {exc.strerror}"
        ) from exc
