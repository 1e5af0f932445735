"""The admin views: what a client sent is shown to administrators without control characters."""

from __future__ import annotations

import datetime as dt
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from est_ca.admin.views import request_view
from est_ca.registration.approvals import EnrollmentRequest
from tests.helpers import KeyPool


def test_a_csr_subject_with_terminal_controls_is_shown_escaped(keys: KeyPool) -> None:
    """The approver reads the subject in a terminal (`est-ca request list`): ESC and CR from
    a client's CSR must not reach it as such."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil\x1b[2K\rtrusted\u200b")])
        )
        .sign(keys.ec(0).key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    request = EnrollmentRequest.submit(
        order_id=uuid.uuid4(),
        order_reference="REF",
        identity_id=uuid.uuid4(),
        csr_der=csr,
        now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    shown = request_view(request)["csr_subject"]
    assert shown == "CN=evil\\u001b[2K\\u000dtrusted\\u200b"
    assert shown.isprintable()
