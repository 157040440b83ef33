"""usage rollups: daily usage per owner, model, kind and outcome, with latency histograms

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:24:36.689334

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# Frozen copies of app/models.py's values at this revision: a migration must not change
# when the application's constants do.
BUCKETS = (
    10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
    7500, 10000, 15000, 20000, 30000, 45000, 60000, 90000, 120000, 180000, 300000, 600000,
)
MEASURES = ('ttft', 'duration')
SHARDS = 16


def _bucket_columns(measure):
    return [f'{measure}_le_{bound}' for bound in BUCKETS] + [f'{measure}_le_inf']


def upgrade():
    op.create_table('usage_daily',
    sa.Column('owner_id', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('shard', sa.SmallInteger(), nullable=False),
    sa.Column('calls', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rate_limited', sa.Integer(), server_default='0', nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('response_tokens', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('total_tokens', sa.BigInteger(), server_default='0', nullable=False),
    *[
        sa.Column(name, sa.Integer(), server_default='0', nullable=False)
        for measure in MEASURES
        for name in _bucket_columns(measure)
    ],
    sa.CheckConstraint("kind IN ('exchange', 'title')", name=op.f('ck_usage_daily_kind')),
    sa.PrimaryKeyConstraint('owner_id', 'day', 'model', 'kind', 'outcome', 'shard', name=op.f('pk_usage_daily'))
    )
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.create_index('ix_usage_daily_day', ['day'], unique=False)

    # Backfill: every ended exchange, by the UTC day it was asked. Title calls made before
    # this revision recorded no usage, so there is nothing to backfill for them.
    bind = op.get_bind()
    day = (
        "CAST(timezone('UTC', m.created_at) AS DATE)"
        if bind.dialect.name == 'postgresql'
        else 'date(m.created_at)'
    )
    buckets = []
    for measure in MEASURES:
        lower = None
        for bound in (*BUCKETS, None):
            conditions = [f'm.{measure}_ms > {lower}'] if lower is not None else []
            if bound is not None:
                conditions.append(f'm.{measure}_ms <= {bound}')
            buckets.append(f"SUM(CASE WHEN {' AND '.join(conditions)} THEN 1 ELSE 0 END)")
            lower = bound
    names = [name for measure in MEASURES for name in _bucket_columns(measure)]
    op.execute(
        'INSERT INTO usage_daily (owner_id, day, model, kind, outcome, shard, calls, rate_limited,'
        f' prompt_tokens, response_tokens, total_tokens, {", ".join(names)})'
        f" SELECT c.owner_id, {day}, COALESCE(m.model, ''), 'exchange', m.outcome,"
        f' m.id % {SHARDS}, COUNT(*),'
        ' SUM(CASE WHEN m.status_code = 429 THEN 1 ELSE 0 END),'
        ' COALESCE(SUM(m.prompt_tokens), 0), COALESCE(SUM(m.response_tokens), 0),'
        f' COALESCE(SUM(m.total_tokens), 0), {", ".join(buckets)}'
        ' FROM messages m JOIN conversations c ON c.id = m.conversation_id'
        ' WHERE m.outcome IS NOT NULL'
        f" GROUP BY c.owner_id, {day}, COALESCE(m.model, ''), m.outcome, m.id % {SHARDS}"
    )


def downgrade():
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_daily_day')

    op.drop_table('usage_daily')
