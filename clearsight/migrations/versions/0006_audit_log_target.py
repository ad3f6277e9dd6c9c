"""An index on the audit log's target and time, for the review app's sign-in lockout.

The review app counts an account's failed sign-ins in ``audit_log``
(``target`` is the account's name; :meth:`clearsight.review.ReviewStore.sign_in_history`)
on every sign-in attempt; ``ix_audit_log_target_at`` keeps that a short index
range scan however long the log grows. No column changes.

Revision ID: 0006_audit_log_target
Revises: 0005_api_keys
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_audit_log_target"
down_revision: str | None = "0005_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the index (existing rows are indexed too)."""
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"])


def downgrade() -> None:
    """Drop the index (the lockout still works, by a scan of the log)."""
    op.drop_index("ix_audit_log_target_at", table_name="audit_log")
