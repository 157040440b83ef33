"""api key expiry

Adds api_keys.expires_at. Existing keys get NULL: they never expire, as when they were made.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 06:56:31.774758

"""
from alembic import op
import sqlalchemy as sa


# SQLite: batch mode rebuilds the table to drop a column, and the copy forgets
# AUTOINCREMENT (ids would be reused after a delete) unless told again.
KEEP_AUTOINCREMENT = {'sqlite_autoincrement': True}

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('api_keys', schema=None, table_kwargs=KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column('expires_at')
