"""bulletins: issued information bulletins with their league tables

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 19:41:06.391867
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('bulletins',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scope_kind', sa.String(length=8), nullable=False),
    sa.Column('scope_id', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('label', sa.String(length=16), nullable=False),
    sa.Column('issued_ms', sa.BigInteger(), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bulletins', schema=None) as batch_op:
        batch_op.create_index('ix_bulletins_scope', ['scope_kind', 'scope_id', 'issued_ms'], unique=False)



def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('bulletins', schema=None) as batch_op:
        batch_op.drop_index('ix_bulletins_scope')

    op.drop_table('bulletins')
