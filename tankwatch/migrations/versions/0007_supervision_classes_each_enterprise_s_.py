"""supervision classes: each enterprise's class history

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:33:43.077798
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('supervision_classes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('class', sa.String(length=16), nullable=False),
    sa.Column('computed', sa.String(length=16), nullable=False),
    sa.Column('override', sa.Boolean(), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('supervision_classes', schema=None) as batch_op:
        batch_op.create_index('ix_supervision_enterprise', ['enterprise_id', 'ts_ms'], unique=False)



def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('supervision_classes', schema=None) as batch_op:
        batch_op.drop_index('ix_supervision_enterprise')

    op.drop_table('supervision_classes')
