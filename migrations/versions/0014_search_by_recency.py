"""search by recency

A query matching more than a page can rank lists its matches newest first
(app/repositories/search.py): messages (created_at, id) and conversations (owner_id,
created_at, id) let it walk them backwards from the newest until a page is found, instead of
reading every match. Plain indexes, nothing to backfill; PostgreSQL holds writes to the
table while one is built (about 2 s for a million messages).

Revision ID: 0014_search_by_recency
Revises: 0013_usage_details
Create Date: 2026-12-02 16:45:51.575863

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0014_search_by_recency'
down_revision = '0013_usage_details'
branch_labels = None
depends_on = None


def upgrade():
    # Not in a batch: SQLite adds an index in place (a rebuilt table would lose 0005's
    # full-text triggers).
    op.create_index(
        'ix_conversations_owner_id_created_at_id',
        'conversations',
        ['owner_id', 'created_at', 'id'],
        unique=False,
    )
    op.create_index('ix_messages_created_at_id', 'messages', ['created_at', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_messages_created_at_id', table_name='messages')
    op.drop_index('ix_conversations_owner_id_created_at_id', table_name='conversations')
