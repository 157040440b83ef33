"""Erasing a person (`flask users erase`, `flask users export`) and deleting all of one's
own conversations (DELETE /conversations?all=true): every row of theirs gone, each
conversation through the deletion model's delete; their usage kept under owner 0 or not."""

from __future__ import annotations

import importlib
import json

import pytest
import sqlalchemy as sa

from app.models import ApiKey, Conversation, Feedback, Message, User
from app.models.usage import ERASED_OWNER_ID
from tests.api.test_usage import TITLE_USAGE
from tests.conftest import bearer, keyed_client
from tests.deletion.helpers import branch
from tests.deletion.test_deletes import USAGE, in_progress
from tests.fake_llm import Behavior

USAGE_TABLES = ("usage_daily", "usage_removed")
# The module (app.cli.users, as an attribute of app.cli, is the command group).
USERS_CLI = importlib.import_module("app.cli.users")


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def waits(monkeypatch, app, key_cache_clock) -> list[float]:
    """What the erasure waited for running servers' key caches; waiting moves this process's
    cache clock on instead of sleeping."""
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        # And the second the run took: the test's cache clock stood still meanwhile.
        key_cache_clock[0] += seconds + 1

    monkeypatch.setattr(USERS_CLI, "sleep", sleep)
    return waited


def make_history(client, database, alice) -> dict[str, int]:
    """Two conversations of alice's (one untitled: its title call is counted too), feedback,
    a deleted conversation (its usage in usage_removed) and a second key."""
    first = client.post("/conversations", json={"title": "one"}).json["id"]
    a, _b = branch(client, first, "a", "b")
    client.put(f"/conversations/{first}/messages/{a}/feedback", json={"rating": 1, "comment": "c"})
    second = client.post("/conversations", json={}).json["id"]
    # Buffered: the response closes, and its close hook titles the conversation.
    client.post(f"/conversations/{second}/messages", json={"prompt": "c"}, buffered=True)
    gone = client.post("/conversations", json={"title": "gone"}).json["id"]
    branch(client, gone, "d")
    assert client.delete(f"/conversations/{gone}").status_code == 204
    database.add(ApiKey(user_id=alice.user_id, prefix="cs_secondkey", secret_hash="h" * 64))
    return {"first": first, "second": second}


def owned_rows(database, user_id: int) -> dict[str, int]:
    """How many rows of each kind still name the user."""
    count = database.scalar
    owned = sa.select(Conversation.id).where(Conversation.owner_id == user_id)
    of_owned = Message.conversation_id.in_(owned)
    return {
        "users": count(sa.select(sa.func.count()).where(User.id == user_id)),
        "api_keys": count(sa.select(sa.func.count()).where(ApiKey.user_id == user_id)),
        "conversations": count(sa.select(sa.func.count()).select_from(owned.subquery())),
        "messages": count(sa.select(sa.func.count()).where(of_owned)),
        "feedback": count(
            sa.select(sa.func.count()).select_from(Feedback).join(Message).where(of_owned)
        ),
        **{
            table: count(f"SELECT count(*) FROM {table} WHERE owner_id = :u", u=user_id)
            for table in USAGE_TABLES
        },
    }


def usage_by_user(admin) -> dict[int, dict]:
    rows = admin.get("/usage", query_string={"owner": "all", "group_by": "user"}).json["rows"]
    return {row["user_id"]: row for row in rows}


def totals(row: dict) -> tuple[int, int, int]:
    return row["exchanges"], row["total_tokens"], row["title_tokens"]


class TestErase:
    def test_every_row_of_theirs_goes_and_nobody_elses(
        self, app, client, alice, make_account, database, fake_llm, waits
    ):
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        make_history(client, database, alice)
        bob_account = make_account("bob")
        bob = keyed_client(app, bob_account.key)
        kept = bob.post("/conversations", json={"title": "bob's"}).json["id"]
        branch(bob, kept, "x")
        admin = keyed_client(app, make_account("root", admin=True).key)
        bob_usage = usage_by_user(admin)[bob_account.user_id]

        result = cli(app, "users", "erase", "alice")

        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == (
            "erased alice: 2 conversation(s) with their exchanges and feedback, 2 API key(s); "
            "usage deleted"
        )
        assert set(owned_rows(database, alice.user_id).values()) == {0}
        assert bob.get(f"/conversations/{kept}/messages").json[0]["prompt_content"] == "x"
        by_user = usage_by_user(admin)
        assert by_user == {bob_account.user_id: bob_usage}  # neither alice nor owner 0
        # Running servers stopped accepting the key before the user went.
        assert waits == [pytest.approx(app.config["AUTH_CACHE_SECONDS"], abs=1)]
        assert client.get("/conversations").status_code == 401

    def test_keep_usage_moves_their_counts_to_owner_0(
        self, app, client, alice, make_account, database, fake_llm, waits, configure
    ):
        configure(TITLE_MODEL="title-model")
        fake_llm.set_behavior(Behavior(tokens=["Trip"], usage=TITLE_USAGE), model="title-model")
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        make_history(client, database, alice)
        admin = keyed_client(app, make_account("root", admin=True).key)
        before = usage_by_user(admin)
        everyone = admin.get("/usage", query_string={"owner": "all"}).json["rows"]

        result = cli(app, "users", "erase", "alice", "--keep-usage")

        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1].endswith("usage kept as owner 0 (erased users)")
        after = usage_by_user(admin)
        assert alice.user_id not in after
        assert totals(after[ERASED_OWNER_ID]) == totals(before[alice.user_id])
        assert totals(before[alice.user_id]) == (4, 84, 44)  # 4 exchanges and a title call
        assert admin.get("/usage", query_string={"owner": "all"}).json["rows"] == everyone
        assert set(owned_rows(database, alice.user_id).values()) == {0}
        # The deleted exchanges' ledger moved too: a rebuild gives the same report.
        assert database.scalar("SELECT sum(calls) FROM usage_removed WHERE owner_id = 0") == 4
        assert cli(app, "usage", "rebuild").exit_code == 0
        assert usage_by_user(admin) == after

    def test_erased_users_usage_adds_up_under_owner_0(
        self, app, client, alice, make_account, database, fake_llm, waits
    ):
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        bob = make_account("bob")
        for someone in (client, keyed_client(app, bob.key)):
            conversation = someone.post("/conversations", json={"title": "t"}).json["id"]
            branch(someone, conversation, "a", "b")
        admin = keyed_client(app, make_account("root", admin=True).key)

        assert cli(app, "users", "erase", "alice", "--keep-usage").exit_code == 0
        assert cli(app, "users", "erase", "bob", "--keep-usage").exit_code == 0

        assert totals(usage_by_user(admin)[ERASED_OWNER_ID]) == (4, 40, 0)

    def test_unknown_user_is_an_error(self, app):
        result = cli(app, "users", "erase", "nobody")

        assert result.exit_code == 1
        assert result.output == "Error: No user is named 'nobody'.\n"

    def test_an_exchange_in_progress_stops_it_before_anything_goes(
        self, app, client, alice, database, fake_llm, waits
    ):
        conversations = make_history(client, database, alice)
        busy = in_progress(database, conversations["second"])
        before = owned_rows(database, alice.user_id)

        refused = cli(app, "users", "erase", "alice")

        assert refused.exit_code == 1
        assert refused.output == (
            f"Error: Exchange {busy} of alice is in progress: alice is deactivated and nothing "
            "of theirs was erased yet; run `flask users erase alice` again once it has ended "
            "(the reaper ends a stale one as interrupted).\n"
        )
        assert owned_rows(database, alice.user_id) == before
        assert database.scalar(sa.select(User.is_active).where(User.id == alice.user_id)) is False
        database.execute("UPDATE messages SET is_success = false WHERE id = :id", id=busy)

        again = cli(app, "users", "erase", "alice")

        assert again.exit_code == 0, again.output
        assert set(owned_rows(database, alice.user_id).values()) == {0}

    def test_a_conversation_begun_while_it_waited_goes_too(
        self, app, client, alice, database, fake_llm, monkeypatch
    ):
        make_history(client, database, alice)

        def sleep(_seconds: float) -> None:
            # A server that still trusts alice's key takes one more conversation.
            late = client.post("/conversations", json={"title": "late"}).json["id"]
            branch(client, late, "late")

        monkeypatch.setattr(USERS_CLI, "sleep", sleep)

        result = cli(app, "users", "erase", "alice")

        assert result.exit_code == 0, result.output
        assert "erased alice: 3 conversation(s)" in result.output
        assert set(owned_rows(database, alice.user_id).values()) == {0}

    def test_an_inactive_user_long_unchanged_is_erased_without_waiting(
        self, app, alice, database, waits
    ):
        database.execute(
            "UPDATE users SET is_active = false, updated_at = :t WHERE id = :u",
            t="2026-01-01 00:00:00+00:00",
            u=alice.user_id,
        )

        assert cli(app, "users", "erase", "alice").exit_code == 0
        assert waits == []


class TestExport:
    def test_export_then_erase_then_import_elsewhere(
        self, app, client, alice, make_account, database, fake_llm, waits, tmp_path
    ):
        fake_llm.behavior = Behavior(tokens=["answer"], usage=USAGE)
        conversations = make_history(client, database, alice)
        own_export = client.get("/export").get_data(as_text=True)
        path = tmp_path / "alice.ndjson"

        exported = cli(app, "users", "export", "alice", str(path))
        erased = cli(app, "users", "erase", "alice")

        assert exported.exit_code == 0, exported.output
        assert exported.output == f"exported alice: 2 conversation(s), 3 message(s) to {path}\n"
        assert path.read_text(encoding="utf-8") == own_export  # GET /export's format
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["id"] for line in lines if line["type"] == "conversation"] == [
            conversations["first"],
            conversations["second"],
        ]
        assert erased.exit_code == 0
        make_account("alice2")
        imported = cli(app, "conversations", "import", str(path), "--user", "alice2")
        assert imported.exit_code == 0, imported.output
        assert imported.output == "imported 2 conversation(s) and 3 message(s) for alice2\n"

    def test_to_standard_output(self, app, client, alice, database, fake_llm):
        make_history(client, database, alice)

        result = cli(app, "users", "export", "alice", "-")

        lines = result.stdout.splitlines()
        assert result.exit_code == 0
        assert [json.loads(line)["type"] for line in lines].count("conversation") == 2
        assert result.stderr == "exported alice: 2 conversation(s), 3 message(s) to -\n"

    def test_a_file_it_cannot_write_is_an_error(self, app, alice, tmp_path):
        result = cli(app, "users", "export", "alice", str(tmp_path / "missing" / "a.ndjson"))

        assert result.exit_code == 1
        assert result.output.startswith("Error: cannot write ")

    def test_unknown_user_writes_no_file(self, app, tmp_path):
        path = tmp_path / "nobody.ndjson"

        result = cli(app, "users", "export", "nobody", str(path))

        assert result.exit_code == 1
        assert result.output == "Error: No user is named 'nobody'.\n"
        assert list(tmp_path.iterdir()) == []


class TestDeleteAll:
    def test_deletes_every_conversation_of_the_caller_and_answers_how_many(
        self, app, client, alice, make_account, database, fake_llm
    ):
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        make_history(client, database, alice)
        archived = client.post("/conversations", json={"title": "archived"}).json["id"]
        client.patch(f"/conversations/{archived}", json={"archived": True, "pinned": True})
        admin = keyed_client(app, make_account("root", admin=True).key)
        admins_own = admin.post("/conversations", json={"title": "root's"}).json["id"]
        before = client.get("/usage").json["rows"]

        response = client.delete("/conversations", query_string={"all": "true"})

        assert response.status_code == 200
        assert response.json == {"deleted": 3}
        rows = owned_rows(database, alice.user_id)
        assert (rows["conversations"], rows["messages"], rows["feedback"]) == (0, 0, 0)
        assert (rows["users"], rows["api_keys"]) == (1, 2)  # the account stays
        assert client.get("/usage").json["rows"] == before  # tokens spent stay spent
        assert client.delete("/conversations", query_string={"all": "true"}).json == {"deleted": 0}
        # An admin deletes only their own.
        other = client.post("/conversations", json={"title": "new"}).json["id"]
        assert admin.delete("/conversations", query_string={"all": "true"}).json == {"deleted": 1}
        assert client.get(f"/conversations/{other}").status_code == 200
        assert admin.get(f"/conversations/{admins_own}").status_code == 404

    @pytest.mark.parametrize("query", [{}, {"all": "false"}, {"all": "1"}, {"all": "True"}])
    def test_without_the_confirmation_nothing_goes(self, client, database, query):
        client.post("/conversations", json={"title": "kept"})

        response = client.delete("/conversations", query_string=query)

        assert response.status_code == 422
        assert "all" in response.json["errors"]["query"]
        assert database.scalar("SELECT count(*) FROM conversations") == 1

    def test_an_exchange_in_progress_is_409_and_nothing_goes(
        self, client, alice, database, fake_llm
    ):
        first = client.post("/conversations", json={"title": "a"}).json["id"]
        branch(client, first, "a")
        second = client.post("/conversations", json={"title": "b"}).json["id"]
        busy = in_progress(database, second)

        response = client.delete("/conversations", query_string={"all": "true"})

        assert response.status_code == 409
        assert response.json["message"].startswith(f"Exchange {busy} is in progress")
        assert database.scalar("SELECT count(*) FROM conversations") == 2

    def test_unauthenticated_is_401(self, anonymous, alice):
        response = anonymous.delete("/conversations", query_string={"all": "true"})

        assert response.status_code == 401
        assert anonymous.get("/conversations", headers=bearer(alice.key)).status_code == 200
