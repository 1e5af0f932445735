"""The one error family of the domain.

Domain code raises these; protocol layers map them to status codes in exactly one place
(`est_ca.web.errors`). Every message is written for the caller: it says what to fix and never
contains a secret (one-time code, password, key material).

    EstCaError
    ├── ApprovalPending       stored; an administrator must approve it first     (202)
    ├── BadRequest            malformed input or a CSR that policy refuses        (400)
    ├── Unauthenticated       missing or wrong credentials                        (401)
    │   └── CredentialsMissing    none were sent (a client's first, anonymous try)
    ├── NotEntitled           authenticated, but not entitled to this operation   (403)
    │   ├── NoPendingOrder
    │   ├── OrderLocked
    │   └── CertificateNotUsable
    ├── NotFound              the named object does not exist                     (404)
    ├── RequestTimedOut       the client sent its request too slowly              (408)
    ├── Conflict              the object is in a state that forbids the change    (409)
    │   └── AlreadyExists         a record with that key exists (the store's unique keys)
    ├── PayloadTooLarge       the request body is over the cap                    (413)
    ├── UnsupportedMediaType  the request body is of the wrong type               (415)
    ├── RateLimited           too many failures from one source                   (429)
    ├── Unavailable           overloaded or shutting down; try again later        (503)
    └── IssuanceFailed        our own checks stopped a certificate (a bug, not input) (500)
"""

from __future__ import annotations

from pathlib import Path


class EstCaError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def audit_reason(self) -> str:
        """Why a request was refused, as the audit trail records it: the kind and the detail."""
        return f"{type(self).__name__}: {self.detail}"


class ApprovalPending(EstCaError):
    """Not a failure: the request was accepted and waits for an administrator (RFC 7030
    4.2.3). The client retries the same request after the given delay; the protocol layer
    answers 202 with Retry-After. Raised rather than returned so that every handler's
    success path stays "a certificate" and the one status mapping decides the answer."""

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class BadRequest(EstCaError):
    """The request cannot be processed as sent; the detail says what is wrong with it."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthenticated(EstCaError):
    """Credentials are missing or wrong."""


class CredentialsMissing(Unauthenticated):
    """No credentials were sent at all: the challenge EST clients expect before they send some."""


class NotEntitled(EstCaError):
    """The caller is known but has no right to what it asked for."""


class NoPendingOrder(NotEntitled):
    """No order that could be consumed by this enrollment."""


class OrderLocked(NotEntitled):
    """Too many wrong one-time codes; an administrator must unlock the order."""


class CertificateNotUsable(NotEntitled):
    """The presented client certificate is expired, revoked, unknown or superseded."""


class NotFound(EstCaError):
    """The named object does not exist (or the caller may not know that it does)."""


class Conflict(EstCaError):
    """The object's state forbids the requested change."""


class AlreadyExists(Conflict):
    """A write met a unique key someone else holds (often a request that won a race).

    The store raises it for a unique-constraint violation so the domain never sees the
    database library's exceptions; callers that know what collided say so in their own words.
    """


class RequestTimedOut(EstCaError):
    """The request body did not arrive within the time allowed (raised by protocol layers)."""


class PayloadTooLarge(EstCaError):
    """The request body is larger than the service accepts (raised by protocol layers)."""


class UnsupportedMediaType(EstCaError):
    """The request body's content type is not the one the operation takes (protocol layers)."""


class RateLimited(EstCaError):
    """Too many failed attempts from one source; retry after the given delay."""

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(EstCaError):
    """The service cannot take the work now; retry after the given delay."""

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class IssuanceFailed(EstCaError):
    """A pre-issuance check or the signer failed: no certificate was produced, the order kept."""


class ConfigurationError(Exception):
    """The operator's configuration cannot work; raised at start-up, never per request."""


class NoCertificateAuthority(ConfigurationError):
    """A command that may not create a CA found none where the settings point: it says where
    it looked, so an operator in the wrong directory is not handed a new, empty CA."""

    def __init__(self, data_dir: Path, missing: str) -> None:
        self.data_dir = data_dir.resolve()
        self.missing = missing
        super().__init__(f"no CA in {self.data_dir} ({missing})")


class ListenerUnavailable(ConfigurationError):
    """A port the service is configured to listen on cannot be bound (usually: in use)."""
