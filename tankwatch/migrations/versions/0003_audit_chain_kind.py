"""audit: chain kind per entry (sha256 for the unkeyed entries before the audit key, hmac-sha256 after)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00

Existing rows keep their unkeyed SHA-256 hashes and are marked ``sha256``; ``tankwatch audit verify`` checks them
the old way and reports how many there are. New rows are HMAC-keyed. The column is added without touching the
rows (no UPDATE), so the append-only triggers stay in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', sa.String(length=16), server_default='sha256', nullable=False))


def downgrade() -> None:
    """Undo this revision (keyed rows then no longer verify: their HMAC covers the chain kind)."""
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('chain')
