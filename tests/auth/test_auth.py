"""API keys and ownership: nobody reads another user's conversations."""

from __future__ import annotations

import hashlib
import logging

import flask_migrate
import pytest
import sqlalchemy as sa

from app.models import ApiKey, Conversation, Message
from app.services import users as users_service
from tests.conftest import UNKNOWN_KEY, bearer, disposing, keyed_client, make_app
from tests.fake_llm import Behavior

PUBLIC = ["/healthz", "/readyz", "/openapi.json", "/docs"]


@pytest.fixture
def bob(make_account):
    return make_account("bob")


@pytest.fixture
def bob_client(app, bob):
    return keyed_client(app, bob.key)


@pytest.fixture
def admin_client(app, make_account):
    return keyed_client(app, make_account("root", admin=True).key)


@pytest.fixture
def alices_conversation(database, alice):
    conversation_id = database.add(
        Conversation(title="mine", model_type="m", owner_id=alice.user_id)
    )[0]
    database.add(Message(conversation_id=conversation_id, prompt_content="secret", is_success=True))
    return conversation_id


def assert_401(response, *, invalid_token: bool):
    assert response.status_code == 401
    assert response.json["code"] == 401
    assert response.json["status"] == "Unauthorized"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid_token


class TestAuthentication:
    def test_no_key_is_401(self, anonymous):
        response = anonymous.get("/conversations")

        assert_401(response, invalid_token=False)
        assert response.json["message"] == "Send an API key: Authorization: Bearer <key>."

    def test_another_scheme_is_401(self, anonymous, alice):
        response = anonymous.get("/conversations", headers={"Authorization": f"Basic {alice.key}"})

        assert_401(response, invalid_token=False)
        assert response.json["message"] == "Use the Bearer scheme: Authorization: Bearer <key>."

    @pytest.mark.parametrize("key", ["nonsense", "cs_short_key", UNKNOWN_KEY, "x" * 5000])
    def test_malformed_or_unknown_key_is_401(self, anonymous, key):
        response = anonymous.get("/conversations", headers=bearer(key))

        assert_401(response, invalid_token=True)
        assert response.json["message"] == "The API key is unknown or revoked."

    def test_every_protected_endpoint_requires_a_key(self, anonymous, alices_conversation):
        cid = alices_conversation
        calls = [
            ("get", "/conversations", {}),
            ("post", "/conversations", {"json": {"title": "t"}}),
            ("get", f"/conversations/{cid}", {}),
            ("put", f"/conversations/{cid}", {"json": {"title": "t", "model_type": "m"}}),
            ("delete", f"/conversations/{cid}", {}),
            ("get", f"/conversations/{cid}/messages", {}),
            ("post", f"/conversations/{cid}/messages", {"json": {"prompt": "hi"}}),
            ("get", f"/text/generate/stream?prompt=hi&conversation_id={cid}", {}),
        ]
        for method, path, kwargs in calls:
            assert_401(getattr(anonymous, method)(path, **kwargs), invalid_token=False)

    @pytest.mark.parametrize("path", PUBLIC)
    def test_probes_and_docs_need_no_key(self, anonymous, path):
        assert anonymous.get(path).status_code == 200

    def test_a_revoked_key_is_rejected_once_the_cache_bound_has_passed(
        self, app, client, alice, key_cache_clock
    ):
        assert client.get("/conversations").status_code == 200

        with app.app_context():
            users_service.revoke_key(alice.key[:12])
        key_cache_clock[0] += app.config["AUTH_CACHE_SECONDS"] + 0.001

        assert_401(client.get("/conversations"), invalid_token=True)

    def test_an_inactive_users_keys_stop_working(self, app, client, database, alice):
        database.execute(
            "UPDATE users SET is_active = :no WHERE id = :id", no=False, id=alice.user_id
        )

        assert_401(client.get("/conversations"), invalid_token=True)

    def test_a_cached_key_costs_no_statement_and_a_cold_one_two(self, client, database):
        with database.count_statements() as cold, client.get("/conversations"):
            in_request = list(cold)
        with database.count_statements() as warm, client.get("/conversations"):
            pass

        # Cold: the key lookup and the listing, then last_used_at once the response is sent.
        # Warm: the listing alone.
        assert [statement.split()[0] for statement in in_request] == ["SELECT", "SELECT"]
        assert [statement.split()[0] for statement in cold] == ["SELECT", "SELECT", "UPDATE"]
        assert len(warm) == 1

    def test_last_used_at_is_recorded(self, client, database, alice):
        before = database.scalar(
            sa.select(ApiKey.last_used_at).where(ApiKey.user_id == alice.user_id)
        )

        with client.get("/conversations") as response:
            assert response.status_code == 200
        # Written once the response is closed, not during the request.

        after = database.scalar(
            sa.select(ApiKey.last_used_at).where(ApiKey.user_id == alice.user_id)
        )
        assert before is None
        assert after is not None


class TestKeysAreNeverStoredOrLoggedInClear:
    def test_only_the_hash_and_prefix_are_stored(self, database, alice):
        row = database.scalar(sa.select(ApiKey).where(ApiKey.user_id == alice.user_id))

        assert row.secret_hash == hashlib.sha256(alice.key.encode()).hexdigest()
        assert row.prefix == alice.key[:12]
        columns = [getattr(row, c.key) for c in ApiKey.__table__.columns]
        assert alice.key not in [str(value) for value in columns]
        assert not any(alice.key[13:] in str(value) for value in columns)

    @pytest.fixture
    def echoing_app(self, backend, database_factory):
        # Migrated here, not in the test: alembic's logging set-up detaches caplog's handler.
        with disposing(make_app(database_factory(backend), SQLALCHEMY_ECHO=True)) as app:
            with app.app_context():
                flask_migrate.upgrade()
            yield app

    def test_not_in_the_logs_even_with_every_sql_statement_echoed(self, echoing_app, caplog):
        app = echoing_app
        with caplog.at_level(logging.DEBUG):
            created = app.test_cli_runner().invoke(args=["users", "create", "alice"])
            key = created.output.strip().splitlines()[-1]
            anonymous = app.test_client()
            assert anonymous.get("/conversations", headers=bearer(key)).status_code == 200
            assert (
                anonymous.get("/conversations", headers=bearer(key[:-1] + "x")).status_code == 401
            )

        logged = [record.getMessage() + str(record.args) for record in caplog.records]
        assert any("api_keys" in line for line in logged)  # the statements were logged
        assert not any(key[13:] in line or key[13:-1] in line for line in logged)


class TestOwnership:
    def test_another_users_conversation_is_404_everywhere(
        self, bob_client, alices_conversation, database, fake_llm
    ):
        cid = alices_conversation
        calls = [
            ("get", f"/conversations/{cid}", {}),
            ("put", f"/conversations/{cid}", {"json": {"title": "stolen", "model_type": "m"}}),
            ("delete", f"/conversations/{cid}", {}),
            ("get", f"/conversations/{cid}/messages", {}),
            ("post", f"/conversations/{cid}/messages", {"json": {"prompt": "hi"}}),
            ("post", f"/conversations/{cid}/messages", {"json": {"prompt": "hi", "stream": True}}),
            ("get", f"/text/generate/stream?prompt=hi&conversation_id={cid}", {}),
        ]
        for method, path, kwargs in calls:
            response = getattr(bob_client, method)(path, **kwargs)
            assert (method, path, response.status_code) == (method, path, 404)
            assert response.json["message"] == f"Conversation {cid} does not exist."

        assert database.get(Conversation, cid).title == "mine"
        assert (
            database.scalar("SELECT count(*) FROM messages WHERE conversation_id = :c", c=cid) == 1
        )
        assert fake_llm.requests == []

    def test_lists_hold_only_ones_own(self, client, bob_client, alices_conversation):
        bobs = bob_client.post("/conversations", json={"title": "bob's"}).json

        assert [c["id"] for c in client.get("/conversations").json] == [alices_conversation]
        assert [c["id"] for c in bob_client.get("/conversations").json] == [bobs["id"]]

    def test_a_new_conversation_belongs_to_its_creator(self, client, alice):
        assert client.post("/conversations", json={}).json["owner_id"] == alice.user_id

    def test_the_owner_can_generate(self, client, alices_conversation, fake_llm):
        fake_llm.behavior = Behavior(n_tokens=2)

        response = client.post(
            f"/conversations/{alices_conversation}/messages", json={"prompt": "hi"}
        )

        assert response.status_code == 201

    def test_a_user_cannot_list_other_owners(self, client, bob):
        for owner in ("all", str(bob.user_id)):
            response = client.get(f"/conversations?owner={owner}")
            assert response.status_code == 403
            assert response.json["message"] == "Only an admin can list other users' conversations."

    def test_a_user_may_name_themselves(self, client, alice, alices_conversation):
        response = client.get(f"/conversations?owner={alice.user_id}")

        assert [c["id"] for c in response.json] == [alices_conversation]

    @pytest.mark.parametrize("owner", ["", "everyone", "-1", "0", "1.5", str(2**63)])
    def test_a_bad_owner_is_422(self, client, owner):
        response = client.get(f"/conversations?owner={owner}")

        assert response.status_code == 422
        assert response.json["errors"]["query"]["owner"] == ["Must be me, all, or a user id."]


class TestAdmin:
    def test_lists_everyones_or_one_owners(
        self, admin_client, bob_client, alice, alices_conversation
    ):
        bobs = bob_client.post("/conversations", json={"title": "bob's"}).json["id"]

        everyone = admin_client.get("/conversations?owner=all").json
        alices = admin_client.get(f"/conversations?owner={alice.user_id}").json
        own = admin_client.get("/conversations").json

        assert [c["id"] for c in everyone] == [alices_conversation, bobs]
        assert [c["id"] for c in alices] == [alices_conversation]
        assert own == []

    def test_reaches_any_conversation(self, admin_client, alices_conversation):
        assert admin_client.get(f"/conversations/{alices_conversation}").status_code == 200
        messages = admin_client.get(f"/conversations/{alices_conversation}/messages").json
        assert [m["prompt_content"] for m in messages] == ["secret"]


class TestCli:
    def test_users_create_prints_the_key_last_and_it_works(self, app, anonymous):
        result = app.test_cli_runner().invoke(args=["users", "create", "carol"])

        assert result.exit_code == 0, result.output
        key = result.output.strip().splitlines()[-1]
        assert anonymous.get("/conversations", headers=bearer(key)).status_code == 200

    def test_users_create_admin(self, app, anonymous):
        result = app.test_cli_runner().invoke(args=["users", "create", "dora", "--admin"])
        key = result.output.strip().splitlines()[-1]

        response = anonymous.get("/conversations?owner=all", headers=bearer(key))

        assert response.status_code == 200

    def test_users_create_refuses_a_taken_or_bad_name(self, app, alice):
        runner = app.test_cli_runner()

        taken = runner.invoke(args=["users", "create", "alice"])
        spaced = runner.invoke(args=["users", "create", "a b"])

        assert taken.exit_code == 1
        assert "A user named 'alice' already exists." in taken.output
        assert spaced.exit_code == 2

    def test_keys_create_and_revoke(self, app, anonymous, alice):
        runner = app.test_cli_runner()
        key = runner.invoke(args=["keys", "create", "alice"]).output.strip().splitlines()[-1]
        assert anonymous.get("/conversations", headers=bearer(key)).status_code == 200

        app.extensions["api_key_cache"].clear()
        result = runner.invoke(args=["keys", "revoke", key[:12]])

        assert result.exit_code == 0, result.output
        assert "within 30s" in result.output
        assert anonymous.get("/conversations", headers=bearer(key)).status_code == 401
        assert anonymous.get("/conversations", headers=bearer(alice.key)).status_code == 200

    def test_keys_revoke_unknown_prefix(self, app):
        result = app.test_cli_runner().invoke(args=["keys", "revoke", "cs_nothing00"])

        assert result.exit_code == 1
        assert "No unrevoked key has the prefix 'cs_nothing00'." in result.output

    def test_keys_create_for_unknown_user(self, app):
        result = app.test_cli_runner().invoke(args=["keys", "create", "nobody"])

        assert result.exit_code == 1
        assert "No user is named 'nobody'." in result.output

    def test_users_list_shows_prefixes_never_keys(self, app, alice, make_account):
        make_account("erin", admin=True)

        output = app.test_cli_runner().invoke(args=["users", "list"]).output

        assert f"alice\tuser\t{alice.key[:12]}" in output
        assert "erin\tadmin\t" in output
        assert alice.key not in output

    def test_create_first_only_in_an_empty_database(self, app, anonymous, database):
        runner = app.test_cli_runner()

        first = runner.invoke(args=["users", "create-first"])
        again = runner.invoke(args=["users", "create-first"])

        key = first.output.strip().splitlines()[-1]
        assert anonymous.get("/conversations?owner=all", headers=bearer(key)).status_code == 200
        assert "users exist already" in again.output
        assert database.scalar("SELECT count(*) FROM users") == 1


def test_openapi_declares_the_bearer_scheme(anonymous):
    spec = anonymous.get("/openapi.json").json

    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/conversations"]["get"]
