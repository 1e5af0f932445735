"""Turning an issuance request into a signed certificate: build, check the draft, sign once."""

from __future__ import annotations

from cryptography import x509

from est_ca.ca.authority import CertificateAuthority
from est_ca.ca.building import IssuanceRequest, certificate_builder
from est_ca.ca.precheck import check_draft
from est_ca.ca.publication import Publication
from est_ca.ca.signing import draft_certificate, signed_with
from est_ca.errors import IssuanceFailed, Unavailable


class Issuer:
    """The CA's signing step. It takes requests only from the registration authority, which
    has already decided who is entitled; it decides only what is well-formed."""

    def __init__(self, ca: CertificateAuthority, publication: Publication) -> None:
        self.ca = ca
        self.publication = publication

    def produce(self, request: IssuanceRequest) -> x509.Certificate:
        """Blocking (two private-key operations): run it on a worker thread."""
        scheme = request.profile.signature
        if not scheme.fits(self.ca.signer.public_key):
            raise IssuanceFailed(
                f"profile {request.profile.name!r} signs with {scheme.algorithm}, "
                "which the CA key cannot do"
            )
        draft = draft_certificate(certificate_builder(request, self.ca, self.publication), scheme)
        check_draft(draft, request, self.ca, self.publication)
        try:
            return signed_with(draft, self.ca.signer, scheme)
        except Unavailable:
            raise  # the key's token is away: 503, try again later (the order is kept)
        except Exception as exc:
            raise IssuanceFailed("the CA key failed to sign") from exc
