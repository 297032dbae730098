"""a repeated register names the employee the first one named

`calls` gains `register_user`, the employee ({"USER_ID": n} or {"USER_PHONE_INNER": "…"}) a
register of unknown outcome named, kept beside `register_sent_at`: a repeat within the register
page's 30 minutes must carry the same key fields to get the same CALL_ID back, and the portal's
fallback employee or extension mapping may have changed in between (delivery/lifecycle.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("register_user", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("register_user")
