"""portal health (pause and probe), fallback user and delivery notes on calls

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import b24app.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_health",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("paused_since", b24app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("probe_at", b24app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_portal_health_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", name=op.f("pk_portal_health")),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("use_fallback_user", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("note")
        batch.drop_column("use_fallback_user")
    op.drop_table("portal_health")
