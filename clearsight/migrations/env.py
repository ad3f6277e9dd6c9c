"""Alembic's environment for the catalog database, run on a caller's connection.

There is no ``alembic.ini``: :func:`clearsight.migrations.alembic_config`
builds the configuration in code and passes an open SQLAlchemy connection in
``config.attributes["connection"]``. Migrations run inside the caller's
transaction, so the caller decides when they commit.
"""

from __future__ import annotations

from alembic import context

from clearsight import api_keys, catalog, prediction_log, review

config = context.config
# Autogenerate compares against the live tables of every module that owns some.
target_metadata = [catalog.metadata, review.metadata, prediction_log.metadata, api_keys.metadata]


def run_migrations() -> None:
    """Run the migrations on the connection in ``config.attributes["connection"]``.

    Raises:
        RuntimeError: When no connection was passed (offline SQL generation is
            not supported: the catalog is always migrated on a live database).
    """
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "clearsight's migrations run on a live connection: use "
            "clearsight.migrations.upgrade_database(url) or "
            "`python -m clearsight.migrations upgrade --url URL`."
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # autogenerate writes SQLite-safe batch operations
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
