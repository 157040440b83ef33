"""usage estimates

messages.usage_estimated: the exchange's tokens are an estimate, the upstream's usage having
not been received (client left, failure, time-out, interruption). usage_daily.estimated and
usage_daily.estimated_tokens: how many of a rollup's exchanges were estimated, and their
total tokens, for /usage.

Backfill: every existing exchange holds what the upstream reported (or nothing), so it is
not estimated (false); the existing rollups hold no estimated exchange (0).

Revision ID: 0011_usage_estimates
Revises: 0010_input_items
Create Date: 2026-12-02 13:40:22.579383

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_usage_estimates'
down_revision = '0010_input_items'
branch_labels = None
depends_on = None

# SQLite: dropping a column rebuilds the table, and the copy forgets AUTOINCREMENT (ids
# would be reused after a delete) unless told again.
KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def upgrade():
    # Plain ADD COLUMN, not a batch: SQLite adds a NOT NULL column with a default in place,
    # where a batch would rebuild messages (and lose its full-text triggers).
    op.add_column(
        'messages',
        sa.Column('usage_estimated', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        'usage_daily', sa.Column('estimated', sa.Integer(), server_default='0', nullable=False)
    )
    op.add_column(
        'usage_daily',
        sa.Column('estimated_tokens', sa.BigInteger(), server_default='0', nullable=False),
    )


def downgrade():
    with op.batch_alter_table('usage_daily', schema=None) as batch_op:
        batch_op.drop_column('estimated_tokens')
        batch_op.drop_column('estimated')

    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('usage_estimated')

    restore_sqlite_search()


def restore_sqlite_search():
    """SQLite: dropping a column rebuilt messages, and its full-text triggers (0005) went
    with it (the conversations' stayed); 0005's own functions drop what is left and make
    them all again, reindexed."""
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
