"""Keys the service generates for a subscriber (EST serverkeygen, RFC 7030 4.4).

The client's CSR says what it asks for (subject, requested extensions) and proves only that the
client formed the request; its key is not certified. The service makes a key pair of the kind
the label's profiles accept, builds a CSR for it with the client's subject and extensions, and
that CSR goes through the ordinary enrollment path, so every CSR check, order check, record and
audit event of simpleenroll applies. The CSR carries `csr_policy.SERVER_GENERATED_KEY`, which
the CSR policy refuses under a profile that does not allow server key generation (the order's
profile is known only after the order authenticated).

The private key lives in memory only: it is never stored, logged or audited. The caller
serialises it once, into the response.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from est_ca.ca.csr_policy import (
    SERVER_GENERATED_KEY,
    check_proof_of_possession,
    check_requested_extensions,
)
from est_ca.ca.profiles import KeySpec, Profile
from est_ca.errors import BadRequest, ConfigurationError

GeneratedKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# RFC 7030 4.4.1.2: a client asks for the returned key encrypted to a symmetric key
# (DecryptKeyIdentifier, id-aa-decryptKeyID) or to a public key (AsymmetricDecryptKeyIdentifier,
# id-aa-asymmDecryptKeyID) the server holds.
KEY_ENCRYPTION_REQUESTS = (
    x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.37"),
    x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.54"),
)
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


def key_for_label(profiles: Iterable[Profile], label: str) -> KeySpec | None:
    """The key the service generates under a label whose orders may name any of `profiles`;
    None when none of them allows server key generation (serverkeygen is refused there).

    The order's profile is unknown until the order authenticates, so the key is chosen from
    what every profile allowing serverkeygen accepts: the first such key in the order of the
    first of those profiles by name (`KeyPolicy.choices`). Profiles with no key in common make
    a start-up error rather than a key some orders would refuse."""
    generating = sorted(
        (profile for profile in profiles if profile.server_key_generation),
        key=lambda profile: profile.name,
    )
    if not generating:
        return None
    for spec in generating[0].keys.choices:
        if all(profile.keys.accepts(spec) for profile in generating[1:]):
            return spec
    names = ", ".join(profile.name for profile in generating)
    raise ConfigurationError(
        f"CA label {label!r}: the profiles that allow server key generation ({names}) accept "
        "no key in common; the service could not choose which key to generate"
    )


def generate_key(spec: KeySpec) -> GeneratedKey:
    """Blocking (an RSA key takes a large part of a second): call it on a worker."""
    if spec.algorithm == "ec":
        return ec.generate_private_key(_CURVES[str(spec.parameter)])
    return rsa.generate_private_key(public_exponent=65537, key_size=int(spec.parameter))


@dataclasses.dataclass(frozen=True, repr=False)
class ServerGeneratedRequest:
    """A freshly generated key and the CSR that asks for it to be certified. `repr` is off so
    that no traceback or debug log can print the key object's neighbourhood by accident."""

    private_key: GeneratedKey
    csr_der: bytes

    def pkcs8_der(self) -> bytes:
        """The private key as an unencrypted PKCS#8 PrivateKeyInfo (RFC 7030 4.4.2): the TLS
        session is what protects it on its way."""
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def request_with_generated_key(
    client_csr: x509.CertificateSigningRequest, spec: KeySpec
) -> ServerGeneratedRequest:
    """Check the client's request (signed, well-formed extensions), generate a key of `spec`
    and build a CSR for it with the client's subject and requested extensions. Blocking."""
    check_proof_of_possession(client_csr)
    check_requested_extensions(client_csr)
    _refuse_key_encryption(client_csr)
    try:  # the subject is parsed only when read: a malformed one is the client's error
        builder = x509.CertificateSigningRequestBuilder().subject_name(client_csr.subject)
        for extension in client_csr.extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    except ValueError as exc:
        raise BadRequest(
            "the CSR's subject or extensions cannot be read; send a well-formed subject"
        ) from exc
    key = generate_key(spec)
    builder = builder.add_attribute(SERVER_GENERATED_KEY, b"serverkeygen")
    csr = builder.sign(key, hashes.SHA256())
    return ServerGeneratedRequest(
        private_key=key, csr_der=csr.public_bytes(serialization.Encoding.DER)
    )


def _refuse_key_encryption(client_csr: x509.CertificateSigningRequest) -> None:
    """RFC 7030 4.4.1.2: a server that holds no key matching the client's DecryptKeyIdentifier
    or AsymmetricDecryptKeyIdentifier MUST end the request with an error. This service holds
    none (it returns the key protected by TLS only), so a client that asked for the key to be
    encrypted is refused before any key is made, never answered with it in the clear."""
    for oid in KEY_ENCRYPTION_REQUESTS:
        try:
            client_csr.attributes.get_attribute_for_oid(oid)
        except x509.AttributeNotFound:
            continue
        except ValueError as exc:
            raise BadRequest("the CSR's attributes are malformed") from exc
        raise BadRequest(
            "the CSR asks for the returned private key to be encrypted (RFC 7030 4.4.1.2), "
            "which this server does not do: it holds no key for that; leave the "
            "DecryptKeyIdentifier and AsymmetricDecryptKeyIdentifier attributes out (the key "
            "comes protected by TLS) or generate the key yourself and use simpleenroll"
        )
