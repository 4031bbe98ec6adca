"""The editor's desk: issue subject/preheader/note edits, the schedule switch, revoked admin sessions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("custom_subject", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("custom_preheader", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_table(
        "schedule_state",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_schedule_state")),
    )
    op.create_table(
        "revoked_admin_sessions",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_revoked_admin_sessions")),
    )


def downgrade() -> None:
    op.drop_table("revoked_admin_sessions")
    op.drop_table("schedule_state")
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("custom_preheader")
        batch_op.drop_column("custom_subject")
