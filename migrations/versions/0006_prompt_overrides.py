"""prompt overrides: a site's own text for a prompt, and the history of its changes

- ``prompt_overrides``: one row per (site, language, prompt key) said instead of the
  catalogue's text; a reset to the default deletes it.
- ``prompt_changes``: every change (set, reset) with who, when, the text before and after
  (NULL: the catalogue's default).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prompt_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=254), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_prompt_overrides_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_overrides")),
        sa.UniqueConstraint(
            "site_id", "language", "key", name=op.f("uq_prompt_overrides_site_prompt")
        ),
    )
    op.create_table(
        "prompt_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_prompt_changes_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_changes")),
    )
    with op.batch_alter_table("prompt_changes", schema=None) as batch_op:
        batch_op.create_index("ix_prompt_changes_site_at", ["site_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prompt_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_prompt_changes_site_at")
    op.drop_table("prompt_changes")
    op.drop_table("prompt_overrides")
