"""The generated demo hierarchy has the OCES3 CA shape and is marked as a demo."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from est_ca.ca.hierarchy import HierarchyFiles, build_issuing, generate_demo_hierarchy
from est_ca.ca.publication import Publication
from est_ca.ca.signing import KeyFileSigner
from tests.conftest import CaMaterial


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_root_is_rsa_4096_signed_with_pss_sha512(ca_material: CaMaterial) -> None:
    root = load(ca_material.hierarchy.root_cert)
    key = root.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 4096
    assert root.signature_hash_algorithm is not None
    assert root.signature_hash_algorithm.name == "sha512"
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)


def test_the_issuing_ca_is_rsa_3072_with_path_length_zero(ca_material: CaMaterial) -> None:
    root = load(ca_material.hierarchy.root_cert)
    issuing = load(ca_material.hierarchy.issuing_cert)
    key = issuing.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 3072
    constraints = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    issuing.verify_directly_issued_by(root)


def test_every_ca_name_says_demo_and_test(ca_material: CaMaterial) -> None:
    for path in (ca_material.hierarchy.root_cert, ca_material.hierarchy.issuing_cert):
        subject = load(path).subject
        assert "Demo" in subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        unit = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        assert "Test" in unit


def test_ca_keys_are_encrypted_and_private_to_the_owner(ca_material: CaMaterial) -> None:
    for path in (ca_material.hierarchy.root_key, ca_material.hierarchy.issuing_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(path.read_bytes(), password=None)


def test_generation_never_overwrites_existing_material(ca_material: CaMaterial) -> None:
    with pytest.raises(FileExistsError):
        generate_demo_hierarchy(
            HierarchyFiles.in_directory(ca_material.hierarchy.root_cert.parent),
            b"x",
            dt.datetime.now(dt.UTC),
            ca_material.publication,
        )


def test_an_issuing_ca_made_late_in_the_roots_life_ends_with_the_root(
    ca_material: CaMaterial,
) -> None:
    """A rollover five years before the root's end: the new issuing CA (ten years otherwise)
    stops with its root, so nothing it issues outlives what relying parties anchor on."""
    root = load(ca_material.hierarchy.root_cert)
    signer = KeyFileSigner.load(
        ca_material.hierarchy.root_key, ca_material.passphrase.read_bytes().strip()
    )
    base = "http://127.0.0.1:1"
    issuing = build_issuing(
        rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key(),
        root,
        signer,
        root.not_valid_after_utc - dt.timedelta(days=5 * 365),
        Publication(base_url=base, name_registration_authority=base),
        3,
    )
    assert issuing.not_valid_after_utc <= root.not_valid_after_utc
