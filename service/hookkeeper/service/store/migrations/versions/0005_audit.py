"""The hash-chained audit trail.

Revision ID: 0005_audit
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookkeeper.service.store.tables import UTCDateTime

revision = "0005_audit"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates audit_events."""
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("partner_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_partner_seq", "audit_events", ["partner_id", "seq"])
    op.create_index("ix_audit_events_resource_seq", "audit_events", ["resource", "seq"])


def downgrade() -> None:
    """Drops audit_events."""
    op.drop_table("audit_events")
