"""CSR attributes from profiles: what every profile a path serves accepts, as DER CsrAttrs."""

from __future__ import annotations

import dataclasses

from asn1crypto import core, keys

from est_ca.ca.csrattrs import (
    CERTIFICATION_REQUEST_INFO_TEMPLATE,
    CHALLENGE_PASSWORD,
    EC_PUBLIC_KEY,
    RSA_ENCRYPTION,
    CertificationRequestInfoTemplate,
    CsrAttrs,
    csr_attributes,
)
from est_ca.ca.profiles import KeyPolicy, Profile, ProfileCatalogue
from est_ca.ca.signing import HashName, SignatureScheme
from est_ca.config import shipped_config_dir

SHIPPED = ProfileCatalogue.load([shipped_config_dir() / "profiles"])
SYSTEM = SHIPPED.profiles["system"]
SHA256_RSA = "1.2.840.113549.1.1.11"
SHA256_ECDSA = "1.2.840.10045.4.3.2"
SHA384_ECDSA = "1.2.840.10045.4.3.3"
P256 = "1.2.840.10045.3.1.7"
P384 = "1.3.132.0.34"


def profile(
    name: str, rsa: tuple[int, ...] = (), ec: tuple[str, ...] = (), hash_: HashName = "sha256"
) -> Profile:
    return dataclasses.replace(
        SYSTEM,
        name=name,
        keys=KeyPolicy(rsa_sizes=rsa, ec_curves=ec),
        signature=SignatureScheme(algorithm="rsassa-pss", hash=hash_, salt_length=32),
    )


def items(der: bytes | None) -> list[tuple[str, list[core.Asn1Value]]]:
    """(oid, attribute values) for each element; values [] for a bare OID."""
    assert der is not None
    parsed = CsrAttrs.load(der)
    assert parsed.dump(force=True) == der  # strict DER, re-encodes to the same bytes
    result: list[tuple[str, list[core.Asn1Value]]] = []
    for item in parsed:
        if item.name == "oid":
            result.append((item.chosen.dotted, []))
        else:
            attribute = item.chosen
            values = [value.parsed for value in attribute["values"]]
            result.append((attribute["type"].dotted, values))
    return result


def native(values: list[core.Asn1Value]) -> list[object]:
    """Integers as ints, OIDs dotted (asn1crypto's native would name known curves)."""
    return [v.dotted if isinstance(v, core.ObjectIdentifier) else v.native for v in values]


def test_the_shipped_profiles_ask_for_rsa_3072_or_4096_signed_with_sha256() -> None:
    found = items(csr_attributes(SHIPPED.profiles.values()))
    assert [(oid, native(values)) for oid, values in found] == [
        (RSA_ENCRYPTION, [3072, 4096]),
        (SHA256_RSA, []),
    ]


def test_only_the_keys_every_profile_accepts_are_named() -> None:
    found = items(
        csr_attributes(
            [
                profile("a", rsa=(3072, 4096), ec=("P-256",)),
                profile("b", rsa=(4096,), ec=("P-256", "P-384")),
            ]
        )
    )
    named = {oid: native(values) for oid, values in found}
    assert named[RSA_ENCRYPTION] == [4096]
    assert named[EC_PUBLIC_KEY] == [P256]
    assert SHA256_RSA in named
    assert SHA256_ECDSA in named


def test_the_signature_follows_the_profiles_hash_and_key_type() -> None:
    found = items(csr_attributes([profile("ec", ec=("P-256", "P-384"), hash_="sha384")]))
    oids = [oid for oid, _ in found]
    assert oids == [EC_PUBLIC_KEY, SHA384_ECDSA]


def test_profiles_with_different_hashes_name_no_signature() -> None:
    found = items(
        csr_attributes([profile("a", rsa=(3072,)), profile("b", rsa=(3072, 4096), hash_="sha512")])
    )
    assert RSA_ENCRYPTION in [oid for oid, _ in found]
    assert SHA256_RSA not in [oid for oid, _ in found]


def test_profiles_sharing_no_key_and_no_hash_have_nothing_to_say() -> None:
    assert (
        csr_attributes([profile("a", rsa=(3072,)), profile("b", ec=("P-256",), hash_="sha384")])
        is None
    )


def test_no_profiles_have_nothing_to_say() -> None:
    assert csr_attributes([]) is None


def test_channel_binding_asks_for_the_challenge_password_first() -> None:
    found = items(csr_attributes(SHIPPED.profiles.values(), challenge_password=True))
    assert found[0] == (CHALLENGE_PASSWORD, [])


def test_several_acceptable_keys_get_no_template() -> None:
    found = items(csr_attributes([profile("a", rsa=(3072,), ec=("P-256",))]))
    assert CERTIFICATION_REQUEST_INFO_TEMPLATE not in [oid for oid, _ in found]


def template_of(der: bytes | None) -> CertificationRequestInfoTemplate:
    found = dict(items(der))
    (value,) = found[CERTIFICATION_REQUEST_INFO_TEMPLATE]
    template: CertificationRequestInfoTemplate = CertificationRequestInfoTemplate.load(value.dump())
    assert template["version"].native == 0
    assert len(template["attributes"]) == 0
    return template


def test_one_acceptable_curve_adds_an_rfc9908_template_with_that_curve() -> None:
    template = template_of(csr_attributes([profile("ec", ec=("P-384",))]))
    key_info = template["subject_pk_info"]
    assert key_info["algorithm"]["algorithm"].dotted == EC_PUBLIC_KEY
    assert key_info["algorithm"]["parameters"].parsed.dotted == P384
    assert not key_info["subject_public_key"].contents


def test_one_acceptable_rsa_size_adds_a_template_with_a_placeholder_key_of_that_size() -> None:
    template = template_of(csr_attributes([profile("rsa", rsa=(4096,))]))
    key_info = template["subject_pk_info"]
    assert key_info["algorithm"]["algorithm"].dotted == RSA_ENCRYPTION
    placeholder = keys.RSAPublicKey.load(key_info["subject_public_key"].native)
    assert placeholder["modulus"].native.bit_length() == 4096


def test_channel_binding_leaves_the_template_out_as_it_cannot_ask_for_the_password() -> None:
    found = items(csr_attributes([profile("ec", ec=("P-384",))], challenge_password=True))
    oids = [oid for oid, _ in found]
    assert oids == [CHALLENGE_PASSWORD, EC_PUBLIC_KEY, SHA256_ECDSA]
