"""The purge pass: `flask conversations purge` and its dry run, the walk oldest first past a
conversation with an exchange in progress, one log line and the metrics per pass, the
worker's timer; and the canary: nothing of a purged conversation is left in any endpoint,
table, database file or log."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message
from app.services.purge_ticker import PurgeTicker
from tests.conftest import keyed_client
from tests.deletion.helpers import branch
from tests.deletion.test_erasure import stored_bytes
from tests.fake_llm import Behavior
from tests.prometheus import samples, value
from tests.retention.helpers import DAY, exists, iso, purge, purged_ids

SECRET = "wombatsecret"


def create(client, **body) -> int:
    response = client.post("/conversations", json={"title": "t", **body})
    assert response.status_code == 201, response.json
    return response.json["id"]


def in_progress(database, conversation_id: int) -> int:
    """An exchange in progress, as a worker's stream leaves it until it ends."""
    (uid,) = database.add(Message(conversation_id=conversation_id, prompt_content="p"))
    return uid


class TestTheCommand:
    def test_a_dry_run_lists_what_a_pass_deletes_and_the_pass_deletes_it(
        self, app, client, configure, database, fake_llm, alice, wall_clock
    ):
        configure(RETENTION_DAYS=1)
        expired = create(client, title=f"title {SECRET}")
        branch(client, expired, f"prompt {SECRET}", "two")
        busy = create(client)
        busy_exchange = in_progress(database, busy)
        wall_clock.advance(2 * DAY)
        runner = app.test_cli_runner()

        dry = runner.invoke(args=["conversations", "purge", "--dry-run"])
        done = runner.invoke(args=["conversations", "purge"])

        assert (dry.exit_code, done.exit_code) == (0, 0), dry.output + done.output
        listed, summary = dry.output.splitlines()[:2], dry.output.splitlines()[2]
        assert listed == [
            f"would delete conversation {expired} (owner {alice.user_id}, 2 exchange(s), "
            "expired by policy)",
            f"would skip conversation {busy}: an exchange of it is in progress",
        ]
        assert summary.startswith(
            "purge would delete 1 conversation(s) and 2 exchange(s) (expires_at 0, "
            "temporary 0, policy 1); skipped 1 with an exchange in progress; "
        )
        assert done.output.splitlines()[:2] == [
            f"deleted conversation {expired} (owner {alice.user_id}, 2 exchange(s), "
            "expired by policy)",
            f"skipped conversation {busy}: an exchange of it is in progress",
        ]
        assert SECRET not in dry.output + done.output
        assert not exists(client, expired)
        assert exists(client, busy)

        # Once it has ended, the next pass takes it.
        database.execute(
            "UPDATE messages SET is_success = true, outcome = 'complete' WHERE id = :id",
            id=busy_exchange,
        )
        again = runner.invoke(args=["conversations", "purge"])
        assert again.output.startswith(f"deleted conversation {busy} ")

    def test_with_nothing_expired_it_says_so(self, app, client):
        create(client)

        result = app.test_cli_runner().invoke(args=["conversations", "purge"])

        assert result.exit_code == 0
        assert result.output.startswith("purge deleted 0 conversation(s) and 0 exchange(s)")


def test_a_pass_walks_each_rule_oldest_first_past_what_it_must_leave(
    app, client, database, wall_clock
):
    ids = [
        create(client, expires_at=iso(wall_clock.now + timedelta(minutes=60 - n))) for n in range(6)
    ]
    busy = ids[2]
    in_progress(database, busy)
    later = create(client, expires_at=iso(wall_clock.now + timedelta(days=2)))
    wall_clock.advance(2 * 3600)

    report = purge(app)

    # The latest expiry was created first: the walk goes by expiry, not by id.
    assert [i.conversation_id for i in report.deleted] == [u for u in reversed(ids) if u != busy]
    assert report.in_progress == [busy]
    assert exists(client, busy)
    assert exists(client, later)
    assert purge(app).deleted == []


def test_each_pass_logs_one_line_of_counts_and_counts_in_the_metrics(
    app, client, anonymous, configure, database, fake_llm, caplog, wall_clock
):
    configure(RETENTION_DAYS=1)
    expired = create(client, title=f"title {SECRET}")
    branch(client, expired, f"prompt {SECRET}", "two", "three")
    in_progress(database, create(client))
    wall_clock.advance(2 * DAY)
    before = samples(anonymous.get("/metrics").get_data(as_text=True))

    with caplog.at_level(logging.DEBUG, logger="app.services.purge"):
        purge(app)
        purge(app, dry_run=True)

    (line,) = [r.getMessage() for r in caplog.records if r.name == "app.services.purge"]
    assert line.startswith("purge deleted 1 conversation(s) and 3 exchange(s) (expires_at 0, ")
    assert "skipped 1 with an exchange in progress" in line
    assert SECRET not in caplog.text
    after = samples(anonymous.get("/metrics").get_data(as_text=True))

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("convstore_purge_passes_total") == 1
    assert grew("convstore_conversations_purged_total", rule="policy") == 1
    assert grew("convstore_conversations_purged_total", rule="temporary") == 0
    assert grew("convstore_exchanges_purged_total") == 3
    assert grew("convstore_purge_skipped_total") == 1
    assert grew("convstore_purge_duration_seconds_count") == 1


class TestTheWorkersTimer:
    def test_it_purges_every_interval(self, pooled_app, wall_clock):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        uid = create(client, expires_at=iso(wall_clock.now + timedelta(hours=1)))
        wall_clock.advance(7200)
        pooled_app.config.update(LIVE_TICKER=True, PURGE_INTERVAL_SECONDS=1)
        ticker = PurgeTicker(pooled_app)

        ticker.start()
        try:
            deadline = time.monotonic() + 10
            while exists(client, uid):
                assert time.monotonic() < deadline, "no pass within 10 s of a 1 s interval"
                time.sleep(0.05)
        finally:
            ticker.stop()

    @pytest.mark.parametrize(("live", "interval"), [(True, 0), (False, 60)])
    def test_it_does_not_start_when_off(self, app, configure, live, interval):
        configure(LIVE_TICKER=live, PURGE_INTERVAL_SECONDS=interval)
        ticker = PurgeTicker(app)

        ticker.start()

        assert not ticker.running


# ------------------------------------------------------------------------ the canary
CANARY = "qzcanaryretention9"
TEXT_TYPES = ("text", "character varying", "json", "jsonb", "tsvector")


def canary_columns(app) -> list[str]:
    """PostgreSQL: every text, JSON and tsvector column of every table holding the canary."""
    with app.app_context():
        columns = db.session.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type = ANY(:types)"
            ),
            {"types": list(TEXT_TYPES)},
        ).all()
        return [
            f"{table}.{column}"
            for table, column in columns
            if db.session.scalar(
                sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :canary'),
                {"canary": f"%{CANARY}%"},
            )
        ]


def test_nothing_of_a_purged_conversation_is_left_anywhere(
    pooled_app, backend, fake_llm, caplog, wall_clock
):
    caplog.set_level(logging.DEBUG)
    pooled_app.config["RETENTION_DAYS"] = 1
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"])
    uid = create(client, title=f"title {CANARY}", metadata={"k": CANARY})
    (message_id,) = branch(client, uid, f"prompt {CANARY}")
    client.put(
        f"/conversations/{uid}/messages/{message_id}/feedback",
        json={"rating": 1, "comment": f"comment {CANARY}"},
    )
    kept = create(client, title="kept")
    if backend == "postgresql":
        assert len(canary_columns(pooled_app)) >= 6
    else:
        assert CANARY.encode() in stored_bytes(pooled_app)
    wall_clock.advance(2 * DAY)
    client.patch(f"/conversations/{kept}", json={"title": "kept, active"})

    assert purged_ids(purge(pooled_app)) == {uid}

    assert client.get(f"/conversations/{uid}").status_code == 404
    assert client.get(f"/conversations/{uid}/export").status_code == 404
    assert client.get("/search", query_string={"q": CANARY}).json["results"] == []
    assert CANARY not in client.get("/export").get_data(as_text=True)
    assert client.get(f"/v1/responses/resp_{message_id}").status_code == 404
    if backend == "postgresql":
        # Every column SQL reads; dead row versions wait for VACUUM (docs/deletion.md).
        assert canary_columns(pooled_app) == []
    else:
        assert CANARY.encode() not in stored_bytes(pooled_app)
    assert CANARY not in caplog.text
    assert exists(client, kept)
