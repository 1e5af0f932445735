"""Organisations: one record per CVR, kept by the CA's own (unconfined) administrators.

Certificates carry an organisation's name and its identities' email addresses; an
organisation's administrator (a token confined to its CVR) must not be able to choose either.
So the name is the record's, not the identity's, and an email address must lie in one of the
domains the record allows. Only an unconfined administrator creates or changes a record; a
disabled organisation gets no new identities, orders or certificates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from enum import StrEnum

from est_ca.errors import BadRequest
from est_ca.registration.identities import check_cvr, normalise_name

# An LDH host name in its ASCII (IDNA) form: what an rfc822Name's domain can be.
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")
MAX_DOMAINS = 50


class OrganisationStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


def check_domain(value: str) -> str:
    text = value.strip().lower().rstrip(".")
    if not _DOMAIN.fullmatch(text) or text.startswith("-"):
        raise BadRequest(
            f"{value!r} is not a domain name like example.dk (letters like æ, ø, å go in "
            "their IDNA form, xn--...)",
            field="email_domains",
        )
    return text


def check_domains(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    domains = tuple(sorted({check_domain(value) for value in values}))
    if len(domains) > MAX_DOMAINS:
        raise BadRequest(f"at most {MAX_DOMAINS} email domains", field="email_domains")
    return domains


@dataclasses.dataclass(frozen=True)
class Organisation:
    cvr: str
    name: str
    email_domains: tuple[str, ...]
    status: OrganisationStatus
    created_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "cvr", check_cvr(self.cvr))
        object.__setattr__(self, "name", normalise_name(self.name, "name"))
        object.__setattr__(self, "email_domains", check_domains(self.email_domains))

    @property
    def is_active(self) -> bool:
        return self.status is OrganisationStatus.ACTIVE

    def check_email(self, email: str | None) -> None:
        """An identity's address must be in one of the domains this organisation allows."""
        if email is None:
            return
        domain = email.rpartition("@")[2].lower()
        if domain in self.email_domains:
            return
        if not self.email_domains:
            raise BadRequest(
                f"organisation {self.cvr} ({self.name}) allows no email addresses; an "
                "administrator of the CA can add its domains",
                field="email",
            )
        raise BadRequest(
            f"{email} is not in a domain of organisation {self.cvr} ({self.name}); "
            f"allowed: {', '.join(self.email_domains)}",
            field="email",
        )

    def require_active(self) -> None:
        if not self.is_active:
            raise BadRequest(f"organisation {self.cvr} ({self.name}) is disabled", field="cvr")

    def admit(self, organisation_name: str | None) -> None:
        """A new identity of this organisation: it must be active, and a name the request
        gives (callers of earlier versions sent one) must be the registered one."""
        self.require_active()
        if organisation_name is not None and (
            normalise_name(organisation_name, "organisation_name") != self.name
        ):
            raise BadRequest(
                f"organisation {self.cvr} is registered as {self.name!r}; identities take that "
                "name (leave organisation_name out)",
                field="organisation_name",
            )

    def updated(
        self,
        *,
        name: str | None = None,
        email_domains: tuple[str, ...] | None = None,
        status: OrganisationStatus | None = None,
    ) -> Organisation:
        return dataclasses.replace(
            self,
            name=self.name if name is None else name,
            email_domains=self.email_domains if email_domains is None else email_domains,
            status=self.status if status is None else status,
        )
