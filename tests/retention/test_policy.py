"""Which conversations expire: RETENTION_DAYS and a user's own, pinned ones exempt, a
conversation's own expires_at (set, changed, refused in the past), on both engines, the
clock moved by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import keyed_client
from tests.deletion.helpers import branch
from tests.retention.helpers import DAY, HOUR, exists, iso, purge, purged_ids


def create(client, **body) -> int:
    response = client.post("/conversations", json={"title": "t", **body})
    assert response.status_code == 201, response.json
    return response.json["id"]


class TestThePolicy:
    def test_without_retention_days_nothing_expires(self, app, client, wall_clock):
        kept = create(client)
        wall_clock.advance(3650 * DAY)

        report = purge(app)

        assert report.deleted == []
        assert report.in_progress == []
        assert exists(client, kept)

    def test_conversations_inactive_past_retention_days_are_deleted_with_everything(
        self, app, client, configure, database, fake_llm, wall_clock
    ):
        configure(RETENTION_DAYS=30)
        old = create(client)
        branch(client, old, "a", "b")
        usage_before = client.get("/usage").json["rows"]
        wall_clock.advance(20 * DAY)
        recent = create(client)
        wall_clock.advance(10 * DAY)  # old: 30 days without activity, to the second

        report = purge(app)

        assert purged_ids(report) == {old}
        assert [(item.exchanges, item.rule) for item in report.deleted] == [(2, "policy")]
        assert not exists(client, old)
        assert exists(client, recent)
        left = database.scalar("SELECT count(*) FROM messages WHERE conversation_id = :c", c=old)
        assert left == 0
        # Tokens spent stay spent.
        assert client.get("/usage").json["rows"] == usage_before

    def test_activity_puts_the_expiry_off(self, app, client, configure, fake_llm, wall_clock):
        configure(RETENTION_DAYS=30)
        prompted, edited = create(client), create(client)
        wall_clock.advance(29 * DAY)
        branch(client, prompted, "still here")
        client.patch(f"/conversations/{edited}", json={"title": "renamed"})
        wall_clock.advance(29 * DAY)

        assert purge(app).deleted == []
        wall_clock.advance(1 * DAY)
        assert purged_ids(purge(app)) == {prompted, edited}

    def test_pinned_ones_are_exempt_and_archived_ones_are_not(
        self, app, client, configure, wall_clock
    ):
        configure(RETENTION_DAYS=1)
        pinned, archived, both = create(client), create(client), create(client)
        client.patch(f"/conversations/{pinned}", json={"pinned": True})
        client.patch(f"/conversations/{archived}", json={"archived": True})
        client.patch(f"/conversations/{both}", json={"archived": True, "pinned": True})
        wall_clock.advance(365 * DAY)

        assert purged_ids(purge(app)) == {archived}
        # Unpinned, it follows the policy again.
        client.patch(f"/conversations/{pinned}", json={"pinned": False})
        assert purged_ids(purge(app)) == {pinned}
        assert exists(client, both)


class TestAUsersOwnRetention:
    def test_it_overrides_the_setting_both_ways(self, app, configure, make_account, wall_clock):
        configure(RETENTION_DAYS=30)
        alice, bob, carol = (make_account(name) for name in ("alice", "bob", "carol"))
        runner = app.test_cli_runner()
        shorter = runner.invoke(args=["users", "limits", "bob", "--retention-days", "5"])
        longer = runner.invoke(args=["users", "limits", "carol", "--retention-days", "60"])
        assert (shorter.exit_code, longer.exit_code) == (0, 0), shorter.output + longer.output
        assert "conversations kept 5 days" in shorter.output
        ids = {a.name: create(keyed_client(app, a.key)) for a in (alice, bob, carol)}

        wall_clock.advance(6 * DAY)
        assert purged_ids(purge(app)) == {ids["bob"]}
        wall_clock.advance(25 * DAY)
        assert purged_ids(purge(app)) == {ids["alice"]}
        wall_clock.advance(30 * DAY)
        assert purged_ids(purge(app)) == {ids["carol"]}

    def test_it_applies_without_the_setting_and_none_clears_it(self, app, make_account, wall_clock):
        alice, bob = make_account("alice"), make_account("bob")
        runner = app.test_cli_runner()
        runner.invoke(args=["users", "limits", "bob", "--retention-days", "7"])
        listed = runner.invoke(args=["users", "list"]).output.splitlines()
        kept_alice = create(keyed_client(app, alice.key))
        bobs = [create(keyed_client(app, bob.key)) for _ in range(2)]

        wall_clock.advance(7 * DAY)
        assert purged_ids(purge(app)) == set(bobs)

        cleared = runner.invoke(args=["users", "limits", "bob", "--retention-days", "none"])
        kept_bob = create(keyed_client(app, bob.key))
        wall_clock.advance(3650 * DAY)
        assert purge(app).deleted == []
        assert exists(keyed_client(app, alice.key), kept_alice)
        assert exists(keyed_client(app, bob.key), kept_bob)
        assert cleared.exit_code == 0
        assert "conversations kept forever (default)" in cleared.output
        assert any(line.startswith("bob\t") and "kept 7 days" in line for line in listed)
        assert any(line.startswith("alice\t") and "kept forever" in line for line in listed)

    @pytest.mark.parametrize("value", ["0", "-3", "36501", "soon"])
    def test_a_bad_number_of_days_is_refused(self, app, make_account, value):
        make_account("bob")

        result = app.test_cli_runner().invoke(
            args=["users", "limits", "bob", "--retention-days", value]
        )

        assert result.exit_code == 2
        assert "from 1 to 36500, or none" in result.output

    def test_clear_clears_it_too(self, app, make_account):
        make_account("bob")
        runner = app.test_cli_runner()
        runner.invoke(args=["users", "limits", "bob", "--retention-days", "3"])

        result = runner.invoke(args=["users", "limits", "bob", "--clear"])

        assert "conversations kept forever (default)" in result.output


class TestAConversationsOwnLifetime:
    def test_set_at_creation_shown_everywhere_and_applied_pinned_or_not(
        self, app, client, wall_clock
    ):
        expires = wall_clock.now + timedelta(hours=2)
        uid = create(client, expires_at=iso(expires))
        client.patch(f"/conversations/{uid}", json={"pinned": True})
        other = create(client)

        shown = client.get(f"/conversations/{uid}").json["expires_at"]
        listed = {c["id"]: c["expires_at"] for c in client.get("/conversations").json}
        recent = {c["id"]: c for c in client.get("/conversations?order=recent").json}
        assert shown == listed[uid] == recent[uid]["expires_at"]
        assert datetime.fromisoformat(shown) == expires
        assert listed[other] is None
        wall_clock.advance(2 * HOUR - 1)
        assert purge(app).deleted == []
        wall_clock.advance(1)
        report = purge(app)
        assert [(item.conversation_id, item.rule) for item in report.deleted] == [
            (uid, "expires_at")
        ]
        assert exists(client, other)

    def test_a_patch_sets_moves_and_clears_it(self, app, client, configure, wall_clock):
        configure(RETENTION_DAYS=30)
        uid = create(client)
        later = wall_clock.now + timedelta(days=90)

        patched = client.patch(f"/conversations/{uid}", json={"expires_at": iso(later)})

        assert patched.status_code == 200
        assert datetime.fromisoformat(patched.json["expires_at"]) == later
        # Its own lifetime, not the policy's: past 30 days it stays.
        wall_clock.advance(31 * DAY)
        assert purge(app).deleted == []
        cleared = client.patch(f"/conversations/{uid}", json={"expires_at": None})
        assert cleared.json["expires_at"] is None
        assert purged_ids(purge(app)) == {uid}

    def test_setting_it_is_not_activity(self, client, wall_clock):
        uid = create(client)
        before = client.get(f"/conversations/{uid}").json["last_activity_at"]
        wall_clock.advance(60)

        client.patch(
            f"/conversations/{uid}", json={"expires_at": iso(wall_clock.now + timedelta(hours=2))}
        )

        assert client.get(f"/conversations/{uid}").json["last_activity_at"] == before

    @pytest.mark.parametrize("offset", [0, -1, -86400])
    def test_now_or_in_the_past_is_422_naming_the_field(self, client, wall_clock, offset):
        moment = iso(wall_clock.now + timedelta(seconds=offset))
        uid = create(client)

        created = client.post("/conversations", json={"title": "t", "expires_at": moment})
        patched = client.patch(f"/conversations/{uid}", json={"expires_at": moment})

        for response in (created, patched):
            assert response.status_code == 422
            assert response.json["errors"]["json"]["expires_at"] == ["Must be in the future."]
        assert client.get(f"/conversations/{uid}").json["expires_at"] is None

    @pytest.mark.parametrize("value", ["2099-01-01T00:00:00", "tomorrow", 12, True])
    def test_a_time_without_an_offset_or_not_a_time_is_422(self, client, value):
        response = client.post("/conversations", json={"title": "t", "expires_at": value})

        assert response.status_code == 422
        assert "expires_at" in response.json["errors"]["json"]


def test_the_rules_are_exclusive_and_each_expired_conversation_is_found_once(
    app, client, configure, database, wall_clock
):
    configure(RETENTION_DAYS=1, TEMPORARY_RETENTION_HOURS=1)
    own = create(client, expires_at=iso(wall_clock.now + timedelta(hours=1)))
    temporary = create(client, temporary=True)
    policy = create(client)
    wall_clock.advance(2 * DAY)

    report = purge(app, dry_run=True)

    assert sorted((i.conversation_id, i.rule) for i in report.deleted) == [
        (own, "expires_at"),
        (temporary, "temporary"),
        (policy, "policy"),
    ]
    assert database.scalar(sa.select(sa.func.count()).select_from(sa.text("conversations"))) == 3
