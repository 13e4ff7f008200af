"""trust: a session version per account, and whether a contact's file number was proven

- ``agents.session_version``: carried in the session cookie; raising it (sign-out,
  password reset, deactivation) ends every copy of the cookie.
- ``contacts.outcome`` widened to 200 characters: a cancellation's typed reason (up to
  ``REASON_MAX``) overflowed its 32 on PostgreSQL.
- ``contacts.file_verified``: a typed file number is the caller's only once the birth date
  matched; an unverified one never sets priority nor counts for duplicates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("file_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.alter_column(
            "outcome", existing_type=sa.String(32), type_=sa.String(200), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column(
            "outcome", existing_type=sa.String(200), type_=sa.String(32), existing_nullable=True
        )
        batch.drop_column("file_verified")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("session_version")
