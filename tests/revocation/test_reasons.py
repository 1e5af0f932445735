"""Revocation reasons: the RFC 5280 set we offer, and "unspecified" written as no reason."""

from __future__ import annotations

import pytest
from cryptography import x509

from est_ca.errors import BadRequest
from est_ca.revocation.reasons import RevocationReason


def test_unspecified_is_published_as_no_reason() -> None:
    """The store keeps it as no reason too: tests/store/test_store.py."""
    assert RevocationReason.UNSPECIFIED.flag is None


def test_each_other_reason_has_its_rfc_5280_code() -> None:
    assert RevocationReason.KEY_COMPROMISE.flag is x509.ReasonFlags.key_compromise
    assert RevocationReason.CESSATION_OF_OPERATION.flag is x509.ReasonFlags.cessation_of_operation


@pytest.mark.parametrize("text", ["keyCompromise", "key-compromise", "KEY_COMPROMISE"])
def test_reasons_are_read_in_the_spellings_people_type(text: str) -> None:
    assert RevocationReason.parse(text) is RevocationReason.KEY_COMPROMISE


@pytest.mark.parametrize("text", ["certificateHold", "removeFromCRL", "caCompromise", "because"])
def test_hold_and_ca_reasons_are_not_offered(text: str) -> None:
    with pytest.raises(BadRequest, match="unknown revocation reason"):
        RevocationReason.parse(text)
