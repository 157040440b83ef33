"""retention and no-store

conversations.expires_at: a conversation's own lifetime (NULL: the retention policy
decides); conversations.temporary: it expires TEMPORARY_RETENTION_HOURS after its last
activity and is left out of lists and search. users.retention_days: a user's override of
RETENTION_DAYS (NULL: the setting applies). api_keys.no_store: exchanges made with the key
keep no text.

Backfill: existing conversations have no lifetime of their own and are not temporary,
existing users follow the setting, existing keys store text: NULL, false, NULL, false, which
is what the service did before this revision (with RETENTION_DAYS unset, nothing expires).

Indexes for the purge's three scans: conversations with a lifetime of their own (partial, on
expires_at), temporary ones by last activity (partial), and all by last activity (the
policy's). Downgrading drops them and the columns: lifetimes, the temporary flag, the
overrides and the keys' no-store flag are lost.

Revision ID: 0016_retention_no_store
Revises: 0015_tombstones_usage_removed
Create Date: 2026-12-08 00:19:10.162375

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_retention_no_store'
down_revision = '0015_tombstones_usage_removed'
branch_labels = None
depends_on = None

# SQLite: dropping a column rebuilds the table, and the copy forgets AUTOINCREMENT (ids
# would be reused after a delete) unless told again.
KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def upgrade():
    # Plain ADD COLUMN and CREATE INDEX, not batches: SQLite adds a nullable column, or a
    # NOT NULL one with a default, in place, where a batch would rebuild conversations (and
    # lose its full-text triggers).
    op.add_column(
        'api_keys',
        sa.Column('no_store', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column('conversations', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        'conversations',
        sa.Column('temporary', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column('users', sa.Column('retention_days', sa.Integer(), nullable=True))
    op.create_index(
        'ix_conversations_expires_at',
        'conversations',
        ['expires_at'],
        unique=False,
        postgresql_where=sa.text('expires_at IS NOT NULL'),
        sqlite_where=sa.text('expires_at IS NOT NULL'),
    )
    op.create_index(
        'ix_conversations_temporary_last_activity_at',
        'conversations',
        ['last_activity_at'],
        unique=False,
        postgresql_where=sa.text('temporary'),
        sqlite_where=sa.text('temporary'),
    )
    op.create_index(
        'ix_conversations_last_activity_at', 'conversations', ['last_activity_at'], unique=False
    )


def downgrade():
    op.drop_index('ix_conversations_last_activity_at', table_name='conversations')
    op.drop_index('ix_conversations_temporary_last_activity_at', table_name='conversations')
    op.drop_index('ix_conversations_expires_at', table_name='conversations')

    with op.batch_alter_table('users', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('retention_days')

    with op.batch_alter_table('conversations', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('temporary')
        batch_op.drop_column('expires_at')

    with op.batch_alter_table('api_keys', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('no_store')

    restore_sqlite_search()


def restore_sqlite_search():
    """SQLite: dropping a column rebuilt conversations, and its full-text triggers (0005)
    went with it; 0005's own functions drop what is left and make them all again,
    reindexed."""
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
