"""Where relying parties find what we publish: the URLs certificates carry, and their paths.

The plain-HTTP listener serves exactly these paths, and the certificates name exactly these
URLs, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

from cryptography import x509

# The names the `[ca]` section's CA and its root publish under; a listed authority publishes
# under its own name, so certificates issued before CAs were listed keep valid URLs.
ISSUING = "issuing"
ROOT = "root"


def crl_path(name: str) -> str:
    """Where the CA called `name` publishes its CRL (one issuer per CRL, RFC 5280)."""
    return f"/crl/{name}.crl"


def cert_path(name: str) -> str:
    """Where the certificate of the CA called `name` is served (caIssuers)."""
    return f"/cacert/{name}.cer"


# Paths under the public base URL.
OCSP_PATH = "/ocsp"
ISSUING_CRL_PATH = crl_path(ISSUING)
ROOT_CRL_PATH = crl_path(ROOT)
ISSUING_CERT_PATH = cert_path(ISSUING)
ROOT_CERT_PATH = cert_path(ROOT)


@dataclasses.dataclass(frozen=True)
class Publication:
    base_url: str
    name_registration_authority: str
    # The CA whose certificates this publication's URLs go into (the default authority).
    issuing_name: str = ISSUING
    # Every CA served besides the root: their CRLs and certificates are published too.
    authority_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.base_url.startswith("http://") or self.base_url.endswith("/"):
            raise ValueError(
                "the publication base URL is http://host[:port][/path], no slash at the end"
            )

    @property
    def ocsp_url(self) -> str:
        return self.base_url + OCSP_PATH

    def crl_url(self, name: str) -> str:
        return self.base_url + crl_path(name)

    def cert_url(self, name: str) -> str:
        return self.base_url + cert_path(name)

    @property
    def issuing_crl_url(self) -> str:
        return self.crl_url(self.issuing_name)

    @property
    def root_crl_url(self) -> str:
        return self.base_url + ROOT_CRL_PATH

    @property
    def issuing_cert_url(self) -> str:
        return self.cert_url(self.issuing_name)

    @property
    def root_cert_url(self) -> str:
        return self.base_url + ROOT_CERT_PATH

    @property
    def urls(self) -> frozenset[str]:
        names = {self.issuing_name, ROOT, *self.authority_names}
        return frozenset(
            (
                self.ocsp_url,
                *(self.crl_url(name) for name in names),
                *(self.cert_url(name) for name in names),
            )
        )

    def unpublished_urls(self, certificate: x509.Certificate) -> list[str]:
        """The URLs `certificate` sends relying parties to that this publication does not
        serve: a CA certificate made under another base URL keeps naming it for ever."""
        return [url for url in published_urls(certificate) if url not in self.urls]


def published_urls(certificate: x509.Certificate) -> list[str]:
    """The CRL distribution point and authority information access URLs a certificate names."""
    urls: list[str] = []
    extensions = certificate.extensions
    with contextlib.suppress(x509.ExtensionNotFound):
        for point in extensions.get_extension_for_class(x509.CRLDistributionPoints).value:
            urls.extend(_uris(point.full_name or ()))
    with contextlib.suppress(x509.ExtensionNotFound):
        access = extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        urls.extend(_uris(description.access_location for description in access))
    return urls


def _uris(names: Iterable[x509.GeneralName]) -> list[str]:
    return [name.value for name in names if isinstance(name, x509.UniformResourceIdentifier)]
