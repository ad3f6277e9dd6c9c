"""Image identity (pixel hash, split key), removals and the ``image_events`` history.

On ``images``: ``pixel_sha256`` (indexed), the hash of the decoded pixels, so a
copy that differs only in metadata is recognised; ``split_key``, the hash the
split is derived from; ``removed_at`` and ``removed_ingestion_id``, set when an
ingestion of the image's source folder no longer finds it. Existing rows get
``split_key = sha256``: their split was derived from the byte hash, so a
re-ingest keeps them in the split they are in.

``image_events`` records, per ingestion, each image that was ``added``,
``relabelled``, ``resplit``, ``removed`` or ``restored``.

Batch operations keep the revision usable on SQLite, whose ``ALTER TABLE``
cannot drop columns in place.

Revision ID: 0002_identity_and_history
Revises: 0001_baseline
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_identity_and_history"
down_revision: str | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the identity and removal columns, fill ``split_key``, create ``image_events``."""
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("pixel_sha256", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("split_key", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("removed_ingestion_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_images_pixel_sha256", ["pixel_sha256"])
    op.execute(sa.text("UPDATE images SET split_key = sha256 WHERE split_key IS NULL"))
    op.create_table(
        "image_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ingestion_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("previous_label", sa.String(255), nullable=True),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("previous_split", sa.String(16), nullable=True),
        sa.Column("source_path", sa.String(4096), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ingestion_id"], ["ingestions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_image_events_ingestion_id", "image_events", ["ingestion_id"])
    op.create_index("ix_image_events_sha256", "image_events", ["sha256"])


def downgrade() -> None:
    """Drop ``image_events`` and the four ``images`` columns (their data is lost)."""
    op.drop_table("image_events")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_index("ix_images_pixel_sha256")
        batch_op.drop_column("removed_ingestion_id")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("split_key")
        batch_op.drop_column("pixel_sha256")
