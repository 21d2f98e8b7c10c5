"""uplink: lower tiers' base data and upload quality (uplink_base, uplink_minutes, uplink_senders)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 07:04:47.836072
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('uplink_base',
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('company_code', sa.String(length=32), nullable=False),
    sa.Column('received_ms', sa.BigInteger(), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('service', 'code')
    )
    op.create_table('uplink_minutes',
    sa.Column('company_code', sa.String(length=32), nullable=False),
    sa.Column('minute_ms', sa.BigInteger(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('resent', sa.Integer(), nullable=False),
    sa.Column('resent_records', sa.Integer(), nullable=False),
    sa.Column('delay_ms_sum', sa.BigInteger(), nullable=False),
    sa.Column('delay_n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('company_code', 'minute_ms')
    )
    op.create_table('uplink_senders',
    sa.Column('company_code', sa.String(length=32), nullable=False),
    sa.Column('app_id', sa.String(length=64), nullable=False),
    sa.Column('first_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_ms', sa.BigInteger(), nullable=False),
    sa.Column('heartbeat_ms', sa.BigInteger(), nullable=True),
    sa.Column('points_total', sa.Integer(), nullable=True),
    sa.Column('points_online', sa.Integer(), nullable=True),
    sa.Column('backlog', sa.Integer(), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('company_code')
    )


def downgrade() -> None:
    """Undo this revision."""
    op.drop_table('uplink_senders')
    op.drop_table('uplink_minutes')
    op.drop_table('uplink_base')
