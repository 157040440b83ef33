"""tombstones and usage removed

messages.deleted_at: when an exchange was deleted as a tombstone (its content erased, its
place in the tree and its accounting kept); NULL on every existing row, which is its
meaning: not deleted. usage_removed: what deleted exchanges had added to usage_daily, by
the same key and sums, so that `flask usage rebuild` still counts tokens already spent;
empty at first (nothing deleted before this revision was carried).

Downgrading drops both: a tombstone stays as an exchange with its content erased, and the
usage of exchanges deleted meanwhile is lost to a later rebuild (usage_daily keeps it).

Revision ID: 0015_tombstones_usage_removed
Revises: 0014_search_by_recency
Create Date: 2026-12-07 23:31:15.698089

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_tombstones_usage_removed'
down_revision = '0014_search_by_recency'
branch_labels = None
depends_on = None

# Frozen copies of app/models.py's values at this revision: a migration must not change
# when the application's constants do.
BUCKETS = (
    10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
    7500, 10000, 15000, 20000, 30000, 45000, 60000, 90000, 120000, 180000, 300000, 600000,
)
MEASURES = ('ttft', 'duration')

# SQLite: dropping a column rebuilds the table, and the copy forgets AUTOINCREMENT (ids
# would be reused after a delete) unless told again.
KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def _bucket_columns(measure):
    return [f'{measure}_le_{bound}' for bound in BUCKETS] + [f'{measure}_le_inf']


def upgrade():
    # usage_daily's columns, without its index by day: nothing reads the ledger by day alone.
    op.create_table('usage_removed',
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
    sa.Column('estimated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('estimated_tokens', sa.BigInteger(), server_default='0', nullable=False),
    *[
        sa.Column(name, sa.Integer(), server_default='0', nullable=False)
        for measure in MEASURES
        for name in _bucket_columns(measure)
    ],
    sa.CheckConstraint("kind IN ('exchange', 'title')", name=op.f('ck_usage_removed_kind')),
    sa.PrimaryKeyConstraint('owner_id', 'day', 'model', 'kind', 'outcome', 'shard', name=op.f('pk_usage_removed'))
    )
    # Plain ADD COLUMN, not a batch: SQLite adds a nullable column in place, where a batch
    # would rebuild messages (and lose its full-text triggers).
    op.add_column('messages', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('deleted_at')

    op.drop_table('usage_removed')
    restore_sqlite_search()


def restore_sqlite_search():
    """SQLite: dropping a column rebuilt messages, and its full-text triggers (0005) went
    with it; 0005's own functions drop what is left of the search and make it again."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    import importlib.util
    from pathlib import Path

    path = next(Path(__file__).parent.glob('0005_*.py'))
    spec = importlib.util.spec_from_file_location('revision_0005', path)
    revision_0005 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision_0005)
    revision_0005.drop_search()
    revision_0005.create_sqlite_search()
