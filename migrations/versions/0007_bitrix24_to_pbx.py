"""from Bitrix24 to the PBX: click-to-call and callback webhooks, external lines

`originations` holds each ONEXTERNALCALLSTART / ONEXTERNALCALLBACKSTART on its way to the PBX;
`external_lines` the line numbers a portal is known to have; `portal_settings` gains the
originate webhook's URL and (encrypted) secret.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import b24app.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = b24app.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("portal_settings") as batch:
        batch.add_column(sa.Column("originate_url", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("originate_secret_encrypted", sa.Text(), nullable=True))
    op.create_table(
        "originations",
        sa.Column("id", ID, nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("give_up_at", WHEN, nullable=False),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("leased_by", sa.String(length=64), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_originations_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_originations")),
        sa.UniqueConstraint(
            "portal_id", "kind", "dedupe_key", name=op.f("uq_originations_portal_id")
        ),
    )
    op.create_index(op.f("ix_originations_portal_id"), "originations", ["portal_id"])
    op.create_index("ix_originations_due", "originations", ["state", "next_attempt_at"])
    op.create_table(
        "external_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("added_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_external_lines_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_lines")),
        sa.UniqueConstraint("portal_id", "number", name=op.f("uq_external_lines_portal_id")),
    )


def downgrade() -> None:
    op.drop_table("external_lines")
    op.drop_index("ix_originations_due", table_name="originations")
    op.drop_index(op.f("ix_originations_portal_id"), table_name="originations")
    op.drop_table("originations")
    with op.batch_alter_table("portal_settings") as batch:
        batch.drop_column("originate_secret_encrypted")
        batch.drop_column("originate_url")
