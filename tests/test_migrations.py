"""The migrations are the schema: upgrade from empty, no drift, downgrade to base, again."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.extensions import db
from tests.conftest import disposing, make_app

APP_TABLES = {"api_keys", "conversations", "messages", "usage_daily", "users"}
# The revision before the usage rollups (re-chained at merge: change it here only).
BEFORE_USAGE = "0003"


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


def test_existing_conversations_go_to_a_legacy_owner_and_keep_their_messages(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision="0001")
        with db.engine.begin() as connection:
            for title in ("old one", "old two"):
                connection.execute(
                    sa.text(
                        "INSERT INTO conversations (title, model_type, created_at, updated_at)"
                        " VALUES (:title, 'm', :t, :t)"
                    ),
                    {"title": title, "t": "2026-01-01 00:00:00+00:00"},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'kept?', 'yes', :t, :t)"
                ),
                {"t": "2026-01-01 00:00:00+00:00"},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            users = connection.execute(sa.text("SELECT id, name, role FROM users")).all()
            owners = connection.execute(sa.text("SELECT owner_id FROM conversations")).scalars()
            prompts = connection.execute(sa.text("SELECT prompt_content FROM messages")).scalars()
            owners, prompts = list(owners), list(prompts)
        assert [(name, role) for _, name, role in users] == [("legacy", "user")]
        assert owners == [users[0].id] * 2
        # SQLite rebuilds the table to add the owner: the messages must survive that.
        assert prompts == ["kept?"]

        flask_migrate.downgrade(revision="0001")
        with db.engine.connect() as connection:
            count = connection.execute(sa.text("SELECT count(*) FROM messages")).scalar()
        assert count == 1


def test_an_empty_database_gets_no_legacy_owner(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM users")).scalar() == 0


def test_usage_rollups_are_backfilled_from_existing_exchanges(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_USAGE)
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('u', 'user', true, :t, :t)"
                ),
                {"t": "2026-01-01 00:00:00+00:00"},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO conversations (title, model_type, owner_id, created_at,"
                    " updated_at) VALUES ('c', 'm', 1, :t, :t)"
                ),
                {"t": "2026-01-01 00:00:00+00:00"},
            )
            # Two complete (one older than the per-exchange columns: no model, no timings),
            # one failed, one still in progress (not counted until it ends).
            for outcome, model, tokens, ttft, duration in (
                ("complete", "m", 10, 120, 900),
                ("complete", None, 5, None, None),
                ("failed", "m", None, None, 40),
                (None, "m", None, None, None),
            ):
                connection.execute(
                    sa.text(
                        "INSERT INTO messages (conversation_id, prompt_content,"
                        " response_content, total_tokens, outcome, model, ttft_ms,"
                        " duration_ms, created_at, updated_at)"
                        " VALUES (1, 'p', 'r', :tokens, :outcome, :model, :ttft, :duration,"
                        " :t, :t)"
                    ),
                    {
                        "tokens": tokens,
                        "outcome": outcome,
                        "model": model,
                        "ttft": ttft,
                        "duration": duration,
                        "t": "2026-01-02 23:30:00+00:00",
                    },
                )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT model, outcome, calls, total_tokens, ttft_le_150, duration_le_1000,"
                    " duration_le_50 FROM usage_daily ORDER BY model, outcome"
                )
            ).all()
            days = connection.execute(sa.text("SELECT DISTINCT day FROM usage_daily")).scalars()
            days = [str(day) for day in days]
        assert [tuple(row) for row in rows] == [
            ("", "complete", 1, 5, 0, 0, 0),
            ("m", "complete", 1, 10, 1, 1, 0),
            ("m", "failed", 1, 0, 0, 0, 1),
        ]
        assert days == ["2026-01-02"]

        flask_migrate.downgrade(revision=BEFORE_USAGE)
        assert "usage_daily" not in tables()
