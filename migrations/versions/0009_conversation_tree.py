"""conversation tree

A conversation becomes a tree of exchanges, as chat apps keep it: messages.parent_id (the
exchange each one follows; NULL for a first one) and conversations.current_message_id (the
leaf of the branch the user sees). Conversations also get last_activity_at and
message_count (order=recent), archived and pinned. The /v1 gateway's history fingerprint
moves from the conversation to each exchange (the history it ended), so a client that
resends a shorter history branches from the exchange it matches.

Existing data becomes one linear branch per conversation: each exchange's parent is the
one before it, the current exchange is the last; last_activity_at is the later of the
conversation's creation and its last exchange; a conversation's fingerprint goes to its
last complete /v1 exchange. Downgrading flattens the tree back to creation order and gives
each conversation the fingerprint of its current exchange.

Revision ID: 0009_conversation_tree
Revises: 0008
Create Date: 2026-12-02 13:37:11.913201

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_conversation_tree'
down_revision = '0008'
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}
FINGERPRINT_INDEX = 'ix_messages_history_fingerprint'
FINGERPRINT_SET = sa.text('history_fingerprint IS NOT NULL')


def upgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    # Added first (no table rebuild), filled, then constrained.
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current_message_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('message_count', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('pinned', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('history_fingerprint', sa.String(length=64), nullable=True))

    # One linear branch per conversation, in creation (id) order.
    op.execute(
        'UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p'
        ' WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id)'
    )
    # SQLite's two-argument max() is NULL if either is; PostgreSQL's greatest() skips NULLs.
    latest = 'max(created_at, coalesce({last}, created_at))' if sqlite else 'greatest(created_at, {last})'
    last = '(SELECT max(m.created_at) FROM messages m WHERE m.conversation_id = conversations.id)'
    op.execute(
        'UPDATE conversations SET'
        ' current_message_id = (SELECT max(m.id) FROM messages m'
        ' WHERE m.conversation_id = conversations.id),'
        ' message_count = (SELECT count(*) FROM messages m'
        ' WHERE m.conversation_id = conversations.id),'
        f' last_activity_at = {latest.format(last=last)}'
    )
    # The conversation's fingerprint was left by its last complete /v1 exchange.
    op.execute(
        'UPDATE messages SET history_fingerprint = (SELECT c.history_fingerprint'
        ' FROM conversations c WHERE c.id = messages.conversation_id)'
        " WHERE id IN (SELECT max(m.id) FROM messages m WHERE m.endpoint = 'v1'"
        " AND m.outcome = 'complete' GROUP BY m.conversation_id)"
    )

    with op.batch_alter_table('conversations', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.alter_column('last_activity_at', existing_type=sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())
        batch_op.drop_index('ix_conversations_owner_id_history_fingerprint')
        batch_op.drop_column('history_fingerprint')
        batch_op.create_index('ix_conversations_recent', ['owner_id', 'archived', 'pinned', 'last_activity_at', 'id'], unique=False)

    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.create_index(FINGERPRINT_INDEX, ['history_fingerprint'], unique=False, postgresql_where=FINGERPRINT_SET, sqlite_where=FINGERPRINT_SET)
        batch_op.create_index('ix_messages_parent_id_conversation_id', ['parent_id', 'conversation_id'], unique=False)
        batch_op.create_foreign_key('fk_messages_parent_id_messages', 'messages', ['parent_id'], ['id'])

    restore_sqlite_search()


def downgrade():
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history_fingerprint', sa.VARCHAR(length=64), nullable=True))
    # The fingerprint a /v1 client continues is now its current exchange's.
    op.execute(
        'UPDATE conversations SET history_fingerprint = (SELECT m.history_fingerprint'
        ' FROM messages m WHERE m.id = conversations.current_message_id)'
    )

    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint('fk_messages_parent_id_messages', type_='foreignkey')
        batch_op.drop_index('ix_messages_parent_id_conversation_id')
        batch_op.drop_index(FINGERPRINT_INDEX, postgresql_where=FINGERPRINT_SET, sqlite_where=FINGERPRINT_SET)
        batch_op.drop_column('history_fingerprint')
        batch_op.drop_column('parent_id')

    with op.batch_alter_table('conversations', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_index('ix_conversations_recent')
        batch_op.create_index('ix_conversations_owner_id_history_fingerprint', ['owner_id', 'history_fingerprint'], unique=False)
        batch_op.drop_column('pinned')
        batch_op.drop_column('archived')
        batch_op.drop_column('message_count')
        batch_op.drop_column('last_activity_at')
        batch_op.drop_column('current_message_id')

    restore_sqlite_search()


def restore_sqlite_search():
    """SQLite: rebuilding both tables dropped their full-text triggers (0005); 0005's own
    function makes them again and reindexes."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    import importlib.util
    from pathlib import Path

    path = next(Path(__file__).parent.glob('0005_*.py'))
    spec = importlib.util.spec_from_file_location('revision_0005', path)
    revision_0005 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision_0005)
    revision_0005.create_sqlite_search()
