"""Partners, callback configurations and their sealed secrets.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookkeeper.service.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates the core tables."""
    op.create_table(
        "partners",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_partners"),
    )
    op.create_table(
        "callback_configs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(128), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("contact_email", sa.String(254), nullable=False),
        sa.Column("request_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("api_key_key_id", sa.String(64), nullable=False),
        sa.Column("api_key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_expire_time", UTCDateTime(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("update_time", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_callback_configs_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_callback_configs"),
    )
    op.create_index(
        "ix_callback_configs_partner_created",
        "callback_configs",
        ["partner_id", "create_time", "id"],
    )
    op.create_table(
        "callback_secrets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("callback_config_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("expire_time", UTCDateTime(), nullable=False),
        sa.Column("retire_time", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["callback_config_id"],
            ["callback_configs.id"],
            name="fk_callback_secrets_callback_config_id_callback_configs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_callback_secrets"),
    )
    op.create_index(
        "ix_callback_secrets_callback_config_id", "callback_secrets", ["callback_config_id"]
    )


def downgrade() -> None:
    """Drops the core tables."""
    op.drop_table("callback_secrets")
    op.drop_table("callback_configs")
    op.drop_table("partners")
