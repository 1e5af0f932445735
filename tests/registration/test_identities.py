"""Identity records are validated once, at construction; the subject is built from them."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest

from est_ca.errors import BadRequest
from est_ca.registration.identities import Identity, IdentityType

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def user(**overrides: str | None) -> Identity:
    values: dict[str, str | None] = {
        "organisation_name": "Testorganisation",
        "cvr": "96908409",
        "given_name": "Søren",
        "surname": "Ærø Ålborg",
        "email": "soren@example.dk",
    }
    values.update(overrides)
    return Identity.create(type=IdentityType.USER, created_at=NOW, **values)  # type: ignore[arg-type]


def test_a_users_display_name_defaults_to_the_full_name() -> None:
    assert user().display_name == "Søren Ærø Ålborg"


def test_danish_letters_are_kept_exactly() -> None:
    identity = user(organisation_name="ÆØÅ ApS")
    assert identity.organisation_name == "ÆØÅ ApS"
    assert identity.surname == "Ærø Ålborg"


def test_decomposed_letters_are_stored_composed() -> None:
    decomposed = unicodedata.normalize("NFD", "Ærø Ålborg")
    assert user(surname=decomposed).surname == "Ærø Ålborg"


@pytest.mark.parametrize("cvr", ["1234567", "123456789", "1234567a", "", "1234 678"])
def test_a_cvr_must_be_eight_digits(cvr: str) -> None:
    with pytest.raises(BadRequest, match="8 digits") as error:
        user(cvr=cvr)
    assert error.value.field == "cvr"


@pytest.mark.parametrize(
    "email",
    ["æøå@example.dk", "søren@example.dk", "soren@ålborg.dk", "no-at-sign", "a@b", "a b@c.dk"],
)
def test_an_email_that_cannot_be_an_rfc822name_is_refused(email: str) -> None:
    with pytest.raises(BadRequest) as error:
        user(email=email)
    assert error.value.field == "email"


def test_the_refusal_of_a_danish_email_explains_ia5() -> None:
    with pytest.raises(BadRequest, match="IA5String"):
        user(email="æøå@example.dk")


@pytest.mark.parametrize("missing", ["given_name", "surname", "email"])
def test_a_user_needs_names_and_email(missing: str) -> None:
    with pytest.raises(BadRequest):
        user(**{missing: None})


def test_a_name_longer_than_a_certificate_allows_is_refused() -> None:
    with pytest.raises(BadRequest, match="at most 64"):
        user(organisation_name="x" * 65)


def test_control_characters_in_names_are_refused() -> None:
    with pytest.raises(BadRequest, match="control characters"):
        user(given_name="Lars\u0000")


def test_an_organisation_needs_a_display_name() -> None:
    with pytest.raises(BadRequest, match="display_name"):
        Identity.create(
            type=IdentityType.ORGANISATION,
            organisation_name="ÆØÅ ApS",
            cvr="99999999",
            created_at=NOW,
        )
