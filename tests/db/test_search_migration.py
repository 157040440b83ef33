"""Migration 0005: metadata, feedback and the full-text indexes, over existing data."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa

from app.extensions import db
from app.models.unmanaged import (
    FTS_PROMPTS,
    FTS_RESPONSES,
    FTS_TITLES,
    METADATA_INDEX,
    PROMPT_SEARCH_INDEX,
    RESPONSE_SEARCH_INDEX,
    SEARCH_COLUMNS,
    TITLE_SEARCH_INDEX,
)
from app.services import users as users_service
from tests.conftest import disposing, keyed_client, make_app
from tests.db.drift import drift

# The revision before this one: the only place to change when revisions are re-chained.
PREVIOUS = "0004"
SEARCH_INDEXES = {TITLE_SEARCH_INDEX, PROMPT_SEARCH_INDEX, RESPONSE_SEARCH_INDEX}
FTS_TABLES = {FTS_TITLES, FTS_PROMPTS, FTS_RESPONSES}
T = "2026-01-01 00:00:00+00:00"


def seed_before_the_migration(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO users (name, role, is_active, created_at, updated_at)"
            " VALUES ('old', 'user', true, :t, :t)"
        ),
        {"t": T},
    )
    owner = connection.scalar(sa.text("SELECT id FROM users WHERE name = 'old'"))
    connection.execute(
        sa.text(
            "INSERT INTO conversations (owner_id, title, model_type, created_at, updated_at)"
            " VALUES (:owner, 'Voyage à Lyon', 'm', :t, :t)"
        ),
        {"owner": owner, "t": T},
    )
    conversation = connection.scalar(sa.text("SELECT id FROM conversations"))
    connection.execute(
        sa.text(
            "INSERT INTO messages (conversation_id, prompt_content, response_content,"
            " created_at, updated_at) VALUES (:c, 'où manger un bouchon', 'rue Mercière', :t, :t)"
        ),
        {"c": conversation, "t": T},
    )


def search_objects() -> set[str]:
    inspector = sa.inspect(db.engine)
    if db.engine.dialect.name == "postgresql":
        tables = ("conversations", "messages")
        names = {i["name"] for t in tables for i in inspector.get_indexes(t)}
        names |= {c["name"] for t in tables for c in inspector.get_columns(t)}
        return names & (SEARCH_INDEXES | {METADATA_INDEX} | SEARCH_COLUMNS)
    return set(inspector.get_table_names()) & FTS_TABLES


def test_upgrade_indexes_existing_rows_and_downgrade_removes_it_all(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app:
        with app.app_context():
            flask_migrate.upgrade(revision=PREVIOUS)
            with db.engine.begin() as connection:
                seed_before_the_migration(connection)

            flask_migrate.upgrade()  # through this revision to head: no drift there

            on_postgresql = SEARCH_INDEXES | {METADATA_INDEX} | SEARCH_COLUMNS
            expected = on_postgresql if backend == "postgresql" else FTS_TABLES
            assert search_objects() == expected
            assert drift() == []
            with db.engine.connect() as connection:
                metadata = connection.scalar(sa.text("SELECT metadata FROM conversations"))
            # JSONB reads back a dict, SQLite's JSON the text.
            assert metadata == {"postgresql": {}, "sqlite": "{}"}[backend]
            key = users_service.create_key("old").secret

        client = keyed_client(app, key)
        found = {
            q: [r["field"] for r in client.get("/search", query_string={"q": q}).json["results"]]
            for q in ("lyon", "bouchon", "mercière")
        }
        assert found == {"lyon": ["title"], "bouchon": ["prompt"], "mercière": ["response"]}

        with app.app_context():
            flask_migrate.downgrade(revision=PREVIOUS)
            assert search_objects() == set()
            inspector = sa.inspect(db.engine)
            assert "feedback" not in inspector.get_table_names()
            columns = {c["name"] for c in inspector.get_columns("conversations")}
            assert "metadata" not in columns
            with db.engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT prompt_content FROM messages")).scalars()
                assert list(rows) == ["où manger un bouchon"]
                # SQLite: the triggers went with the FTS tables; writes still work.
                connection.execute(sa.text("UPDATE messages SET response_content = 'x'"))

            flask_migrate.upgrade()
            assert drift() == []


def test_triggers_keep_the_sqlite_index_in_step(database_factory):
    with disposing(make_app(database_factory("sqlite"))) as app, app.app_context():
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            seed_before_the_migration(connection)
            connection.execute(sa.text("UPDATE messages SET prompt_content = 'nouveau texte'"))
            # FTS5's own consistency check fails if a trigger missed a change.
            for table in FTS_TABLES:
                connection.execute(
                    sa.text(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
                )
            matches = connection.execute(
                sa.text(f"SELECT rowid FROM {FTS_PROMPTS} WHERE {FTS_PROMPTS} MATCH 'bouchon'")
            ).all()
            assert matches == []
            connection.execute(sa.text("DELETE FROM conversations"))
            for table in FTS_TABLES:
                connection.execute(
                    sa.text(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
                )
