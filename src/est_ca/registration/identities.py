"""Identities: the people, organisations and systems an administrator registered.

A certificate's subject is built from the identity record, never from the CSR, so the record is
validated here, once, at construction: every later step can trust it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
import uuid
from enum import StrEnum

from est_ca.errors import BadRequest

# X.520 upper bounds cryptography enforces for CN and O; we hold every name to them.
MAX_NAME_LENGTH = 64
# RFC 5280 ub-emailaddress-length.
MAX_EMAIL_LENGTH = 255

_CVR = re.compile(r"[0-9]{8}")
# RFC 5322 dot-atom local part and an LDH host name: what fits an rfc822Name (IA5String).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(\.{_ATEXT})*")
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class IdentityType(StrEnum):
    USER = "user"
    ORGANISATION = "organisation"
    SYSTEM = "system"


class IdentityStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    # Written by a bulk import that has not finished: usable by no one until the import's
    # last transaction makes the whole file active at once (or its cleanup removes it).
    STAGED = "staged"


def normalise_name(value: str, field: str) -> str:
    """NFC-normalised, trimmed, printable, 1..64 characters; Danish letters kept as given."""
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise BadRequest(f"{field} must not be empty", field=field)
    if len(text) > MAX_NAME_LENGTH:
        raise BadRequest(
            f"{field} is {len(text)} characters; at most {MAX_NAME_LENGTH} fit a certificate",
            field=field,
        )
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise BadRequest(f"{field} must not contain control characters", field=field)
    return text


def check_cvr(value: str) -> str:
    text = value.strip()
    if not _CVR.fullmatch(text):
        raise BadRequest("CVR must be exactly 8 digits", field="cvr")
    return text


def check_external_id(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 200 or not text.isprintable():
        raise BadRequest("external_id is 1 to 200 printable characters", field="external_id")
    return text


def check_email(value: str) -> str:
    """An address that can go into an rfc822Name: ASCII only (IA5String), local@host."""
    text = value.strip()
    if not text.isascii():
        raise BadRequest(
            "email must be ASCII: an rfc822Name is an IA5String, so letters like æ, ø, å "
            "cannot be in the address (use the IDNA form of the domain, xn--...)",
            field="email",
        )
    if len(text) > MAX_EMAIL_LENGTH:
        raise BadRequest(f"email is longer than {MAX_EMAIL_LENGTH} characters", field="email")
    local, at, domain = text.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or not _LOCAL_PART.fullmatch(local)
        or len(local) > 64
        or len(labels) < 2
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
    ):
        raise BadRequest("email must be an address like name@example.dk", field="email")
    return text


@dataclasses.dataclass(frozen=True)
class Identity:
    """A registered subscriber. `display_name` becomes the certificate's CN; the organisation
    name (its O) is the organisation record's, read with the identity, never the identity's."""

    id: uuid.UUID
    type: IdentityType
    display_name: str
    organisation_name: str
    cvr: str
    given_name: str | None
    surname: str | None
    email: str | None
    status: IdentityStatus
    created_at: dt.datetime
    # The organisation's own id for this person or system (bulk imports are idempotent on it).
    external_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "display_name", normalise_name(self.display_name, "display_name"))
        object.__setattr__(
            self, "organisation_name", normalise_name(self.organisation_name, "organisation_name")
        )
        object.__setattr__(self, "cvr", check_cvr(self.cvr))
        if self.type is IdentityType.USER:
            if self.given_name is None or self.surname is None:
                raise BadRequest("a user needs a given name and a surname", field="given_name")
            if self.email is None:
                raise BadRequest("a user needs an email address", field="email")
        for field in ("given_name", "surname"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, normalise_name(value, field))
        if self.email is not None:
            object.__setattr__(self, "email", check_email(self.email))
        if self.external_id is not None:
            object.__setattr__(self, "external_id", check_external_id(self.external_id))

    @classmethod
    def create(
        cls,
        *,
        type: IdentityType,
        organisation_name: str,
        cvr: str,
        created_at: dt.datetime,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
        external_id: str | None = None,
    ) -> Identity:
        """A new identity with a UUID we assign; a user's display name defaults to the full name."""
        if type is IdentityType.USER and not (
            (given_name or "").strip() and (surname or "").strip()
        ):
            raise BadRequest("a user needs a given name and a surname", field="given_name")
        if display_name is None or not display_name.strip():
            if type is IdentityType.USER and given_name and surname:
                display_name = f"{given_name.strip()} {surname.strip()}"
            else:
                raise BadRequest("display_name is required", field="display_name")
        return cls(
            id=uuid.uuid4(),
            type=type,
            display_name=display_name,
            organisation_name=organisation_name,
            cvr=cvr,
            given_name=given_name or None,
            surname=surname or None,
            email=email or None,
            status=IdentityStatus.ACTIVE,
            created_at=created_at,
            external_id=external_id or None,
        )

    def updated(
        self,
        *,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        email: str | None = None,
    ) -> Identity:
        """A copy with the given names or email changed, validated like a new record."""
        changes = {
            name: value
            for name, value in (
                ("display_name", display_name),
                ("given_name", given_name),
                ("surname", surname),
                ("email", email),
            )
            if value is not None
        }
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_active(self) -> bool:
        return self.status is IdentityStatus.ACTIVE
