"""Key lifetimes and user activation: `flask keys create --expires-in`, `keys list`,
`users deactivate` / `activate`, and how long a cached key outlives a change."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.models import ApiKey, User, utcnow
from app.services import users as users_service
from tests.conftest import bearer


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def assert_401(response, message):
    assert response.status_code == 401
    assert response.json["message"] == message
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


class TestExpiry:
    def test_keys_create_expires_in_90_days(self, app, anonymous, alice, database):
        result = cli(app, "keys", "create", "alice", "--expires-in", "90d")
        key = last_line(result)

        row = database.scalar(sa.select(ApiKey).where(ApiKey.prefix == key[:12]))
        assert result.exit_code == 0, result.output
        assert row.expires_at - row.created_at == timedelta(days=90)
        assert f"expires {row.expires_at:%Y-%m-%dT%H:%M:%SZ}" in result.output
        assert anonymous.get("/conversations", headers=bearer(key)).status_code == 200

    @pytest.mark.parametrize(
        ("given", "lifetime"),
        [("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
    )
    def test_other_units(self, app, alice, database, given, lifetime):
        key = last_line(cli(app, "keys", "create", "alice", "--expires-in", given))

        row = database.scalar(sa.select(ApiKey).where(ApiKey.prefix == key[:12]))
        assert row.expires_at - row.created_at == lifetime

    @pytest.mark.parametrize("given", ["90", "0d", "1y", "-3d", "d", "1.5d"])
    def test_a_bad_lifetime_is_a_usage_error(self, app, alice, given):
        result = cli(app, "keys", "create", "alice", "--expires-in", given)

        assert result.exit_code == 2
        assert "is not a duration like 30m, 12h, 90d or 2w" in result.output

    def test_without_expires_in_a_key_never_expires(self, app, alice, database):
        key = last_line(cli(app, "keys", "create", "alice"))

        assert (
            database.scalar(sa.select(ApiKey.expires_at).where(ApiKey.prefix == key[:12])) is None
        )

    def test_an_expired_key_is_401_and_says_so(self, anonymous, alice, database):
        database.execute(
            "UPDATE api_keys SET expires_at = :t WHERE user_id = :u",
            t="2026-01-02 03:04:05+00:00",
            u=alice.user_id,
        )

        response = anonymous.get("/conversations", headers=bearer(alice.key))

        assert_401(response, "The API key expired at 2026-01-02T03:04:05+00:00; ask for a new one.")

    def test_a_cached_key_stops_at_its_expiry_not_a_ttl_later(
        self, app, client, alice, database, monkeypatch
    ):
        expiry = utcnow() + timedelta(hours=1)
        database.execute(
            "UPDATE api_keys SET expires_at = :t WHERE user_id = :u", t=expiry, u=alice.user_id
        )
        assert client.get("/conversations").status_code == 200  # now cached

        monkeypatch.setattr("app.services.auth.utcnow", lambda: expiry + timedelta(seconds=1))

        response = client.get("/conversations")
        when = expiry.isoformat(timespec="seconds")
        assert_401(response, f"The API key expired at {when}; ask for a new one.")


class TestKeysList:
    def test_lists_every_key_with_its_state_and_never_a_secret(self, app, alice, database):
        expiring = last_line(cli(app, "keys", "create", "alice", "--expires-in", "1d"))
        revoked = last_line(cli(app, "keys", "create", "alice"))
        expired = last_line(cli(app, "keys", "create", "alice", "--expires-in", "1d"))
        cli(app, "keys", "revoke", revoked[:12])
        database.execute(
            "UPDATE api_keys SET expires_at = :t WHERE prefix = :p",
            t="2026-01-01 00:00:00+00:00",
            p=expired[:12],
        )

        result = cli(app, "keys", "list", "alice")

        lines = [line.split("\t") for line in result.output.strip().splitlines()]
        assert result.exit_code == 0
        assert lines[0] == ["prefix", "state", "created", "last used", "expires", "store"]
        assert [(line[0], line[1]) for line in lines[1:]] == [
            (alice.key[:12], "active"),
            (expiring[:12], "active"),
            (revoked[:12], "revoked"),
            (expired[:12], "expired"),
        ]
        assert [line[4] for line in lines[1:]][::3] == ["-", "2026-01-01T00:00:00Z"]
        for secret in (alice.key, expiring, revoked, expired):
            assert secret[13:] not in result.output

    def test_shows_when_a_key_was_last_used(self, app, client, alice):
        with client.get("/conversations"):
            pass

        (row,) = cli(app, "keys", "list", "alice").output.strip().splitlines()[1:]

        assert row.split("\t")[3] != "-"

    def test_unknown_user(self, app):
        result = cli(app, "keys", "list", "nobody")

        assert result.exit_code == 1
        assert "No user is named 'nobody'." in result.output


class TestActivation:
    def test_deactivate_refuses_the_users_keys_and_activate_restores_them(
        self, app, anonymous, alice, database
    ):
        deactivated = cli(app, "users", "deactivate", "alice")
        app.extensions["api_key_cache"].clear()  # as another process would see it
        refused = anonymous.get("/conversations", headers=bearer(alice.key))
        activated = cli(app, "users", "activate", "alice")
        app.extensions["api_key_cache"].clear()
        accepted = anonymous.get("/conversations", headers=bearer(alice.key))

        assert deactivated.exit_code == 0
        assert deactivated.output == (
            "deactivated alice; running servers refuse their keys within 30s\n"
        )
        assert_401(refused, "The API key is unknown or revoked.")
        assert activated.output == "activated alice\n"
        assert accepted.status_code == 200
        assert database.scalar(sa.select(User.is_active).where(User.id == alice.user_id))

    def test_twice_says_so(self, app, alice):
        cli(app, "users", "deactivate", "alice")

        again = cli(app, "users", "deactivate", "alice")

        assert again.exit_code == 0
        assert again.output == "alice is already inactive\n"
        assert cli(app, "users", "activate", "alice").output == "activated alice\n"
        assert cli(app, "users", "activate", "alice").output == "alice is already active\n"

    def test_unknown_user(self, app):
        result = cli(app, "users", "deactivate", "nobody")

        assert result.exit_code == 1
        assert "No user is named 'nobody'." in result.output

    def test_a_cached_key_of_a_deactivated_user_works_at_most_auth_cache_seconds(
        self, app, client, alice, key_cache_clock
    ):
        ttl = app.config["AUTH_CACHE_SECONDS"]
        assert client.get("/conversations").status_code == 200  # cached at t=0

        with app.app_context():
            users_service.set_active("alice", False)
        key_cache_clock[0] += ttl - 0.001
        just_within = client.get("/conversations")
        key_cache_clock[0] += 0.002
        just_after = client.get("/conversations")

        assert just_within.status_code == 200
        assert_401(just_after, "The API key is unknown or revoked.")
