"""Alembic environment: run by `Store.migrate()` with a live connection, or by the alembic CLI.

For a new migration: `alembic -x url=sqlite+aiosqlite:///tmp.db -c tools/alembic.ini revision
--autogenerate -m "what changes"`, then read and edit what it wrote.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from est_ca.store.schema import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    arguments = context.get_x_argument(as_dictionary=True)
    url = arguments.get("url")
    if "issuer_key_id" in arguments:  # the issuing CA, for 0007's unsigned reservations
        context.config.attributes["issuer_key_id"] = arguments["issuer_key_id"]
    if not url:
        raise SystemExit("pass the database with -x url=<sqlalchemy url>")
    asyncio.run(_run_with_url(url))
