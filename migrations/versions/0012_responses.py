"""responses

The Responses and Conversations APIs keep an exchange's output items' layout in
messages.output_items (their text being response_content, reasoning_content and tool_calls;
its input items go to messages.input_items, 0010). It stays NULL on existing rows, which is
its meaning for every endpoint but /v1/responses: the answer reads as one assistant message
(its text and tool calls), so nothing needs backfilling. Downgrading drops the column.

Revision ID: 0012_responses
Revises: 0011_usage_estimates
Create Date: 2026-12-02 13:44:47.581425

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_responses'
down_revision = '0011_usage_estimates'
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output_items', sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('output_items')

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
