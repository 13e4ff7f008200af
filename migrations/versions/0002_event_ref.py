"""events.ref: the natural key of events written through the journal

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ref", sa.String(length=80), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_events_ref"), ["ref"])


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_events_ref"), type_="unique")
        batch_op.drop_column("ref")
