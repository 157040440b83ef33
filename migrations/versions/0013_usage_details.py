"""usage details

The upstream's usage details (Chat Completions' prompt_tokens_details.cached_tokens and
completion_tokens_details.reasoning_tokens) go to messages.cached_tokens and
messages.reasoning_tokens, and a refusal (Chat Completions' ``refusal``) to
messages.refusal_content. All stay NULL on existing rows, which is their meaning: not
reported (no refusal), so nothing needs backfilling. Downgrading drops the columns.

Revision ID: 0013_usage_details
Revises: 0012_responses
Create Date: 2026-12-02 17:08:30.463933

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_usage_details'
down_revision = '0012_responses'
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refusal_content', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('cached_tokens', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reasoning_tokens', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('reasoning_tokens')
        batch_op.drop_column('cached_tokens')
        batch_op.drop_column('refusal_content')

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
