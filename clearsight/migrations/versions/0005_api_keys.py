"""API keys of the prediction endpoint, stored hashed.

``api_keys``: one row per key (:mod:`clearsight.api_keys`): its ``name``
(unique among the active keys, which the code enforces: a revoked key's name
may be reused), the SHA-256 of the key (never the key), who created it and
when, its last use (written by the model servers, at most once per key and
cache period) and its revocation time (null while active). Rows are never
deleted, so ``python -m clearsight.api_keys list`` shows revoked keys too.

Revision ID: 0005_api_keys
Revises: 0004_monitoring_features
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_api_keys"
down_revision: str | None = "0004_monitoring_features"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``api_keys`` with a unique index on the key's hash."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_keys_name", "api_keys", ["name"])
    op.create_index("ix_api_keys_key_sha256", "api_keys", ["key_sha256"], unique=True)


def downgrade() -> None:
    """Drop the table (every key is lost: clients need new ones after an upgrade)."""
    op.drop_index("ix_api_keys_key_sha256", table_name="api_keys")
    op.drop_index("ix_api_keys_name", table_name="api_keys")
    op.drop_table("api_keys")
