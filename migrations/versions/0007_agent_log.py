"""events: each agent's events in order, for the agent log's time in state

The supervisor's agents table reads each agent's last move from ``events``
(``interphone.queue.agentlog.last_moves``): newest first among that agent's events. An
index on ``(agent_id, id)`` finds it without reading the agent's whole history, and
replaces the index on ``agent_id`` alone, which it covers (one index per event written,
as before).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_agent_id_id", "events", ["agent_id", "id"])
    op.drop_index("ix_events_agent_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_agent_id", "events", ["agent_id"])
    op.drop_index("ix_events_agent_id_id", table_name="events")
