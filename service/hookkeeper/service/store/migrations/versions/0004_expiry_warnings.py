"""Expiry warnings sent by the mailer.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookkeeper.service.store.tables import UTCDateTime

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates expiry_warnings and indexes configurations by secret expiry."""
    op.create_table(
        "expiry_warnings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("secret_id", sa.String(36), nullable=False),
        sa.Column("callback_config_id", sa.String(36), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", UTCDateTime(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("sent_time", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["callback_secrets.id"],
            name="fk_expiry_warnings_secret_id_callback_secrets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["callback_config_id"],
            ["callback_configs.id"],
            name="fk_expiry_warnings_callback_config_id_callback_configs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_expiry_warnings"),
        sa.UniqueConstraint(
            "secret_id", "threshold_days", name="uq_expiry_warnings_secret_threshold"
        ),
    )
    op.create_index(
        "ix_expiry_warnings_callback_config_id", "expiry_warnings", ["callback_config_id"]
    )
    op.create_index("ix_expiry_warnings_due", "expiry_warnings", ["state", "next_attempt_time"])
    op.create_index(
        "ix_callback_configs_secret_expire_time", "callback_configs", ["secret_expire_time"]
    )


def downgrade() -> None:
    """Drops what upgrade created."""
    op.drop_index("ix_callback_configs_secret_expire_time", table_name="callback_configs")
    op.drop_table("expiry_warnings")
