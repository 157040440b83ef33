"""The migrations are the schema: upgrade from empty, no drift, downgrade to base, again."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.extensions import db
from tests.conftest import disposing, make_app

APP_TABLES = {"conversations", "messages"}


def tables() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def drift() -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_check_downgrade_upgrade(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        assert tables() == set()

        flask_migrate.upgrade()
        assert tables() == APP_TABLES
        assert drift() == []

        flask_migrate.downgrade(revision="base")
        assert tables() == set()

        flask_migrate.upgrade()
        assert tables() == APP_TABLES
        assert drift() == []


def test_cascade_and_indexes_exist_after_upgrade(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade()
        inspector = sa.inspect(db.engine)

        (foreign_key,) = inspector.get_foreign_keys("messages")
        message_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("messages")}
        conversation_indexes = {i["name"] for i in inspector.get_indexes("conversations")}

    assert foreign_key["referred_table"] == "conversations"
    assert foreign_key["options"].get("ondelete") == "CASCADE"
    assert message_indexes["ix_messages_conversation_id_id"] == ["conversation_id", "id"]
    assert "ix_conversations_model_type" in conversation_indexes
