"""routines: safety commitments, duty check-ins and roll calls, 包保 duty records (tables new in issue 22)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:52:37.266782
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('baobao_records',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('duty_id', sa.String(length=64), nullable=False),
    sa.Column('person', sa.String(length=16), nullable=False),
    sa.Column('done_ms', sa.BigInteger(), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hidden_dangers', sa.Integer(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('baobao_records', schema=None) as batch_op:
        batch_op.create_index('ix_baobao_duty', ['source_id', 'duty_id', 'done_ms'], unique=False)

    op.create_table('duty_check_ins',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('desk', sa.String(length=64), nullable=False),
    sa.Column('shift_start_ms', sa.BigInteger(), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('duty_check_ins', schema=None) as batch_op:
        batch_op.create_index('ix_check_ins_shift', ['shift_start_ms', 'desk'], unique=False)

    op.create_table('duty_roll_calls',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('desk', sa.String(length=64), nullable=False),
    sa.Column('requested_ms', sa.BigInteger(), nullable=False),
    sa.Column('due_ms', sa.BigInteger(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('answered_ms', sa.BigInteger(), nullable=True),
    sa.Column('answered_by', sa.String(length=64), nullable=True),
    sa.Column('missed_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('duty_roll_calls', schema=None) as batch_op:
        batch_op.create_index('ix_roll_calls_requested', ['requested_ms'], unique=False)

    op.create_table('safety_commitments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('submitted_ms', sa.BigInteger(), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('committed_by', sa.String(length=64), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('safety_commitments', schema=None) as batch_op:
        batch_op.create_index('ix_commitments_day', ['day', 'enterprise_id'], unique=False)



def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table('safety_commitments', schema=None) as batch_op:
        batch_op.drop_index('ix_commitments_day')

    op.drop_table('safety_commitments')
    with op.batch_alter_table('duty_roll_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_roll_calls_requested')

    op.drop_table('duty_roll_calls')
    with op.batch_alter_table('duty_check_ins', schema=None) as batch_op:
        batch_op.drop_index('ix_check_ins_shift')

    op.drop_table('duty_check_ins')
    with op.batch_alter_table('baobao_records', schema=None) as batch_op:
        batch_op.drop_index('ix_baobao_duty')

    op.drop_table('baobao_records')
