"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, text

from est_ca.audit import AuditSeal
from est_ca.ca.certificates import KeyId, Serial
from est_ca.errors import ConfigurationError
from est_ca.registration.codes import new_key
from est_ca.store.schema import Base
from est_ca.store.store import MIGRATIONS_DIR, Store


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate()
        async with store.read() as tx:
            differences = await tx._conn.run_sync(_differences)
        assert differences == []
    finally:
        await store.close()


async def test_migrating_twice_changes_nothing(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate()
        first = await store.schema_revision()
        await store.migrate()
        assert await store.schema_revision() == first == _head()
    finally:
        await store.close()


async def test_a_new_database_has_no_revision(database_url: str) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        assert await store.schema_revision() is None
    finally:
        await store.close()


async def test_existing_identities_become_organisations_and_conflicting_names_are_reported(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await store.migrate("0005")
        async with store.write() as tx:
            for number, (name, email) in enumerate(
                [
                    ("ÆØÅ ApS", "a@example.dk"),
                    ("ÆØÅ ApS", "b@Example.dk"),
                    ("AEOEAA ApS", "c@other.dk"),
                    ("ÆØÅ ApS", None),
                ]
            ):
                await tx._conn.execute(
                    text(
                        "INSERT INTO identities (id, type, display_name, organisation_name, cvr, "
                        "email, status, created_at, updated_at) VALUES (:id, 'system', :display, "
                        ":name, '99999999', :email, 'active', :at, :at)"
                    ),
                    {
                        "id": uuid.uuid4().hex if store.is_sqlite else uuid.uuid4(),
                        "display": f"svc-{number}",
                        "name": name,
                        "email": email,
                        "at": dt.datetime(2026, 1, 1, number, tzinfo=dt.UTC),
                    },
                )
        await store.migrate()
        async with store.read() as tx:
            organisation = await tx.get_organisation("99999999")
            identities = await tx.list_identities()
        assert organisation is not None
        assert organisation.name == "ÆØÅ ApS"
        assert organisation.email_domains == ("example.dk", "other.dk")
        assert {identity.organisation_name for identity in identities} == {"ÆØÅ ApS"}
        assert "CVR 99999999" in capsys.readouterr().out
    finally:
        await store.close()


def _issued_by(issuer_key: ec.EllipticCurvePrivateKey, serial: int) -> bytes:
    """A certificate whose AuthorityKeyIdentifier names `issuer_key`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "migrated")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


async def _certificates_at_0006(store: Store, rows: list[tuple[str, str, bytes | None]]) -> None:
    """`rows` of (serial, status, der) recorded for one identity, in the 0006 schema."""
    await store.migrate("0006")
    identity_id = uuid.uuid4()
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with store.write() as tx:
        await tx._conn.execute(
            text(
                "INSERT INTO organisations (cvr, name, email_domains, status, created_at, "
                "updated_at) VALUES ('99999999', 'ÆØÅ ApS', '', 'active', :at, :at)"
            ),
            {"at": at},
        )
        await tx._conn.execute(
            text(
                "INSERT INTO identities (id, type, display_name, cvr, status, created_at, "
                "updated_at) VALUES (:id, 'system', 'svc', '99999999', 'active', :at, :at)"
            ),
            {"id": identity_id.hex if store.is_sqlite else identity_id, "at": at},
        )
        for serial, status, der in rows:
            await tx._conn.execute(
                text(
                    "INSERT INTO certificates (serial, identity_id, profile, status, "
                    "public_key_sha256, created_at, der) VALUES (:serial, :identity, 'system', "
                    ":status, :key, :at, :der)"
                ),
                {
                    "serial": serial,
                    "identity": identity_id.hex if store.is_sqlite else identity_id,
                    "status": status,
                    "key": "0" * 64,
                    "at": at,
                    "der": der,
                },
            )


async def test_existing_certificates_get_the_issuer_their_der_names_or_the_issuing_ca(
    database_url: str,
) -> None:
    old_ca = ec.generate_private_key(ec.SECP256R1())
    old_ca_id = KeyId.of(x509.SubjectKeyIdentifier.from_public_key(old_ca.public_key()).digest)
    issuing_ca_id = KeyId("ab" * 20)
    signed, reserved = Serial.random(), Serial.random()
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        await _certificates_at_0006(
            store,
            [
                (signed.hex, "issued", _issued_by(old_ca, signed.value)),
                (reserved.hex, "abandoned", None),
            ],
        )
        await store.migrate(issuer_key_id=issuing_ca_id)
        async with store.read() as tx:
            from_der = await tx.get_certificate(old_ca_id, signed)
            from_ca = await tx.get_certificate(issuing_ca_id, reserved)
        assert from_der is not None
        assert from_der.status.value == "issued"
        assert from_ca is not None
        assert from_ca.status.value == "abandoned"
    finally:
        await store.close()


async def test_an_unsigned_certificate_without_a_known_issuing_ca_stops_the_migration_cleanly(
    database_url: str,
) -> None:
    store = Store(database_url, seal=AuditSeal(new_key()))
    try:
        serial = Serial.random()
        await _certificates_at_0006(store, [(serial.hex, "reserved", None)])
        with pytest.raises(ConfigurationError, match="est-ca db upgrade"):
            await store.migrate()
        assert await store.schema_revision() == "0006"
        # Nothing half done: the retry the message asks for succeeds.
        await store.migrate(issuer_key_id=KeyId("cd" * 20))
        async with store.read() as tx:
            assert await tx.get_certificate(KeyId("cd" * 20), serial) is not None
    finally:
        await store.close()
