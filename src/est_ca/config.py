"""Settings: the shipped TOML defaults, then an operator's TOML file, then environment variables.

The shipped `ca-config/est-ca.toml` is the only place defaults live; the dataclasses here
only give them types. Unknown keys and values of the wrong type stop the start with a message
naming the key, because a mistyped setting silently ignored is how CAs get misconfigured.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from est_ca.errors import ConfigurationError

ENV_PREFIX = "EST_CA_"
# Under data_dir: the CA generations `est-ca ca rollover` brought into service (config.py reads
# it after the operator's file; nothing else writes it).
MANAGED_AUTHORITIES = "ca/authorities.toml"
T = TypeVar("T")
LogFormat = Literal["auto", "json", "console"]


def shipped_config_dir() -> Path:
    """`ca-config/` of a source checkout (editable install) or its copy inside the wheel."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "_shipped_config", package_dir.parents[1] / "ca-config"):
        if (candidate / "est-ca.toml").is_file():
            return candidate
    raise ConfigurationError("the shipped ca-config directory is missing from this installation")


# The key types `est-ca init --ca-key` may give a generated (demo) issuing CA: OCES3's RSA-3072,
# and the two NIST curves.
DEMO_KEY_TYPES = ("rsa3072", "p256", "p384")


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    host: str
    port: int
    http_port: int
    max_body_bytes: int
    demo: bool
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class AdminSettings:
    port: int
    client_ca_file: str
    client_certificate_scopes: tuple[str, ...]
    import_max_bytes: int


@dataclasses.dataclass(frozen=True)
class PublicationSettings:
    base_url: str
    name_registration_authority: str


@dataclasses.dataclass(frozen=True)
class LimitSettings:
    max_concurrent_enrollments: int
    failures_per_source: int
    failure_window_seconds: int
    request_timeout_seconds: int
    max_header_bytes: int
    max_connections_per_source: int


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    url: str
    auto_migrate: bool


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    # More DNS names or IP addresses for the CA-issued listener certificate (no cert_file).
    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CaSettings:
    cert_file: str
    chain_file: str
    key_file: str
    key_passphrase_file: str
    key_passphrase_env: str
    root_key_file: str
    generate_demo: bool
    # The demo issuing CA's key, when one is generated (`est-ca init --ca-key`).
    demo_key_type: str = "rsa3072"


@dataclasses.dataclass(frozen=True)
class FileKeyRef:
    """A CA key in an encrypted PEM file, its passphrase in another (relative: under data_dir)
    or in an environment variable (`passphrase_env`, which wins)."""

    path: str
    passphrase_file: str = ""
    passphrase_env: str = ""


@dataclasses.dataclass(frozen=True)
class Pkcs11KeyRef:
    """A CA key on a PKCS#11 token (ca/pkcs11_signer.py): the module (shared library), the
    token's label and the key's label. The user PIN comes from a file (relative: under
    data_dir) or an environment variable, exactly one of them; never from a command line."""

    module: str
    token: str
    label: str
    pin_file: str = ""
    pin_env: str = ""


@dataclasses.dataclass(frozen=True)
class TokenRef:
    """A PKCS#11 token the service makes keys on (the OCSP responders' `responder_token`):
    module, token label, and the PIN from a file or an environment variable."""

    module: str
    token: str
    pin_file: str = ""
    pin_env: str = ""


KeyRef = FileKeyRef | Pkcs11KeyRef
"""Where a CA's key lives: one variant per key store (a new store is one more variant)."""

KEY_KINDS: dict[str, type[FileKeyRef] | type[Pkcs11KeyRef]] = {
    "file": FileKeyRef,
    "pkcs11": Pkcs11KeyRef,
}


@dataclasses.dataclass(frozen=True)
class CaEntry:
    """One CA of the `[[authorities]]` list: its certificate, chain and key reference.

    `name` names its publication paths (/crl/<name>.crl, /cacert/<name>.cer) for ever;
    `label` (default: the name) is the EST label it enrolls under (/.well-known/est/<label>/).
    Two generations of one CA share a label: the one not `retired` enrolls; a retired one is
    still published (CRL, OCSP) and its certificates still authenticate and renew, to the new.
    `profiles`: the profiles orders under this label may name (empty: every profile).
    `require_channel_binding`: every CSR enrolled under this label must carry the TLS
    session's tls-unique in its challengePassword (RFC 7030 3.5; TLS 1.2 only, see docs/est.md).
    """

    name: str
    certificate: str
    chain: str
    key: KeyRef
    default: bool = False
    profiles: tuple[str, ...] = ()
    label: str = ""
    retired: bool = False
    require_channel_binding: bool = False
    # Where its OCSP responder keys are made (a new one per responder certificate); None:
    # encrypted key files under <data_dir>/ocsp.
    responder_token: TokenRef | None = None

    @property
    def est_label(self) -> str:
        return self.label or self.name


@dataclasses.dataclass(frozen=True)
class OrderSettings:
    validity_days: int
    max_failed_attempts: int
    claim_lease_seconds: int
    approval_retry_after_seconds: int


@dataclasses.dataclass(frozen=True)
class RevocationSettings:
    crl_validity_hours: int
    crl_refresh_hours: int
    root_crl_validity_days: int
    poll_seconds: int
    listen: bool
    http_max_age_seconds: int


@dataclasses.dataclass(frozen=True)
class OcspSettings:
    response_validity_hours: int
    responder_validity_days: int
    responder_renew_days: int


@dataclasses.dataclass(frozen=True)
class SecretSettings:
    hmac_key_file: str
    audit_key_file: str
    responder_wrap_key_file: str


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    extra_dirs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    format: LogFormat
    level: str


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    authorities: tuple[CaEntry, ...]
    service: ServiceSettings
    admin: AdminSettings
    publication: PublicationSettings
    limits: LimitSettings
    database: DatabaseSettings
    tls: TlsSettings
    ca: CaSettings
    orders: OrderSettings
    revocation: RevocationSettings
    ocsp: OcspSettings
    secrets: SecretSettings
    profiles: ProfileSettings
    logging: LoggingSettings

    def data_path(self, name: str, default: str) -> Path:
        """A configured file name (or `default` if empty); relative names are under data_dir."""
        return self.data_dir / (name or default)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'est-ca.db'}"

    @property
    def public_base_url(self) -> str:
        """Where relying parties fetch CRLs, OCSP and CA certificates (no trailing slash)."""
        if self.publication.base_url:
            return self.publication.base_url.rstrip("/")
        host = self.service.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.service.http_port}"

    @property
    def profile_dirs(self) -> tuple[Path, ...]:
        shipped = shipped_config_dir() / "profiles"
        return (shipped, *(Path(d) for d in self.profiles.extra_dirs))


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from the shipped defaults, then `config_file`, `env`, and `overrides`.

    `overrides` is a nested mapping like the TOML file; the CLI and tests use it for flags.
    """
    merged = _read_toml(shipped_config_dir() / "est-ca.toml")
    if config_file is not None:
        _merge(merged, _read_toml(config_file), str(config_file))
    _merge(merged, _from_environment(env or {}, merged), "environment")
    if overrides:
        _merge(merged, dict(overrides), "command line")
    settings = from_mapping(Settings, merged, "")
    managed = settings.data_dir / MANAGED_AUTHORITIES
    if managed.is_file():
        settings = _with_managed(settings, managed)
    _check(settings)
    return _with_listed_authority(settings)


def read_managed(path: Path) -> tuple[tuple[CaEntry, ...], str]:
    """The managed file's CA entries and the root key file it names ("" for none)."""
    raw = _read_toml(path)
    unknown = sorted(set(raw) - {"authorities", "root_key_file"})
    if unknown:
        raise ConfigurationError(f"unknown setting {unknown[0]!r} in {path}")
    entries = _coerce(tuple[CaEntry, ...], raw.get("authorities", []), f"{path}: authorities")
    root_key = _coerce(str, raw.get("root_key_file", ""), f"{path}: root_key_file")
    return entries, root_key


def _with_managed(settings: Settings, path: Path) -> Settings:
    """The CA generations `est-ca ca rollover` wrote: each replaces the configured entry of
    its name (a retired one) or joins the list (the new one)."""
    managed, root_key = read_managed(path)
    # What a label issues and which label is the default stay the operator's to configure:
    # the generation enrolling under a label takes them from the configured entry of its label.
    configured = {entry.est_label: entry for entry in settings.authorities if not entry.retired}
    managed = tuple(
        dataclasses.replace(
            entry,
            profiles=configured[entry.est_label].profiles,
            default=configured[entry.est_label].default,
            require_channel_binding=configured[entry.est_label].require_channel_binding,
        )
        if not entry.retired and entry.est_label in configured
        else entry
        for entry in managed
    )
    names = {entry.name for entry in managed}
    listed = tuple(entry for entry in settings.authorities if entry.name not in names)
    ca = dataclasses.replace(settings.ca, root_key_file=root_key) if root_key else settings.ca
    return dataclasses.replace(settings, authorities=(*listed, *managed), ca=ca)


def _with_listed_authority(settings: Settings) -> Settings:
    """Check the `[[authorities]]` list and let its default CA stand in for `[ca]`.

    Every listed CA is served (its own CRL, OCSP responder and URLs) and enrolls under its
    label; the default one also under the unlabelled path.
    """
    listed = settings.authorities
    if not listed:
        return settings
    names = [entry.name for entry in listed]
    for entry in listed:
        for kind, value in (("name", entry.name), ("label", entry.est_label)):
            if not (value.isascii() and value.replace("-", "").isalnum()):
                raise ConfigurationError(
                    f"authority {kind} {value!r}: use letters, digits and '-' "
                    "(it becomes a URL path)"
                )
        if entry.name == "root":
            raise ConfigurationError(
                "authority name 'root' is reserved: /crl/root.crl and /cacert/root.cer are "
                "the default authority's root's"
            )
        if names.count(entry.name) > 1:
            raise ConfigurationError(f"authority name {entry.name!r} is used twice")
        if not (entry.certificate and entry.chain):
            raise ConfigurationError(f"authority {entry.name!r} needs certificate and chain")
        token = entry.responder_token
        if token is not None and bool(token.pin_file) == bool(token.pin_env):
            raise ConfigurationError(
                f"authority {entry.name!r}: give the responder token's PIN by exactly one of "
                "responder_token.pin_file or responder_token.pin_env"
            )
        if isinstance(entry.key, Pkcs11KeyRef):
            key = entry.key
            if not (key.module and key.token and key.label):
                raise ConfigurationError(
                    f"authority {entry.name!r}: a pkcs11 key needs module, token and label"
                )
            if bool(key.pin_file) == bool(key.pin_env):
                raise ConfigurationError(
                    f"authority {entry.name!r}: give the token PIN by exactly one of "
                    "key.pin_file or key.pin_env"
                )
        elif not entry.key.path:
            raise ConfigurationError(f"authority {entry.name!r} needs key.path")
        if entry.retired and entry.default:
            raise ConfigurationError(
                f"authority {entry.name!r} is retired: it cannot be the default"
            )
    active = [entry for entry in listed if not entry.retired]
    labels = [entry.est_label for entry in active]
    for entry in listed:
        if labels.count(entry.est_label) != 1:
            raise ConfigurationError(
                f"label {entry.est_label!r} needs exactly one authority that is not retired "
                "(it is the one that enrolls under the label)"
            )
    defaults = _defaults(listed)
    if len(defaults) != 1:
        raise ConfigurationError("exactly one authority must be marked default = true")
    chosen = defaults[0]
    ca = CaSettings(
        cert_file=chosen.certificate,
        chain_file=chosen.chain,
        # A token key has no file: `token_key` names it (bootstrap.py, service.py).
        key_file=chosen.key.path if isinstance(chosen.key, FileKeyRef) else "",
        key_passphrase_file=chosen.key.passphrase_file
        if isinstance(chosen.key, FileKeyRef)
        else "",
        key_passphrase_env=chosen.key.passphrase_env if isinstance(chosen.key, FileKeyRef) else "",
        # The hierarchy's root key, when the service holds it (the demo's after a rollover).
        root_key_file=settings.ca.root_key_file,
        generate_demo=False,
    )
    return dataclasses.replace(settings, ca=ca)


def token_key(settings: Settings) -> Pkcs11KeyRef | None:
    """The default listed CA's key when it lives on a PKCS#11 token (it then has no key file)."""
    active = [entry for entry in settings.authorities if not entry.retired]
    for entry in active:
        if (entry.default or len(active) == 1) and isinstance(entry.key, Pkcs11KeyRef):
            return entry.key
    return None


def _defaults(listed: tuple[CaEntry, ...]) -> list[CaEntry]:
    active = [entry for entry in listed if not entry.retired]
    return [entry for entry in active if entry.default or len(active) == 1]


def listed_default(listed: tuple[CaEntry, ...]) -> CaEntry | None:
    """The listed CA of the unlabelled path: the active one marked default, or the only active
    one (None without a list: the `[ca]` section's CA). Settings are checked to have one."""
    defaults = _defaults(listed)
    return defaults[0] if defaults else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], update: Mapping[str, Any], source: str) -> None:
    for key, value in update.items():
        if key not in base:
            raise ConfigurationError(f"unknown setting {key!r} in {source}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"setting {key!r} in {source} must be a table")
            _merge(base[key], value, source)
        else:
            base[key] = value


def _from_environment(env: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """EST_CA_<SECTION>_<KEY> (and EST_CA_<KEY> for top-level keys) as a nested mapping."""
    found: dict[str, Any] = {}
    for key, value in defaults.items():
        if isinstance(value, dict):
            for inner in value:
                name = f"{ENV_PREFIX}{key}_{inner}".upper()
                if name in env:
                    found.setdefault(key, {})[inner] = _parse_env_value(env[name], value[inner])
        else:
            name = f"{ENV_PREFIX}{key}".upper()
            if name in env:
                found[key] = _parse_env_value(env[name], value)
    return found


def _parse_env_value(raw: str, default: Any) -> Any:
    """Environment variables are strings; read them as the type the default has."""
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        return raw  # left for from_mapping to reject with the setting's name
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            return raw
    if isinstance(default, list):
        return [part for part in raw.split(",") if part]
    return raw


def from_mapping(cls: type[T], raw: Mapping[str, Any], prefix: str) -> T:
    """`cls` (a dataclass) from a TOML-shaped mapping; unknown or mistyped keys are errors."""
    unknown = sorted(set(raw) - {field.name for field in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ConfigurationError(f"unknown setting {prefix}{unknown[0]!r}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f"{prefix}{field.name}"
        if field.name not in raw:
            if field.default is not dataclasses.MISSING:
                continue  # optional: the dataclass says what its absence means
            raise ConfigurationError(f"setting {name!r} is missing")
        values[field.name] = _coerce(hints[field.name], raw[field.name], name)
    return cls(**values)


def _coerce(kind: Any, value: Any, name: str) -> Any:
    if kind == KeyRef:
        return _key_ref(value, name)
    if kind == (TokenRef | None):
        return _coerce(TokenRef, value, name)  # TOML has no null: present means a table
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"setting {name!r} must be a table")
        return from_mapping(kind, value, f"{name}.")
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            allowed = ", ".join(repr(a) for a in typing.get_args(kind))
            raise ConfigurationError(f"setting {name!r} must be one of {allowed}")
        return value
    if origin is tuple:
        (item_kind, _ellipsis) = typing.get_args(kind)
        if not isinstance(value, list | tuple):
            raise ConfigurationError(f"setting {name!r} must be a list")
        return tuple(_coerce(item_kind, item, f"{name}[{i}]") for i, item in enumerate(value))
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"setting {name!r} must be a non-empty path")
        return Path(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigurationError(f"setting {name!r} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"setting {name!r} must be an integer")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigurationError(f"setting {name!r} must be a string")
        return value
    raise ConfigurationError(f"setting {name!r} has an unsupported type {kind!r}")


def _key_ref(value: Any, name: str) -> KeyRef:
    """A `{ kind = "...", ... }` table as the variant its kind names."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"setting {name!r} must be a table with a kind")
    kind = value.get("kind")
    variant = KEY_KINDS.get(kind) if isinstance(kind, str) else None
    if variant is None:
        allowed = ", ".join(repr(k) for k in KEY_KINDS)
        raise ConfigurationError(f"setting '{name}.kind' must be one of {allowed}")
    fields = {k: v for k, v in value.items() if k != "kind"}
    ref: KeyRef = from_mapping(variant, fields, f"{name}.")
    return ref


def _check(settings: Settings) -> None:
    if not 0 <= settings.service.port < 65536:
        raise ConfigurationError(
            "setting 'service.port' must be between 0 (any free port) and 65535"
        )
    if not 0 <= settings.admin.port < 65536:
        raise ConfigurationError("setting 'admin.port' must be between 0 and 65535")
    unknown_scopes = set(settings.admin.client_certificate_scopes) - {
        "read",
        "order",
        "revoke",
        "admin",
    }
    if unknown_scopes:
        raise ConfigurationError(
            "setting 'admin.client_certificate_scopes' takes read, order, revoke, admin"
        )
    if settings.ca.demo_key_type not in DEMO_KEY_TYPES:
        raise ConfigurationError(
            f"setting 'ca.demo_key_type' must be one of {', '.join(DEMO_KEY_TYPES)}"
        )
    if not 1 <= settings.service.workers <= 64:
        raise ConfigurationError("setting 'service.workers' must be 1..64")
    if not 0 <= settings.service.http_port < 65536:
        raise ConfigurationError("setting 'service.http_port' must be between 0 and 65535")
    if settings.service.max_body_bytes < 1024:
        raise ConfigurationError("setting 'service.max_body_bytes' must be at least 1024")
    if settings.orders.validity_days < 1:
        raise ConfigurationError("setting 'orders.validity_days' must be at least 1")
    if settings.orders.max_failed_attempts < 1:
        raise ConfigurationError("setting 'orders.max_failed_attempts' must be at least 1")
    if not 1 <= settings.orders.approval_retry_after_seconds <= 86400:
        raise ConfigurationError(
            "setting 'orders.approval_retry_after_seconds' must be from 1 to 86400"
        )
    base = settings.publication.base_url
    if not base and settings.service.http_port == 0:
        raise ConfigurationError(
            "with service.http_port = 0 (any free port) set publication.base_url: certificates "
            "must name the URL where their CRL and OCSP responder are"
        )
    if base and not (base.startswith("http://") and base.isascii() and " " not in base):
        raise ConfigurationError(
            "setting 'publication.base_url' must be a plain http:// URL (relying parties fetch "
            "CRLs and OCSP over HTTP, RFC 5280 and RFC 6960)"
        )
    limits = settings.limits
    if limits.max_concurrent_enrollments < 1:
        raise ConfigurationError("setting 'limits.max_concurrent_enrollments' must be at least 1")
    if limits.failures_per_source < 1 or limits.failure_window_seconds < 1:
        raise ConfigurationError(
            "settings 'limits.failures_per_source' and '.._window_seconds' >= 1"
        )
    if not 1 <= limits.request_timeout_seconds <= 300:
        raise ConfigurationError("setting 'limits.request_timeout_seconds' must be 1..300")
    if not 1024 <= limits.max_header_bytes <= 65536:
        raise ConfigurationError("setting 'limits.max_header_bytes' must be 1024..65536")
    if limits.max_connections_per_source < 1:
        raise ConfigurationError("setting 'limits.max_connections_per_source' must be at least 1")
    revocation = settings.revocation
    if not 1 <= revocation.crl_refresh_hours < revocation.crl_validity_hours <= 240:
        raise ConfigurationError(
            "revocation: need 1 <= crl_refresh_hours < crl_validity_hours <= 240 "
            "(RFC 5280 and the CA/B Forum: a CRL at most 10 days)"
        )
    if not 1 <= revocation.root_crl_validity_days <= 365:
        raise ConfigurationError("setting 'revocation.root_crl_validity_days' must be 1..365")
    if not 1 <= revocation.poll_seconds <= 300:
        raise ConfigurationError("setting 'revocation.poll_seconds' must be 1..300")
    ocsp = settings.ocsp
    if not 8 <= ocsp.response_validity_hours <= 240:
        raise ConfigurationError(
            "setting 'ocsp.response_validity_hours' must be 8..240 (8 hours to 10 days)"
        )
    if revocation.http_max_age_seconds < 0:
        raise ConfigurationError("setting 'revocation.http_max_age_seconds' cannot be negative")
    if not (
        0 < ocsp.responder_renew_days < ocsp.responder_validity_days
        and ocsp.responder_renew_days * 24 > ocsp.response_validity_hours
    ):
        raise ConfigurationError(
            "ocsp: need 0 < responder_renew_days < responder_validity_days, and the renewal "
            "margin longer than a response's validity (no response may outlive its signer)"
        )
