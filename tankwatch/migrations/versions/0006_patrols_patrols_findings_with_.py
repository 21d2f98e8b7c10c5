"""patrols: patrols, findings with rectification, spot-check draws

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:07:15.937195
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('patrol_findings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('patrol_id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('found_ms', sa.BigInteger(), nullable=False),
    sa.Column('found_by', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('evidence', sa.Boolean(), nullable=False),
    sa.Column('rectify_by_ms', sa.BigInteger(), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('answered_ms', sa.BigInteger(), nullable=True),
    sa.Column('answered_by', sa.String(length=64), nullable=True),
    sa.Column('verified_ms', sa.BigInteger(), nullable=True),
    sa.Column('verified_by', sa.String(length=64), nullable=True),
    sa.Column('overdue_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('patrol_findings', schema=None) as batch_op:
        batch_op.create_index('ix_findings_enterprise', ['enterprise_id', 'found_ms'], unique=False)

    op.create_table('patrols',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('live', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('patrols', schema=None) as batch_op:
        batch_op.create_index('ix_patrols_enterprise', ['enterprise_id', 'ts_ms'], unique=False)

    op.create_table('spot_check_draws',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('enterprise_id', sa.String(length=64), nullable=False),
    sa.Column('drawn_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'enterprise_id')
    )


def downgrade() -> None:
    """Undo this revision."""
    op.drop_table('spot_check_draws')
    with op.batch_alter_table('patrols', schema=None) as batch_op:
        batch_op.drop_index('ix_patrols_enterprise')

    op.drop_table('patrols')
    with op.batch_alter_table('patrol_findings', schema=None) as batch_op:
        batch_op.drop_index('ix_findings_enterprise')

    op.drop_table('patrol_findings')
