"""The prediction log of the serving endpoint and the table of ground truths.

``prediction_log``: one row per image the endpoint answered (time, Seldon's
request id ``puid`` and the image's index ``item`` in the request, the model's
name and versions, the image's byte and pixel hashes, label, calibrated
confidence, uncertain flag, top-k and the client's ``meta.tags``), written by
the model server's background writer (:mod:`clearsight.prediction_log`).

``ground_truths``: the true label of an answered image, by ``puid`` and
``item``, with where it came from (``source``: ``feedback`` from Seldon's
feedback call; reviews later), when, and by whom when known. Append-only: the
newest row of a ``(puid, item)`` wins.

Neither table refers to the other by a foreign key: the log is written
asynchronously (and may drop entries under overload), so a truth can arrive
before its prediction's row.

Revision ID: 0003_prediction_log
Revises: 0002_identity_and_history
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_prediction_log"
down_revision: str | None = "0002_identity_and_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``prediction_log`` and ``ground_truths`` with their indexes."""
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("puid", sa.String(128), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("registered_version", sa.String(64), nullable=False),
        sa.Column("input_kind", sa.String(16), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("pixel_sha256", sa.String(64), nullable=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("top_k", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prediction_log_created_at", "prediction_log", ["created_at"])
    op.create_index("ix_prediction_log_puid", "prediction_log", ["puid"])
    op.create_index("ix_prediction_log_pixel_sha256", "prediction_log", ["pixel_sha256"])
    op.create_table(
        "ground_truths",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("puid", sa.String(128), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ground_truths_puid", "ground_truths", ["puid"])


def downgrade() -> None:
    """Drop both tables (their rows are lost)."""
    op.drop_index("ix_ground_truths_puid", table_name="ground_truths")
    op.drop_table("ground_truths")
    op.drop_index("ix_prediction_log_pixel_sha256", table_name="prediction_log")
    op.drop_index("ix_prediction_log_puid", table_name="prediction_log")
    op.drop_index("ix_prediction_log_created_at", table_name="prediction_log")
    op.drop_table("prediction_log")
