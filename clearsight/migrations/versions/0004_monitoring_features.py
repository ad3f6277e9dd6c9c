"""Monitoring features and kept images on the prediction log; request ids on reviews.

On ``prediction_log``: ``features``, the image's monitoring features as a JSON
object (:data:`clearsight.features.PIXEL_COLUMNS` and the embedding's principal
components ``embedding_i``, the gate's feature set; null for tensor requests,
for models served without a saved embedding projection, and for rows written
before this revision); ``image_uri``, where the image's bytes were kept
(content-addressed; null when they were not kept).

On ``review_predictions``: ``puid`` and ``item``, the endpoint's request id and
the image's index in that request, so that a reviewer's verdict becomes the
ground truth of the logged prediction (null for predictions queued before
this revision or not made by the endpoint).

Batch operations keep the revision usable on SQLite.

Revision ID: 0004_monitoring_features
Revises: 0003_prediction_log
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_monitoring_features"
down_revision: str | None = "0003_prediction_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable columns (existing rows keep null)."""
    with op.batch_alter_table("prediction_log") as batch_op:
        batch_op.add_column(sa.Column("features", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("image_uri", sa.String(4096), nullable=True))
    with op.batch_alter_table("review_predictions") as batch_op:
        batch_op.add_column(sa.Column("puid", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("item", sa.Integer(), nullable=True))
        batch_op.create_index("ix_review_predictions_puid", ["puid"])


def downgrade() -> None:
    """Drop the columns (their values are lost)."""
    with op.batch_alter_table("review_predictions") as batch_op:
        batch_op.drop_index("ix_review_predictions_puid")
        batch_op.drop_column("item")
        batch_op.drop_column("puid")
    with op.batch_alter_table("prediction_log") as batch_op:
        batch_op.drop_column("image_uri")
        batch_op.drop_column("features")
