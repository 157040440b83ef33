"""The migrations are the schema: upgrade from empty, no drift, downgrade to base, again."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa

from app.extensions import db
from app.models.unmanaged import FTS_TABLE_PREFIX
from app.services.auth import authenticate, generate_key
from tests.conftest import disposing, make_app
from tests.db.drift import drift

APP_TABLES = {
    "api_keys",
    "conversations",
    "feedback",
    "messages",
    "usage_daily",
    "usage_removed",
    "users",
}
# The revision before the usage rollups (re-chained at merge: change it here only).
BEFORE_USAGE = "0005"
# The revision before api key expiry (0004); the one place to change when revisions re-chain.
BEFORE_KEY_EXPIRY = "0003"


def tables() -> set[str]:
    # SQLite's FTS5 search tables are checked in tests/db/test_search_migration.py.
    names = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
    return {name for name in names if not name.startswith(FTS_TABLE_PREFIX)}


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

        foreign_keys = {
            tuple(fk["constrained_columns"]): fk for fk in inspector.get_foreign_keys("messages")
        }
        foreign_key = foreign_keys[("conversation_id",)]
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


def test_existing_keys_survive_key_expiry_and_never_expire(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_KEY_EXPIRY)
        key = generate_key()
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('old', 'user', :yes, :t, :t)"
                ),
                {"yes": True, "t": "2026-01-01 00:00:00+00:00"},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO api_keys (user_id, prefix, secret_hash, created_at)"
                    " VALUES (1, :prefix, :hash, :t)"
                ),
                {"prefix": key.prefix, "hash": key.secret_hash, "t": "2026-01-01 00:00:00+00:00"},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT prefix, expires_at FROM api_keys")).all()
        assert [tuple(row) for row in rows] == [(key.prefix, None)]
        assert drift() == []
        assert authenticate(key.secret).name == "old"

        flask_migrate.downgrade(revision=BEFORE_KEY_EXPIRY)
        with db.engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("api_keys")}
            prefixes = connection.execute(sa.text("SELECT prefix FROM api_keys")).scalars().all()
        assert "expires_at" not in columns
        assert prefixes == [key.prefix]


# The revision before the gateway's, and the gateway's (re-chained at merge: change them
# here only).
BEFORE_GATEWAY = "0006"
GATEWAY = "0007"


def test_the_gateway_revision_keeps_existing_rows_and_downgrades(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_GATEWAY)
        stamp = {"t": "2026-01-01 00:00:00+00:00"}
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('old', 'user', true, :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, created_at,"
                    " updated_at) VALUES (1, 'old', 'm', :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " is_success, status_code, outcome, created_at, updated_at)"
                    " VALUES (1, 'kept?', 'yes', true, 200, 'complete', :t, :t)"
                ),
                stamp,
            )

        flask_migrate.upgrade(revision=GATEWAY)

        with db.engine.connect() as connection:
            conversation = connection.execute(
                sa.text("SELECT title, history_fingerprint FROM conversations")
            ).one()
            message = connection.execute(
                sa.text(
                    "SELECT prompt_content, response_content, tool_calls, request_params,"
                    " system_prompt FROM messages"
                )
            ).one()
        indexes = {
            i["name"]: i["column_names"] for i in sa.inspect(db.engine).get_indexes("conversations")
        }
        assert tuple(conversation) == ("old", None)
        assert tuple(message) == ("kept?", "yes", None, None, None)
        assert indexes["ix_conversations_owner_id_history_fingerprint"] == [
            "owner_id",
            "history_fingerprint",
        ]
        flask_migrate.upgrade()
        assert drift() == []

        flask_migrate.downgrade(revision=BEFORE_GATEWAY)
        with db.engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT prompt_content FROM messages")).scalars()
            assert list(kept) == ["kept?"]
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert "tool_calls" not in columns


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


# The revision before the conversation tree (re-chained at merge: change it here only).
BEFORE_TREE = "0008"
OLD = "2026-01-01 00:00:00+00:00"


def test_the_tree_revision_makes_each_conversation_one_branch_and_downgrades(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_TREE)
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('old', 'user', true, :t, :t)"
                ),
                {"t": OLD},
            )
            # 1: three exchanges, the last a complete /v1 one that left the fingerprint;
            # 2: none, created after 1's last exchange.
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, history_fingerprint,"
                    " created_at, updated_at) VALUES (1, 'one', 'm', :fp, :t, :t)"
                ),
                {"fp": "f" * 64, "t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, created_at,"
                    " updated_at) VALUES (1, 'two', 'm', :t, :t)"
                ),
                {"t": "2026-01-05 00:00:00+00:00"},
            )
            for prompt, endpoint, outcome, day in (
                ("a", "messages", "complete", "02"),
                ("b", "messages", "failed", "03"),
                ("c", "v1", "complete", "04"),
            ):
                run(
                    sa.text(
                        "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                        " endpoint, outcome, created_at, updated_at)"
                        " VALUES (1, :p, 'r', :e, :o, :t, :t)"
                    ),
                    {"p": prompt, "e": endpoint, "o": outcome, "t": f"2026-01-{day} 00:00:00Z"},
                )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            messages = connection.execute(
                sa.text("SELECT id, parent_id, history_fingerprint FROM messages ORDER BY id")
            ).all()
            conversations = connection.execute(
                sa.text(
                    "SELECT id, current_message_id, message_count, archived, pinned,"
                    " last_activity_at FROM conversations ORDER BY id"
                )
            ).all()
        assert [tuple(m) for m in messages] == [(1, None, None), (2, 1, None), (3, 2, "f" * 64)]
        assert [tuple(c)[:5] for c in conversations] == [
            (1, 3, 3, False, False),
            (2, None, 0, False, False),
        ]
        # SQLite answers its text; both say the last exchange's day, then the creation's.
        assert [str(c.last_activity_at)[:10] for c in conversations] == [
            "2026-01-04",
            "2026-01-05",
        ]
        assert drift() == []
        with db.engine.begin() as connection:
            # The parent foreign key (no cascade of its own) lets a conversation go whole.
            connection.execute(sa.text("DELETE FROM conversations WHERE id = 1"))

        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " history_fingerprint, created_at, updated_at)"
                    " VALUES (2, 'p', 'r', :fp, :t, :t)"
                ),
                {"fp": "e" * 64, "t": OLD},
            )
            connection.execute(
                sa.text("UPDATE conversations SET current_message_id = 4 WHERE id = 2")
            )

        flask_migrate.downgrade(revision=BEFORE_TREE)

        with db.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, history_fingerprint FROM conversations")
            ).all()
            kept = connection.execute(sa.text("SELECT prompt_content FROM messages")).scalars()
            kept = list(kept)
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert [tuple(row) for row in rows] == [(2, "e" * 64)]
        assert kept == ["p"]
        assert "parent_id" not in columns


# The revision before input items (re-chained at merge: change it here only).
BEFORE_INPUT_ITEMS = "0009_conversation_tree"


def test_input_items_are_backfilled_for_the_seeds_endpoints_and_downgrade(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_INPUT_ITEMS)
        stamp = {"t": "2026-01-01 00:00:00+00:00"}
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('old', 'user', true, :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, created_at,"
                    " updated_at) VALUES (1, 'old', 'm', :t, :t)"
                ),
                stamp,
            )
            for prompt, endpoint in (
                ('a "quoted" prompt \u00e9', "messages"),
                ("seed", None),
                ("from v1", "v1"),
            ):
                connection.execute(
                    sa.text(
                        "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                        " endpoint, created_at, updated_at) VALUES (1, :p, 'r', :e, :t, :t)"
                    ),
                    {**stamp, "p": prompt, "e": endpoint},
                )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            rows = connection.execute(
                sa.select(sa.column("prompt_content"), sa.column("input_items", sa.JSON()))
                .select_from(sa.table("messages"))
                .order_by(sa.column("id"))
            ).all()
        assert [tuple(row) for row in rows] == [
            (
                'a "quoted" prompt \u00e9',
                [{"role": "user", "content": 'a "quoted" prompt \u00e9'}],
            ),
            ("seed", [{"role": "user", "content": "seed"}]),
            ("from v1", None),
        ]
        assert drift() == []

        flask_migrate.downgrade(revision=BEFORE_INPUT_ITEMS)
        with db.engine.connect() as connection:
            kept = connection.execute(
                sa.text("SELECT prompt_content FROM messages ORDER BY id")
            ).scalars()
            assert list(kept) == ['a "quoted" prompt \u00e9', "seed", "from v1"]
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert "input_items" not in columns


# The revision before the usage estimates (re-chained at merge: change it here only).
BEFORE_ESTIMATES = "0010_input_items"


def test_the_estimates_revision_keeps_existing_rows_unestimated_and_downgrades(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_ESTIMATES)
        stamp = {"t": "2026-01-02 10:00:00+00:00"}
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('old', 'user', true, :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, created_at,"
                    " updated_at) VALUES (1, 'old', 'm', :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " is_success, status_code, outcome, total_tokens, model, created_at,"
                    " updated_at) VALUES (1, 'kept?', 'findable', true, 200, 'complete', 7, 'm',"
                    " :t, :t)"
                ),
                stamp,
            )
            connection.execute(
                sa.text(
                    "INSERT INTO usage_daily (owner_id, day, model, kind, outcome, shard, calls,"
                    " total_tokens) VALUES (1, '2026-01-02', 'm', 'exchange', 'complete', 1, 1, 7)"
                )
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            message = connection.execute(
                sa.text("SELECT prompt_content, total_tokens, usage_estimated FROM messages")
            ).one()
            rollup = connection.execute(
                sa.text("SELECT calls, total_tokens, estimated, estimated_tokens FROM usage_daily")
            ).one()
        assert tuple(message) == ("kept?", 7, False)
        assert tuple(rollup) == (1, 7, 0, 0)
        assert drift() == []

        flask_migrate.downgrade(revision=BEFORE_ESTIMATES)
        with db.engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT prompt_content FROM messages")).scalars()
            assert list(kept) == ["kept?"]
            if backend == "sqlite":
                # The rebuilt messages table is searchable again (0005's triggers and index).
                found = connection.execute(
                    sa.text(
                        "SELECT rowid FROM fts_message_responses"
                        " WHERE fts_message_responses MATCH 'findable'"
                    )
                ).scalars()
                assert list(found) == [1]
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        rollup_columns = {c["name"] for c in sa.inspect(db.engine).get_columns("usage_daily")}
        assert "usage_estimated" not in columns
        assert not {"estimated", "estimated_tokens"} & rollup_columns


# The revision before the Responses API's items (re-chained at merge: change it here only).
BEFORE_RESPONSES = "0011_usage_estimates"


def test_the_responses_revision_keeps_exchanges_and_their_search_both_ways(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_RESPONSES)
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('u', 'user', true, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, last_activity_at,"
                    " created_at, updated_at) VALUES (1, 't', 'm', :t, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'zebra', 'okapi', :t, :t)"
                ),
                {"t": OLD},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT prompt_content, output_items FROM messages")
            ).one()
        assert tuple(row) == ("zebra", None)
        assert drift() == []

        flask_migrate.downgrade(revision=BEFORE_RESPONSES)

        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert "output_items" not in columns
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'giraffe', 'r', :t, :t)"
                ),
                {"t": OLD},
            )
            found = (
                connection.execute(
                    sa.text("SELECT rowid FROM fts_message_prompts WHERE fts_message_prompts"
                            " MATCH 'zebra OR giraffe' ORDER BY rowid")
                ).scalars().all()
                if backend == "sqlite"
                else connection.execute(
                    sa.text("SELECT id FROM messages WHERE prompt_search @@ "
                            "to_tsquery('simple', 'zebra | giraffe') ORDER BY id")
                ).scalars().all()
            )  # fmt: skip
        assert found == [1, 2]


# The revision before the usage details (re-chained at merge: change it here only).
BEFORE_USAGE_DETAILS = "0012_responses"


def test_the_usage_details_revision_keeps_exchanges_unreported_and_their_search_both_ways(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_USAGE_DETAILS)
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('u', 'user', true, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, last_activity_at,"
                    " created_at, updated_at) VALUES (1, 't', 'm', :t, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " prompt_tokens, created_at, updated_at)"
                    " VALUES (1, 'zebra', 'okapi', 5, :t, :t)"
                ),
                {"t": OLD},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            row = connection.execute(
                sa.text(
                    "SELECT prompt_content, prompt_tokens, cached_tokens, reasoning_tokens,"
                    " refusal_content FROM messages"
                )
            ).one()
        assert tuple(row) == ("zebra", 5, None, None, None)
        assert drift() == []

        flask_migrate.downgrade(revision=BEFORE_USAGE_DETAILS)

        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert not {"cached_tokens", "reasoning_tokens", "refusal_content"} & columns
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'giraffe', 'r', :t, :t)"
                ),
                {"t": OLD},
            )
            found = (
                connection.execute(
                    sa.text("SELECT rowid FROM fts_message_prompts WHERE fts_message_prompts"
                            " MATCH 'zebra OR giraffe' ORDER BY rowid")
                ).scalars().all()
                if backend == "sqlite"
                else connection.execute(
                    sa.text("SELECT id FROM messages WHERE prompt_search @@ "
                            "to_tsquery('simple', 'zebra | giraffe') ORDER BY id")
                ).scalars().all()
            )  # fmt: skip
        assert found == [1, 2]


# The revision before the newest-first search indexes (re-chained at merge: change it here).
BEFORE_SEARCH_BY_RECENCY = "0013_usage_details"
RECENCY_INDEXES = {
    "conversations": ("ix_conversations_owner_id_created_at_id", ["owner_id", "created_at", "id"]),
    "messages": ("ix_messages_created_at_id", ["created_at", "id"]),
}


def recency_indexes() -> dict[str, list[str]]:
    inspector = sa.inspect(db.engine)
    wanted = {name for name, _ in RECENCY_INDEXES.values()}
    return {
        index["name"]: index["column_names"]
        for table in RECENCY_INDEXES
        for index in inspector.get_indexes(table)
        if index["name"] in wanted
    }


def test_the_search_by_recency_revision_indexes_existing_rows_and_downgrades(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_SEARCH_BY_RECENCY)
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('u', 'user', true, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, last_activity_at,"
                    " created_at, updated_at) VALUES (1, 't', 'm', :t, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'zebra', 'okapi', :t, :t)"
                ),
                {"t": OLD},
            )

        flask_migrate.upgrade()

        assert recency_indexes() == dict(RECENCY_INDEXES.values())
        assert drift() == []
        with db.engine.connect() as connection:
            newest = connection.execute(
                sa.text("SELECT id FROM messages ORDER BY created_at DESC, id DESC")
            ).scalars()
            assert list(newest) == [1]

        flask_migrate.downgrade(revision=BEFORE_SEARCH_BY_RECENCY)

        assert recency_indexes() == {}
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'giraffe', 'r', :t, :t)"
                ),
                {"t": OLD},
            )
            found = (
                connection.execute(
                    sa.text("SELECT rowid FROM fts_message_prompts WHERE fts_message_prompts"
                            " MATCH 'zebra OR giraffe' ORDER BY rowid")
                ).scalars().all()
                if backend == "sqlite"
                else connection.execute(
                    sa.text("SELECT id FROM messages WHERE prompt_search @@ "
                            "to_tsquery('simple', 'zebra | giraffe') ORDER BY id")
                ).scalars().all()
            )  # fmt: skip
        # The full-text index still follows the table (its triggers, on SQLite).
        assert found == [1, 2]


# The revision before tombstones and the usage ledger (re-chained at merge: change it here).
BEFORE_TOMBSTONES = "0014_search_by_recency"


def test_the_tombstones_revision_keeps_exchanges_undeleted_and_downgrades(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_TOMBSTONES)
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                    " VALUES ('u', 'user', true, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, last_activity_at,"
                    " created_at, updated_at) VALUES (1, 't', 'm', :t, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " is_success, outcome, total_tokens, created_at, updated_at)"
                    " VALUES (1, 'zebra', 'okapi', true, 'complete', 9, :t, :t)"
                ),
                {"t": OLD},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT prompt_content, total_tokens, deleted_at FROM messages")
            ).one()
            carried = connection.execute(sa.text("SELECT count(*) FROM usage_removed")).scalar()
        assert tuple(row) == ("zebra", 9, None)
        assert carried == 0
        assert drift() == []
        with db.engine.begin() as connection:
            # The ledger takes usage_daily's rows as they are.
            connection.execute(
                sa.text(
                    "INSERT INTO usage_removed (owner_id, day, model, kind, outcome, shard,"
                    " calls, total_tokens) VALUES (1, '2026-01-01', 'm', 'exchange',"
                    " 'complete', 3, 1, 9)"
                )
            )

        flask_migrate.downgrade(revision=BEFORE_TOMBSTONES)

        assert "usage_removed" not in tables()
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("messages")}
        assert "deleted_at" not in columns
        with db.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'giraffe', 'r', :t, :t)"
                ),
                {"t": OLD},
            )
            found = (
                connection.execute(
                    sa.text("SELECT rowid FROM fts_message_prompts WHERE fts_message_prompts"
                            " MATCH 'zebra OR giraffe' ORDER BY rowid")
                ).scalars().all()
                if backend == "sqlite"
                else connection.execute(
                    sa.text("SELECT id FROM messages WHERE prompt_search @@ "
                            "to_tsquery('simple', 'zebra | giraffe') ORDER BY id")
                ).scalars().all()
            )  # fmt: skip
        # The rebuilt table keeps its rows, its ids and its full-text index (SQLite's triggers).
        assert found == [1, 2]


# The revision before retention and no-store keys (re-chained at merge: change it here).
BEFORE_RETENTION = "0015_tombstones_usage_removed"
RETENTION_INDEXES = {
    "ix_conversations_expires_at_id": ["expires_at", "id"],
    "ix_conversations_temporary_last_activity_at_id": ["last_activity_at", "id"],
    "ix_conversations_last_activity_at_id": ["last_activity_at", "id"],
}


def retention_indexes() -> dict[str, list[str]]:
    return {
        index["name"]: index["column_names"]
        for index in sa.inspect(db.engine).get_indexes("conversations")
        if index["name"] in RETENTION_INDEXES
    }


def test_the_retention_revision_keeps_everything_as_it_was_and_downgrades(
    backend, database_factory
):
    with disposing(make_app(database_factory(backend))) as app, app.app_context():
        flask_migrate.upgrade(revision=BEFORE_RETENTION)
        key = generate_key()
        with db.engine.begin() as connection:
            run = connection.execute
            run(
                sa.text(
                    "INSERT INTO users (name, role, is_active, rpm_limit, created_at, updated_at)"
                    " VALUES ('u', 'user', true, 7, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO api_keys (user_id, prefix, secret_hash, created_at)"
                    " VALUES (1, :prefix, :hash, :t)"
                ),
                {"prefix": key.prefix, "hash": key.secret_hash, "t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, pinned,"
                    " last_activity_at, created_at, updated_at)"
                    " VALUES (1, 'okapi', 'm', true, :t, :t, :t)"
                ),
                {"t": OLD},
            )
            run(
                sa.text(
                    "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                    " created_at, updated_at) VALUES (1, 'zebra', 'r', :t, :t)"
                ),
                {"t": OLD},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            conversation = connection.execute(
                sa.text("SELECT title, pinned, expires_at, temporary FROM conversations")
            ).one()
            user = connection.execute(sa.text("SELECT rpm_limit, retention_days FROM users")).one()
            no_store = connection.execute(sa.text("SELECT no_store FROM api_keys")).scalar()
        assert tuple(conversation) == ("okapi", True, None, False)
        assert tuple(user) == (7, None)
        assert not no_store
        assert retention_indexes() == RETENTION_INDEXES
        assert drift() == []
        assert authenticate(key.secret).name == "u"
        with db.engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE conversations SET temporary = true, expires_at = :t"),
                {"t": OLD},
            )

        flask_migrate.downgrade(revision=BEFORE_RETENTION)

        assert retention_indexes() == {}
        inspector = sa.inspect(db.engine)
        columns = {
            table: {c["name"] for c in inspector.get_columns(table)}
            for table in ("conversations", "users", "api_keys")
        }
        assert not {"expires_at", "temporary"} & columns["conversations"]
        assert "retention_days" not in columns["users"]
        assert "no_store" not in columns["api_keys"]
        with db.engine.begin() as connection:
            kept = connection.execute(sa.text("SELECT title FROM conversations")).scalars()
            assert list(kept) == ["okapi"]
            connection.execute(
                sa.text(
                    "INSERT INTO conversations (owner_id, title, model_type, last_activity_at,"
                    " created_at, updated_at) VALUES (1, 'giraffe', 'm', :t, :t, :t)"
                ),
                {"t": OLD},
            )
            found = (
                connection.execute(
                    sa.text("SELECT rowid FROM fts_conversation_titles WHERE"
                            " fts_conversation_titles MATCH 'okapi OR giraffe' ORDER BY rowid")
                ).scalars().all()
                if backend == "sqlite"
                else connection.execute(
                    sa.text("SELECT id FROM conversations WHERE title_search @@ "
                            "to_tsquery('simple', 'okapi | giraffe') ORDER BY id")
                ).scalars().all()
            )  # fmt: skip
        # The rebuilt table keeps its rows and its full-text index (SQLite's triggers).
        assert found == [1, 2]
