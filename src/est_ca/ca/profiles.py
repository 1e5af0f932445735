"""Certificate profiles: data in ca-config/profiles/*.toml, read and validated at start-up.

A profile is everything that decides what a certificate of one type looks like. An operator adds
a profile by dropping a TOML file into a profile directory; no code changes. Each file is checked
completely when the service starts, so a typo stops the start instead of a later enrollment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from cryptography import x509

from est_ca.ca.signing import SignatureScheme
from est_ca.config import from_mapping
from est_ca.errors import ConfigurationError
from est_ca.registration.identities import IdentityType

# The subject attributes a profile can compose, and where each value comes from (ca/building.py).
SUBJECT_ATTRIBUTES = (
    "country",
    "organization_identifier",
    "organization",
    "serial_number",
    "surname",
    "given_name",
    "common_name",
)
KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
)
EC_CURVES = ("P-256", "P-384", "P-521")
EmailSan = Literal["required", "if-present", "never"]
# How long a renewed certificate stays valid beside its successor, when a profile does not say.
DEFAULT_RENEWAL_GRACE_HOURS = 24
DEFAULT_RENEWAL_GRACE = dt.timedelta(hours=DEFAULT_RENEWAL_GRACE_HOURS)
MAX_RENEWAL_GRACE_HOURS = 24 * 30


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """One kind of key: an elliptic curve by name, or an RSA modulus size."""

    algorithm: Literal["ec", "rsa"]
    parameter: str | int

    @property
    def description(self) -> str:
        return f"ECDSA {self.parameter}" if self.algorithm == "ec" else f"RSA {self.parameter}"


@dataclasses.dataclass(frozen=True)
class KeyPolicy:
    """The subscriber keys a profile accepts."""

    rsa_sizes: tuple[int, ...]
    ec_curves: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.rsa_sizes and not self.ec_curves:
            raise ConfigurationError("a key policy must allow at least one key type")
        for size in self.rsa_sizes:
            if size < 2048 or size > 16384 or size % 8:
                raise ConfigurationError(f"RSA key size {size} is not a sensible size")
        for curve in self.ec_curves:
            if curve not in EC_CURVES:
                raise ConfigurationError(f"unknown curve {curve!r}; known: {', '.join(EC_CURVES)}")

    def accepts(self, spec: KeySpec) -> bool:
        if spec.algorithm == "ec":
            return spec.parameter in self.ec_curves
        return spec.parameter in self.rsa_sizes

    @property
    def choices(self) -> tuple[KeySpec, ...]:
        """Every key this policy accepts, in the order the service would generate one (EST
        serverkeygen): the curves as `ec_curves` lists them, then the sizes as `rsa_sizes`
        lists them. The operator's order decides; curves go first because an elliptic-curve
        key costs microseconds to make where an RSA key costs a large part of a second."""
        return tuple(KeySpec("ec", curve) for curve in self.ec_curves) + tuple(
            KeySpec("rsa", size) for size in self.rsa_sizes
        )


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a certificate of one type looks like (see ca-config/profiles/*.toml for meanings)."""

    name: str
    identity_type: IdentityType
    description: str
    validity_days: int
    policies: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    subject: tuple[str, ...]
    country: str
    organization_identifier_prefix: str
    serial_number_prefix: str
    email_san: EmailSan
    qc_semantics_identifier: str
    keys: KeyPolicy
    signature: SignatureScheme
    # After a renewal, the predecessor is revoked (superseded) when this much time has passed
    # since its successor was issued; 0 revokes it at once.
    renewal_grace_hours: int = DEFAULT_RENEWAL_GRACE_HOURS
    # EST serverkeygen (RFC 7030 4.4): may the service generate the subscriber's key pair
    # and hand out the private key? Off unless the profile says so.
    server_key_generation: bool = False

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        if not 0 <= self.renewal_grace_hours <= MAX_RENEWAL_GRACE_HOURS:
            raise ConfigurationError(
                f"{where}: renewal_grace_hours must be 0..{MAX_RENEWAL_GRACE_HOURS}"
            )
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigurationError(f"{where}: a name is letters, digits, '-' and '_'")
        if not 1 <= self.validity_days <= 3660:
            raise ConfigurationError(f"{where}: validity_days must be 1..3660")
        semantics = (self.qc_semantics_identifier,) if self.qc_semantics_identifier else ()
        for oid in (*self.policies, *self.extended_key_usage, *semantics):
            try:
                x509.ObjectIdentifier(oid)
            except ValueError as exc:
                raise ConfigurationError(f"{where}: {oid!r} is not an OID") from exc
        unknown_usage = set(self.key_usage) - set(KEY_USAGES)
        if unknown_usage or not self.key_usage:
            raise ConfigurationError(
                f"{where}: key_usage must be a non-empty list of {', '.join(KEY_USAGES)}"
            )
        unknown_attributes = set(self.subject) - set(SUBJECT_ATTRIBUTES)
        if unknown_attributes or len(set(self.subject)) != len(self.subject):
            raise ConfigurationError(
                f"{where}: subject lists each of {', '.join(SUBJECT_ATTRIBUTES)} at most once"
            )
        if "common_name" not in self.subject:
            raise ConfigurationError(f"{where}: the subject needs a common_name")
        if self.identity_type is not IdentityType.USER and (
            {"given_name", "surname"} & set(self.subject)
        ):
            raise ConfigurationError(f"{where}: only user profiles can have given_name/surname")
        if len(self.country) != 2 or not self.country.isascii() or not self.country.isupper():
            raise ConfigurationError(f"{where}: country is a two-letter code like DK")
        if not self.serial_number_prefix.isascii():
            raise ConfigurationError(f"{where}: serial_number_prefix must be PrintableString")
        if self.email_san not in ("required", "if-present", "never"):
            raise ConfigurationError(f"{where}: email_san is required, if-present or never")

    @property
    def renewal_grace(self) -> dt.timedelta:
        return dt.timedelta(hours=self.renewal_grace_hours)

    @property
    def validity_seconds(self) -> int:
        """RFC 5280 validity is inclusive: N days of validity end one second before day N."""
        return self.validity_days * 86400 - 1


@dataclasses.dataclass(frozen=True)
class _KeysFile:
    rsa_sizes: tuple[int, ...]
    ec_curves: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _SignatureFile:
    algorithm: str
    hash: str
    salt_length: int


@dataclasses.dataclass(frozen=True)
class _ProfileFile:
    """The TOML file's shape; `Profile` adds the meaning."""

    name: str
    identity_type: str
    description: str
    validity_days: int
    policies: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    subject: tuple[str, ...]
    country: str
    organization_identifier_prefix: str
    serial_number_prefix: str
    email_san: str
    qc_semantics_identifier: str
    keys: _KeysFile
    signature: _SignatureFile
    renewal_grace_hours: int = DEFAULT_RENEWAL_GRACE_HOURS
    server_key_generation: bool = False


def profile_from_mapping(raw: Mapping[str, object], source: str) -> Profile:
    try:
        data = from_mapping(_ProfileFile, raw, "")
        identity_type = IdentityType(data.identity_type)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc
    except ValueError as exc:
        raise ConfigurationError(
            f"{source}: identity_type must be one of {', '.join(t.value for t in IdentityType)}"
        ) from exc
    algorithm = data.signature.algorithm
    if algorithm not in ("rsassa-pss", "rsa-pkcs1v15", "ecdsa"):
        raise ConfigurationError(f"{source}: unknown signature algorithm {algorithm!r}")
    if data.signature.hash not in ("sha256", "sha384", "sha512"):
        raise ConfigurationError(f"{source}: unknown signature hash {data.signature.hash!r}")
    try:
        return Profile(
            name=data.name,
            identity_type=identity_type,
            description=data.description,
            validity_days=data.validity_days,
            policies=data.policies,
            key_usage=data.key_usage,
            extended_key_usage=data.extended_key_usage,
            subject=data.subject,
            country=data.country,
            organization_identifier_prefix=data.organization_identifier_prefix,
            serial_number_prefix=data.serial_number_prefix,
            email_san=data.email_san,  # type: ignore[arg-type]  # checked in Profile
            qc_semantics_identifier=data.qc_semantics_identifier,
            keys=KeyPolicy(rsa_sizes=data.keys.rsa_sizes, ec_curves=data.keys.ec_curves),
            signature=SignatureScheme(
                algorithm=algorithm,  # type: ignore[arg-type]  # checked above
                hash=data.signature.hash,  # type: ignore[arg-type]  # checked above
                salt_length=data.signature.salt_length if algorithm == "rsassa-pss" else None,
            ),
            renewal_grace_hours=data.renewal_grace_hours,
            server_key_generation=data.server_key_generation,
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class ProfileCatalogue:
    """All profiles by name, and the default profile for each identity type."""

    profiles: Mapping[str, Profile]

    @classmethod
    def load(cls, directories: Iterable[Path]) -> ProfileCatalogue:
        """Every *.toml in the directories, in order; a later file of the same name wins."""
        found: dict[str, Profile] = {}
        for directory in directories:
            if not directory.is_dir():
                raise ConfigurationError(f"profile directory {directory} does not exist")
            for path in sorted(directory.glob("*.toml")):
                try:
                    with path.open("rb") as handle:
                        raw = tomllib.load(handle)
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
                profile = profile_from_mapping(raw, str(path))
                found[profile.name] = profile
        if not found:
            raise ConfigurationError("no certificate profiles found")
        return cls(profiles=found)

    def get(self, name: str) -> Profile | None:
        return self.profiles.get(name)

    def default_for(self, identity_type: IdentityType) -> Profile | None:
        """The profile named after the identity type (user, organisation, system)."""
        profile = self.profiles.get(identity_type.value)
        if profile is not None and profile.identity_type is identity_type:
            return profile
        return None
