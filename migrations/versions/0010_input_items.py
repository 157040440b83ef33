"""input items

messages.input_items: the input an exchange added to its conversation, as the client sent
it, in order (chat messages: user turns, tool results, ...). Existing exchanges of the
seed's endpoints sent exactly their prompt: they get it as one user message. Existing /v1
exchanges keep NULL: what their clients sent besides the prompt was not stored.

Revision ID: 0010_input_items
Revises: 0009_conversation_tree
Create Date: 2026-12-02 13:41:22.349277

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_input_items'
down_revision = '0009_conversation_tree'
branch_labels = None
depends_on = None

# SQLite: dropping a column rebuilds the table, and the copy forgets AUTOINCREMENT (ids
# would be reused after a delete) unless told again.
KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}

# The prompt as one user message, in each engine's JSON functions.
USER_ITEM = {
    'postgresql': "json_build_array(json_build_object('role', 'user', 'content', prompt_content))",
    'sqlite': "json_array(json_object('role', 'user', 'content', prompt_content))",
}


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_items', sa.JSON(none_as_null=True), nullable=True))

    item = USER_ITEM[op.get_bind().dialect.name]
    op.execute(
        f"UPDATE messages SET input_items = {item} "
        "WHERE endpoint IS NULL OR endpoint <> 'v1'"
    )


def downgrade():
    with op.batch_alter_table('messages', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('input_items')

    restore_sqlite_search()


def restore_sqlite_search():
    """SQLite: dropping the column rebuilt messages, and its full-text triggers (0005) went
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
