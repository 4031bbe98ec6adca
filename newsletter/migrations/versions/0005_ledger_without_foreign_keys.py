"""The ledger's rows without foreign keys.

``deliveries`` is the hot table of a send: a million-subscriber issue inserts a
million rows and updates each of them twice (claimed, then sent). On PostgreSQL
every foreign key is a trigger per row: the three of ``deliveries`` cost 8-11 ms
per 1,000 rows on each statement, a third of a claim and half of writing the
pending rows (bench/send.py). The references they guarded are kept by the code
that writes them: subscribers are never deleted (erasure blanks the address), a
draft issue is deleted only while no ledger row names it, and a batch row is
deleted only when no ledger row was claimed under it. ``tests/test_db.py``
checks the schema against ``newsletter/tables.py``, where these columns are
plain integers and strings now.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FOREIGN_KEYS = {
    "fk_deliveries_issue_id_issues": ("issue_id", "issues"),
    "fk_deliveries_subscriber_id_subscribers": ("subscriber_id", "subscribers"),
    "fk_deliveries_batch_id_delivery_batches": ("batch_id", "delivery_batches"),
}


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"])
