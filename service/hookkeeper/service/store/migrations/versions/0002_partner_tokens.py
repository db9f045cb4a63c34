"""Partner accounts and their hashed gateway bearer tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookkeeper.service.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates partner_accounts and partner_tokens."""
    op.create_table(
        "partner_accounts",
        sa.Column("partner_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_partner_accounts_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("partner_id", name="pk_partner_accounts"),
    )
    op.create_table(
        "partner_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(128), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("revoke_time", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partner_accounts.partner_id"],
            name="fk_partner_tokens_partner_id_partner_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_partner_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_partner_tokens_token_sha256"),
    )
    op.create_index("ix_partner_tokens_partner_id", "partner_tokens", ["partner_id"])


def downgrade() -> None:
    """Drops the partner token tables."""
    op.drop_index("ix_partner_tokens_partner_id", table_name="partner_tokens")
    op.drop_table("partner_tokens")
    op.drop_table("partner_accounts")
