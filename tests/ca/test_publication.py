"""Publication paths: the `[ca]` section's CA keeps issuing.*, a listed CA publishes under its
name, and the served URLs cover every listed CA."""

from __future__ import annotations

from est_ca.ca.publication import Publication

BASE = "http://ca.example"


def test_the_ca_sections_authority_keeps_the_issuing_urls() -> None:
    publication = Publication(base_url=BASE, name_registration_authority=BASE)
    assert publication.issuing_crl_url == f"{BASE}/crl/issuing.crl"
    assert publication.issuing_cert_url == f"{BASE}/cacert/issuing.cer"
    assert publication.root_crl_url == f"{BASE}/crl/root.crl"


def test_a_listed_authority_publishes_under_its_name() -> None:
    publication = Publication(
        base_url=BASE,
        name_registration_authority=BASE,
        issuing_name="people",
        authority_names=("people", "systems"),
    )
    assert publication.issuing_crl_url == f"{BASE}/crl/people.crl"
    assert publication.issuing_cert_url == f"{BASE}/cacert/people.cer"
    assert {f"{BASE}/crl/systems.crl", f"{BASE}/cacert/systems.cer"} <= publication.urls
    assert f"{BASE}/crl/issuing.crl" not in publication.urls
