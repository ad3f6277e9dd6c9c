"""Baseline: the five catalog tables as ``create_all`` made them before migrations.

``images`` and ``ingestions`` (``clearsight/catalog.py``), ``review_predictions``,
``reviews`` and ``audit_log`` (``clearsight/review.py``), written out as they
were at the last commit without migrations, so later changes to the live
``Table`` objects never change what this revision creates. Column defaults
were client-side (Python) defaults, so no ``server_default`` appears here.

A catalog created before migrations is adopted, not re-created:
:func:`clearsight.migrations.upgrade_database` creates whichever of these
tables it lacks with :func:`create_table` and stamps it at this revision.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The baseline tables in creation order (``reviews`` refers to ``review_predictions``).
TABLES = ("images", "ingestions", "review_predictions", "reviews", "audit_log")


def _images() -> None:
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("num_bytes", sa.Integer(), nullable=False),
        sa.Column("source_path", sa.String(4096), nullable=False),
        sa.Column("uri", sa.String(4096), nullable=True),
        sa.Column("provenance", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ingestion_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_images_label", "images", ["label"])
    op.create_index("ix_images_split", "images", ["split"])


def _ingestions() -> None:
    op.create_table(
        "ingestions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(4096), nullable=False),
        sa.Column("layout", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("scanned", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("new_images", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("uploaded", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _review_predictions() -> None:
    op.create_table(
        "review_predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("uri", sa.String(4096), nullable=False),
        sa.Column("filename", sa.String(1024), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("num_bytes", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("registered_version", sa.String(64), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_predictions_sha256", "review_predictions", ["sha256"])
    op.create_index("ix_review_predictions_status", "review_predictions", ["status"])


def _reviews() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("predicted_label", sa.String(255), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["prediction_id"], ["review_predictions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reviews_sha256", "reviews", ["sha256"])


def _audit_log() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


_CREATE: dict[str, Callable[[], None]] = {
    "images": _images,
    "ingestions": _ingestions,
    "review_predictions": _review_predictions,
    "reviews": _reviews,
    "audit_log": _audit_log,
}


def create_table(name: str) -> None:
    """Create one baseline table and its indexes through the current ``op`` context.

    Args:
        name: One of :data:`TABLES`.

    Raises:
        KeyError: When ``name`` is not a baseline table.
    """
    _CREATE[name]()


def upgrade() -> None:
    """Create the five baseline tables and their indexes."""
    for name in TABLES:
        create_table(name)


def downgrade() -> None:
    """Drop the five baseline tables (their indexes go with them)."""
    for name in reversed(TABLES):
        op.drop_table(name)
