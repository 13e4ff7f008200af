"""contacts: a partial index for the contacts SQL accepted and Redis never received

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNQUEUED = "state = 'waiting' AND version = 0"


def upgrade() -> None:
    op.create_index(
        "ix_contacts_unqueued",
        "contacts",
        ["id"],
        postgresql_where=sa.text(UNQUEUED),
        sqlite_where=sa.text(UNQUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_unqueued", table_name="contacts")
