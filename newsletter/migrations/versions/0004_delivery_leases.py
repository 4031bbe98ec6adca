"""Delivery leases and deferred recipients.

``delivery_batches.lease_until``: a sender renews the lease of every batch it
holds while it works; a batch whose lease has expired belongs to nobody, on any
host, and may be taken over (``--resend-uncertain``, the outbox's reconciliation).

``deliveries.not_before`` / ``deferred_since``: a recipient an SMTP server
answered 4xx is pending again, but not claimed before ``not_before``; after
``DEFER_GIVE_UP`` seconds since ``deferred_since`` it is marked failed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deferred_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("deferred_since")
        batch_op.drop_column("not_before")
    with op.batch_alter_table("delivery_batches", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
