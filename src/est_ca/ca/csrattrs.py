"""What a client should put in its CSR (EST csrattrs, RFC 7030 4.5 as clarified by RFC 9908).

A pure function of the profiles a request may be enrolled under: the public keys every one of
them accepts, and the hash they share for the CSR's own signature. The profile is not known
before an enrollment authenticates (an order names it), so a path that serves several profiles
says only what holds for all of them; a CA label (one set of profiles) calls it with its own.

The answer is the RFC 7030 list that libest's and GlobalSign's clients parse: rsaEncryption with
the accepted modulus sizes, id-ecPublicKey with the accepted curves, and the signature algorithm
OIDs. When the accepted keys come down to one choice, an RFC 9908 CertificationRequestInfo
template is added after them: a client that reads templates uses that alone, and older clients
skip an attribute they do not know. The template cannot offer alternatives (one key type, one
size), so with several acceptable keys it is left out rather than narrowing what we accept; nor
can it name the CSR's signature algorithm, which every hash our CSR policy accepts makes a hint.
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import algos, core, keys

from est_ca.ca.profiles import EC_CURVES, Profile
from est_ca.ca.signing import HashName

CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - the attribute's OID
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
# RFC 9908 section 3.4 (IANA: SMI Security for S/MIME Attributes, csrinfo).
CERTIFICATION_REQUEST_INFO_TEMPLATE = "1.2.840.113549.1.9.16.2.61"

_CURVE_OIDS = {
    "P-256": "1.2.840.10045.3.1.7",
    "P-384": "1.3.132.0.34",
    "P-521": "1.3.132.0.35",
}
_RSA_SIGNATURES = {
    "sha256": "1.2.840.113549.1.1.11",
    "sha384": "1.2.840.113549.1.1.12",
    "sha512": "1.2.840.113549.1.1.13",
}
_ECDSA_SIGNATURES = {
    "sha256": "1.2.840.10045.4.3.2",
    "sha384": "1.2.840.10045.4.3.3",
    "sha512": "1.2.840.10045.4.3.4",
}
_RSA_EXPONENT = 65537


class AttributeValues(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", AttributeValues)]  # noqa: RUF012


class AttrOrOID(core.Choice):  # type: ignore[misc]
    _alternatives = [  # noqa: RUF012 - asn1crypto's schema attribute
        ("oid", core.ObjectIdentifier),
        ("attribute", Attribute),
    ]


class CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    """RFC 7030 4.5.2: CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID."""

    _child_spec = AttrOrOID


class SubjectPublicKeyInfoTemplate(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012
        ("algorithm", algos.AlgorithmIdentifier),
        ("subject_public_key", core.OctetBitString, {"optional": True}),
    ]


class Attributes(core.SetOf):  # type: ignore[misc]
    _child_spec = Attribute


class CertificationRequestInfoTemplate(core.Sequence):  # type: ignore[misc]
    """RFC 9908: a PKCS#10 CertificationRequestInfo with the parts the server fixes (module
    DEFINITIONS IMPLICIT TAGS)."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("subject_pk_info", SubjectPublicKeyInfoTemplate, {"implicit": 0, "optional": True}),
        ("attributes", Attributes, {"implicit": 1}),
    ]


def _common_keys(profiles: list[Profile]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    rsa = set(profiles[0].keys.rsa_sizes)
    ec = set(profiles[0].keys.ec_curves)
    for profile in profiles[1:]:
        rsa &= set(profile.keys.rsa_sizes)
        ec &= set(profile.keys.ec_curves)
    return tuple(sorted(rsa)), tuple(curve for curve in EC_CURVES if curve in ec)


def _common_hash(profiles: list[Profile]) -> HashName | None:
    hashes = {profile.signature.hash for profile in profiles}
    return hashes.pop() if len(hashes) == 1 else None


def _attribute(oid: str, values: Iterable[core.Asn1Value]) -> AttrOrOID:
    return AttrOrOID(
        name="attribute", value=Attribute({"type": oid, "values": [core.Any(v) for v in values]})
    )


def _oid(oid: str) -> AttrOrOID:
    return AttrOrOID(name="oid", value=core.ObjectIdentifier(oid))


def _template(rsa_sizes: tuple[int, ...], ec_curves: tuple[str, ...]) -> AttrOrOID | None:
    """The RFC 9908 template when exactly one key is acceptable; None otherwise. An RSA size is
    stated, as RFC 9908 asks, by a placeholder public key of that modulus length."""
    if len(rsa_sizes) + len(ec_curves) != 1:
        return None
    if ec_curves:
        algorithm = algos.AlgorithmIdentifier(
            {
                "algorithm": EC_PUBLIC_KEY,
                "parameters": core.ObjectIdentifier(_CURVE_OIDS[ec_curves[0]]),
            }
        )
        key_info = SubjectPublicKeyInfoTemplate({"algorithm": algorithm})
    else:
        bits = rsa_sizes[0]
        placeholder = keys.RSAPublicKey(
            {"modulus": 2 ** (bits - 1) + 1, "public_exponent": _RSA_EXPONENT}
        )
        key_info = SubjectPublicKeyInfoTemplate(
            {
                "algorithm": algos.AlgorithmIdentifier(
                    {"algorithm": RSA_ENCRYPTION, "parameters": core.Null()}
                ),
                "subject_public_key": placeholder.dump(),
            }
        )
    template = CertificationRequestInfoTemplate(
        {"version": 0, "subject_pk_info": key_info, "attributes": []}
    )
    return _attribute(CERTIFICATION_REQUEST_INFO_TEMPLATE, [template])


def csr_attributes(
    profiles: Iterable[Profile], *, challenge_password: bool = False
) -> bytes | None:
    """DER CsrAttrs for a request that may be enrolled under any of `profiles`; None when there
    is nothing to say (EST answers 204). `challenge_password` asks for the channel binding."""
    chosen = list(profiles)
    if not chosen:
        return None
    rsa_sizes, ec_curves = _common_keys(chosen)
    hash_name = _common_hash(chosen)
    items: list[AttrOrOID] = []
    if challenge_password:
        items.append(_oid(CHALLENGE_PASSWORD))
    if rsa_sizes:
        items.append(_attribute(RSA_ENCRYPTION, [core.Integer(size) for size in rsa_sizes]))
    if ec_curves:
        items.append(
            _attribute(EC_PUBLIC_KEY, [core.ObjectIdentifier(_CURVE_OIDS[c]) for c in ec_curves])
        )
    if hash_name is not None:
        # The signature for each key type the CSR may carry: the common ones, else any profile's.
        if rsa_sizes or ec_curves:
            signs_rsa, signs_ec = bool(rsa_sizes), bool(ec_curves)
        else:
            signs_rsa = any(profile.keys.rsa_sizes for profile in chosen)
            signs_ec = any(profile.keys.ec_curves for profile in chosen)
        if signs_rsa:
            items.append(_oid(_RSA_SIGNATURES[hash_name]))
        if signs_ec:
            items.append(_oid(_ECDSA_SIGNATURES[hash_name]))
    # A template-aware client ignores everything beside the template, which has no way to ask
    # for a value the client fills in (an attribute needs one value at least): no template then.
    template = None if challenge_password else _template(rsa_sizes, ec_curves)
    if template is not None:
        items.append(template)
    if not items:
        return None
    der: bytes = CsrAttrs(items).dump()
    return der
