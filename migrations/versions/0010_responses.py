"""responses

The Responses and Conversations APIs keep an exchange's items: messages.input_items (the
input items it added, whole) and messages.output_items (its output items' layout, their
text being response_content, reasoning_content and tool_calls). Both stay NULL on existing
rows, which is their meaning for every endpoint but /v1/responses: the exchange reads as
one user message (its prompt) and one assistant message (its answer and tool calls), so
nothing needs backfilling. Downgrading drops the two columns.

Revision ID: 0010_responses
Revises: 0009_conversation_tree
Create Date: 2026-12-02 13:44:47.581425

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_responses'
down_revision = '0009_conversation_tree'
branch_labels = None
depends_on = None

KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_items', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('output_items', sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('output_items')
        batch_op.drop_column('input_items')

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
