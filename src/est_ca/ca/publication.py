"""Where relying parties find what we publish: the URLs certificates carry, and their paths.

The plain-HTTP listener serves exactly these paths, and the certificates name exactly these
URLs, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses

# Paths under the public base URL.
OCSP_PATH = "/ocsp"
ISSUING_CRL_PATH = "/crl/issuing.crl"
ROOT_CRL_PATH = "/crl/root.crl"
ISSUING_CERT_PATH = "/cacert/issuing.cer"
ROOT_CERT_PATH = "/cacert/root.cer"


@dataclasses.dataclass(frozen=True)
class Publication:
    base_url: str
    name_registration_authority: str

    def __post_init__(self) -> None:
        if not self.base_url.startswith("http://") or self.base_url.endswith("/"):
            raise ValueError(
                "the publication base URL is http://host[:port][/path], no slash at the end"
            )

    @property
    def ocsp_url(self) -> str:
        return self.base_url + OCSP_PATH

    @property
    def issuing_crl_url(self) -> str:
        return self.base_url + ISSUING_CRL_PATH

    @property
    def root_crl_url(self) -> str:
        return self.base_url + ROOT_CRL_PATH

    @property
    def issuing_cert_url(self) -> str:
        return self.base_url + ISSUING_CERT_PATH

    @property
    def root_cert_url(self) -> str:
        return self.base_url + ROOT_CERT_PATH
