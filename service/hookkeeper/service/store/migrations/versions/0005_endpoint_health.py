"""Endpoint health: configuration state, signature scheme, per-second cap,
the shared throttle rows and the disable notices.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookkeeper.service.store.tables import UTCDateTime

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None

_CONFIG_COLUMNS = (
    "signature_scheme",
    "state",
    "disable_reason",
    "disable_time",
    "max_deliveries_per_second",
)


def _config_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("signature_scheme", sa.String(24), nullable=False, server_default="EXPEDIA_V2"),
        sa.Column("state", sa.String(16), nullable=False, server_default="ACTIVE"),
        sa.Column("disable_reason", sa.Text(), nullable=True),
        sa.Column("disable_time", UTCDateTime(), nullable=True),
        sa.Column("max_deliveries_per_second", sa.Integer(), nullable=True),
    ]


def upgrade() -> None:
    """Adds the configuration columns (existing rows: EXPEDIA_V2, ACTIVE,
    unlimited) and creates endpoint_health and config_notices."""
    # batch mode: SQLite cannot add NOT NULL columns otherwise on every version.
    with op.batch_alter_table("callback_configs") as batch:
        for column in _config_columns():
            batch.add_column(column)
    op.create_table(
        "endpoint_health",
        sa.Column("callback_config_id", sa.String(36), nullable=False),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("hold_until", UTCDateTime(), nullable=True),
        sa.Column("next_slot_time", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["callback_config_id"],
            ["callback_configs.id"],
            name="fk_endpoint_health_config",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("callback_config_id", name="pk_endpoint_health"),
    )
    op.create_table(
        "config_notices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("callback_config_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", UTCDateTime(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("sent_time", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["callback_config_id"],
            ["callback_configs.id"],
            name="fk_config_notices_config",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_config_notices"),
    )
    op.create_index("ix_config_notices_due", "config_notices", ["state", "next_attempt_time"])
    op.create_index("ix_config_notices_config", "config_notices", ["callback_config_id"])


def downgrade() -> None:
    """Drops what upgrade created."""
    op.drop_table("config_notices")
    op.drop_table("endpoint_health")
    with op.batch_alter_table("callback_configs") as batch:
        for name in reversed(_CONFIG_COLUMNS):
            batch.drop_column(name)
