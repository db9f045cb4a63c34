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
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("partner_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.UniqueConstraint("seq", name="uq_audit_events_seq"),
    )
    op.create_index("ix_audit_events_partner_id", "audit_events", ["partner_id", "id"])
    op.create_index("ix_audit_events_resource_id", "audit_events", ["resource", "id"])
    # The sealer's work list: events not sealed yet, in storage order.
    op.create_index(
        "ix_audit_events_unsealed",
        "audit_events",
        ["id"],
        sqlite_where=sa.text("seq IS NULL"),
        postgresql_where=sa.text("seq IS NULL"),
    )


def downgrade() -> None:
    """Drops audit_events."""
    op.drop_table("audit_events")
