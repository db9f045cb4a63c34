"""The delivery queue's lease as a HOT update: free room on every page of
notification_deliveries (PostgreSQL only).

The claim now writes only columns no index covers (the lease, the attempt
count; ``next_attempt_time`` stays put, see store/delivery_queue.py), so
PostgreSQL can update the row in place on its page without a new entry in
any index (a heap-only tuple), provided the page has room for the new
version. Rows are inserted in due order and claimed in due order, so one
claim takes whole runs of neighbouring rows: a page needs room for a new
version of every row on it. The fillfactor applies to pages filled from now
on; rows already stored keep their pages. SQLite has no such setting (and no
such cost): nothing to do there.

Revision ID: 0006
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None

# Percent of a page that inserts fill. A page filled to F holds rows of width
# w; every one of them may be leased in one claim, each new version growing by
# the lease (g: owner, token, expiry; ~95 bytes against a row of ~240), so all
# fit when F * (2 + g / w) <= 1: F <= 0.42 for such rows, and 0.40 leaves room
# for lease values a little longer. The price: fresh rows take 2.5 times the
# pages (docs/delivery.md, "The claim on a million").
FILLFACTOR = 40


def upgrade() -> None:
    """Sets the fillfactor of notification_deliveries (PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE notification_deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    """Back to the default fillfactor (100)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE notification_deliveries RESET (fillfactor)")
