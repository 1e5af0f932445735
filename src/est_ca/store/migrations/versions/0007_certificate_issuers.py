"""certificates name their issuing CA; a serial is unique per issuer

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography import x509

from est_ca.errors import ConfigurationError

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Where `Store.migrate` passes the issuing CA's key id (alembic's config.attributes), or the
# alembic command line's `-x issuer_key_id=<hex>` (env.py puts it there).
ISSUER_KEY_ID = "issuer_key_id"


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuer_key_id", sa.String(length=64), nullable=True))
    _backfill_issuers()
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.alter_column("issuer_key_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("pk_certificates", type_="primary")
        batch_op.create_primary_key("pk_certificates", ["issuer_key_id", "serial"])
        batch_op.create_index(batch_op.f("ix_certificates_serial"), ["serial"], unique=False)


def _backfill_issuers() -> None:
    """Each certificate's issuer from its own DER (the AuthorityKeyIdentifier's keyIdentifier);
    reservations never signed (and anything without a readable AKI) were made by the CA that
    issues now, whose key id the caller passes. Read in pages: certificates can be millions."""
    bind = op.get_bind()
    config = op.get_context().config
    issuing = config.attributes.get(ISSUER_KEY_ID) if config is not None else None
    page = sa.text(
        "SELECT serial, der FROM certificates WHERE serial > :after ORDER BY serial LIMIT 1000"
    )
    set_issuer = sa.text("UPDATE certificates SET issuer_key_id = :issuer WHERE serial = :serial")
    after = ""
    unsigned: list[str] = []
    while rows := bind.execute(page, {"after": after}).all():
        after = rows[-1].serial
        found = []
        for serial, der in rows:
            issuer = _authority_key_id(der) if der is not None else None
            if issuer is None:
                unsigned.append(serial)
            else:
                found.append({"issuer": issuer, "serial": serial})
        if found:
            bind.execute(set_issuer, found)
    if not unsigned:
        return
    if not issuing:
        raise ConfigurationError(
            f"{len(unsigned)} certificate record(s) have no signed certificate naming their "
            f"issuer (serial {unsigned[0]} among them): migrate with `est-ca db upgrade`, which "
            "knows the issuing CA, or pass its key id to alembic: -x issuer_key_id=<hex>"
        )
    bind.execute(
        sa.text("UPDATE certificates SET issuer_key_id = :issuer WHERE issuer_key_id IS NULL"),
        {"issuer": str(issuing)},
    )


def _authority_key_id(der: bytes) -> str | None:
    try:
        certificate = x509.load_der_x509_certificate(der)
        identifier = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except (ValueError, x509.ExtensionNotFound):
        return None
    return identifier.hex() if identifier else None


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_serial"))
        batch_op.drop_constraint("pk_certificates", type_="primary")
        batch_op.create_primary_key("pk_certificates", ["serial"])
        batch_op.drop_column("issuer_key_id")
