"""Alarm event detail (what a shelve carried) and the shelves table

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 02:57:37.143916
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('alarm_shelves',
    sa.Column('shelf_id', sa.String(length=32), nullable=False),
    sa.Column('sensor_id', sa.String(length=64), nullable=False),
    sa.Column('condition', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('occurrence_id', sa.String(length=32), nullable=False),
    sa.Column('shelved_by', sa.String(length=64), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=True),
    sa.Column('since_ms', sa.BigInteger(), nullable=False),
    sa.Column('until_ms', sa.BigInteger(), nullable=False),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('ended_by', sa.String(length=64), nullable=True),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('last_occurrence_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('shelf_id')
    )
    with op.batch_alter_table('alarm_shelves', schema=None) as batch_op:
        batch_op.create_index('ix_alarm_shelves_open', ['ended_ms', 'enterprise_id'], unique=False)
        batch_op.create_index('ix_alarm_shelves_since', ['since_ms'], unique=False)

    with op.batch_alter_table('alarm_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail', sa.Text(), nullable=True))



def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('alarm_events', schema=None) as batch_op:
        batch_op.drop_column('detail')

    with op.batch_alter_table('alarm_shelves', schema=None) as batch_op:
        batch_op.drop_index('ix_alarm_shelves_since')
        batch_op.drop_index('ix_alarm_shelves_open')

    op.drop_table('alarm_shelves')
