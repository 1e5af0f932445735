"""lifecycle: subscriber keys bound to one identity, renewal lineage index, keyed token hashes

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    keys = op.create_table(
        "subscriber_keys",
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("identity_id", sa.Uuid(), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("compromised_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_subscriber_keys_identity_id_identities"),
        ),
        sa.PrimaryKeyConstraint("public_key_sha256", name=op.f("pk_subscriber_keys")),
    )
    with op.batch_alter_table("subscriber_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriber_keys_identity_id"), ["identity_id"], unique=False
        )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificates_renewal_of"), ["renewal_of"], unique=False
        )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "secret_hash",
            existing_type=sa.String(length=64),
            type_=sa.String(length=100),
            existing_nullable=False,
        )
    op.bulk_insert(keys, _bindings_of_certified_keys())


def _bindings_of_certified_keys() -> list[dict[str, object]]:
    """One binding per key already certified: to the identity of its first certificate, and
    compromised since its first keyCompromise revocation. A key certified for several
    identities (possible before this version) stays with the first; the others are named."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT public_key_sha256, identity_id, created_at, revoked_at, revocation_reason "
            "FROM certificates WHERE status IN ('issued', 'revoked') ORDER BY created_at, serial"
        )
    )
    bindings: dict[str, dict[str, object]] = {}
    shared: dict[str, set[str]] = {}
    for key, identity_id, created_at, revoked_at, reason in rows:
        binding = bindings.setdefault(
            key,
            {
                "public_key_sha256": key,
                "identity_id": _uuid(identity_id),
                "bound_at": _aware(created_at),
                "compromised_at": None,
            },
        )
        if _uuid(identity_id) != binding["identity_id"]:
            shared.setdefault(key, {str(binding["identity_id"])}).add(str(_uuid(identity_id)))
        if reason == "keyCompromise" and revoked_at is not None:
            compromised = binding["compromised_at"]
            at = _aware(revoked_at)
            if not isinstance(compromised, dt.datetime) or at < compromised:
                binding["compromised_at"] = at
    for key, identities in sorted(shared.items()):
        print(
            f"warning: public key {key} was certified for several identities "
            f"({', '.join(sorted(identities))}); it stays bound to the first"
        )
    return list(bindings.values())


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _aware(value: object) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "secret_hash",
            existing_type=sa.String(length=100),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_renewal_of"))
    with op.batch_alter_table("subscriber_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_keys_identity_id"))
    op.drop_table("subscriber_keys")
