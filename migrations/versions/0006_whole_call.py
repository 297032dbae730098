"""the whole call: events per call, recordings, the card's state, show_card

Every existing call becomes a call with one `finish` event holding its request and its state;
`calls.request` then goes (each event keeps what the PBX sent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import b24app.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = b24app.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "call_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("call_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_events_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.UniqueConstraint("call_id", "kind", "dedupe_key", name=op.f("uq_call_events_call_id")),
    )
    op.create_index(op.f("ix_call_events_call_id"), "call_events", ["call_id"])
    op.create_table(
        "call_recordings",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("audio", sa.String(length=8), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("leased_by", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("file_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["call_events.id"],
            name=op.f("fk_call_recordings_event_id_call_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_call_recordings_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_call_recordings")),
    )
    op.create_index(op.f("ix_call_recordings_portal_id"), "call_recordings", ["portal_id"])
    op.create_index("ix_call_recordings_due", "call_recordings", ["state", "next_attempt_at"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("events_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("crm_entity_type", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("crm_entity_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("register_sent_at", WHEN, nullable=True))
        batch.add_column(sa.Column("shown_to", sa.JSON(), nullable=True))
    with op.batch_alter_table("portal_settings") as batch:
        batch.add_column(
            sa.Column("show_card", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # every call so far was one finish: its request becomes its finish event
    op.execute(
        """
        INSERT INTO call_events (call_id, kind, dedupe_key, request, state, result, error_code,
                                 error, created_at, delivered_at)
        SELECT id, 'finish', '', request,
               CASE WHEN state = 'delivering' THEN 'queued' ELSE state END,
               result, error_code, error, created_at, delivered_at
        FROM calls
        """
    )
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("request")


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("request", sa.JSON(), nullable=True))
    op.execute(
        """
        UPDATE calls SET request = (
            SELECT e.request FROM call_events e
            WHERE e.call_id = calls.id AND e.kind = 'finish' AND e.dedupe_key = ''
        )
        """
    )
    op.execute("DELETE FROM calls WHERE request IS NULL")
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("request", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("shown_to")
        batch.drop_column("register_sent_at")
        batch.drop_column("crm_entity_id")
        batch.drop_column("crm_entity_type")
        batch.drop_column("events_version")
    with op.batch_alter_table("portal_settings") as batch:
        batch.drop_column("show_card")
    op.drop_index("ix_call_recordings_due", table_name="call_recordings")
    op.drop_index(op.f("ix_call_recordings_portal_id"), table_name="call_recordings")
    op.drop_table("call_recordings")
    op.drop_index(op.f("ix_call_events_call_id"), table_name="call_events")
    op.drop_table("call_events")
