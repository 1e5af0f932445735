"""CA labels (RFC 7030 3.2.2): which CA an enrollment under /.well-known/est/<label>/ goes to,
and which profiles it may use there.

`CaLabels` knows no keys, so the administrative commands (which never sign) check orders
against the same labels the server enrolls with. `LabelledCa` adds the CAs: the one that signs
under the label now and the earlier generations a rollover retired, whose certificates still
renew under the label (to the current CA).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cryptography import x509

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.certificates import KeyId
from est_ca.ca.issuer import Issuer
from est_ca.errors import NotFound


@dataclasses.dataclass(frozen=True)
class CaLabel:
    """A label and the profiles orders under it may name (empty: every profile).

    `require_channel_binding`: a policy of the label rather than of a profile, because the
    binding belongs to the EST endpoint's TLS connection, not to what is issued: it is checked
    before the request reaches the registration authority (the order, and so its profile, is
    known only once that has authenticated it), and the label's csrattrs can say it exactly."""

    name: str
    profiles: frozenset[str] = frozenset()
    require_channel_binding: bool = False

    def __post_init__(self) -> None:
        if not (self.name and self.name.isascii() and self.name.replace("-", "").isalnum()):
            raise ValueError(f"a CA label is letters, digits and '-', not {self.name!r}")

    def allows(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles


@dataclasses.dataclass(frozen=True)
class CaLabels:
    """Every label served; `default` is the one of the unlabelled EST path."""

    labels: tuple[CaLabel, ...]
    default: str

    def __post_init__(self) -> None:
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            raise ValueError("a CA label is served once")
        if self.default not in names:
            raise ValueError(f"the default label {self.default!r} is not served")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    def get(self, name: str | None) -> CaLabel:
        """The label `name` (None: the default one); an unknown label is not found (404)."""
        wanted = self.default if name is None else name
        for label in self.labels:
            if label.name == wanted:
                return label
        shown = wanted if len(wanted) <= 64 else wanted[:64] + "..."
        raise NotFound(f"no CA label {shown!r} here; labels served: {', '.join(self.names)}")


@dataclasses.dataclass(frozen=True)
class LabelledCa:
    """A label with its CAs: `issuer` signs under it now; `earlier` are the generations it
    replaced (their certificates authenticate and renew here, to the current CA)."""

    label: CaLabel
    issuer: Issuer
    earlier: tuple[CertificateAuthority, ...] = ()

    @property
    def ca(self) -> CertificateAuthority:
        return self.issuer.ca

    @property
    def cas(self) -> tuple[CertificateAuthority, ...]:
        return (self.issuer.ca, *self.earlier)

    def issued(self, key_id: KeyId) -> bool:
        """Whether a certificate naming this issuer key id came from a CA of this label."""
        return any(ca.key_id == key_id for ca in self.cas)


def trusted_certificates(labelled: Iterable[LabelledCa]) -> list[x509.Certificate]:
    """Every CA certificate a client certificate of ours may chain to (all labels, all
    generations, with their chains), each once: what TLS client authentication trusts."""
    found: list[x509.Certificate] = []
    for entry in labelled:
        for ca in entry.cas:
            for certificate in ca.certificates:
                if certificate not in found:
                    found.append(certificate)
    return found
