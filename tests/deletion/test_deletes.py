"""Deleting a conversation or an exchange (REST): refused while one it removes is in progress,
counters moved by the rows deleted, the usage kept, by the report and by a rebuild."""

from __future__ import annotations

import sqlalchemy as sa

from app.models import Message
from app.models.usage import UsageRemoved
from tests.api.test_generation import parse_sse, post_stream
from tests.conftest import keyed_client
from tests.deletion.helpers import assert_counters_agree, branch
from tests.fake_llm import Behavior

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def in_progress(database, conversation_id: int, parent_id: int | None = None) -> int:
    """An exchange in progress, as a worker's stream leaves it until it ends."""
    (uid,) = database.add(
        Message(conversation_id=conversation_id, parent_id=parent_id, prompt_content="p")
    )
    return uid


def total_usage(client) -> dict:
    (row,) = client.get("/usage").json["rows"]
    return row


class TestRefusedWhileInProgress:
    def test_a_conversation_with_an_exchange_in_progress_is_kept(
        self, client, database, fake_llm, conversation_id
    ):
        (done,) = branch(client, conversation_id, "a")
        busy = in_progress(database, conversation_id, done)

        response = client.delete(f"/conversations/{conversation_id}")

        assert response.status_code == 409
        assert response.json["code"] == 409
        assert response.json["message"].startswith(f"Exchange {busy} is in progress")
        assert database.scalar("SELECT count(*) FROM messages") == 2

    def test_an_exchange_whose_subtree_holds_one_in_progress_is_kept(
        self, client, database, fake_llm, conversation_id
    ):
        a, b = branch(client, conversation_id, "a", "b")
        busy = in_progress(database, conversation_id, b)

        response = client.delete(f"/conversations/{conversation_id}/messages/{a}")

        assert response.status_code == 409
        assert response.json["message"].startswith(f"Exchange {busy} is in progress")
        assert database.scalar("SELECT count(*) FROM messages") == 3

    def test_a_branch_beside_the_one_in_progress_can_go(
        self, client, database, fake_llm, conversation_id
    ):
        (a,) = branch(client, conversation_id, "a")
        response = client.post(f"/conversations/{conversation_id}/messages/{a}/regenerate", json={})
        sibling = response.json["id"]
        in_progress(database, conversation_id, a)

        assert (
            client.delete(f"/conversations/{conversation_id}/messages/{sibling}").status_code == 204
        )

    def test_a_stream_in_progress_refuses_the_delete_and_ends_saved(
        self, client, app, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(n_tokens=3, delay=0.02)
        (a,) = branch(client, conversation_id, "a")
        response = post_stream(client, conversation_id, "b", buffered=False)
        pieces = iter(response.response)
        first = next(pieces)

        refused = client.delete(f"/conversations/{conversation_id}/messages/{a}")
        rest = b"".join(pieces)
        response.close()

        events = parse_sse(first + rest)
        assert refused.status_code == 409
        busy = events[-1][1]["message"]["id"]
        assert refused.json["message"].startswith(f"Exchange {busy} is in progress")
        assert events[-1][0] == "done"
        assert events[-1][1]["message"]["is_success"] is True
        assert_counters_agree(app, conversation_id)

    def test_the_v1_conversation_delete_is_refused_too(
        self, client, database, fake_llm, conversation_id
    ):
        busy = in_progress(database, conversation_id)

        response = client.delete(f"/v1/conversations/conv_{conversation_id}")

        assert response.status_code == 409
        assert f"Exchange {busy} is in progress" in response.json["error"]["message"]
        assert database.scalar("SELECT count(*) FROM messages") == 1


class TestCounters:
    def test_deleting_a_middle_exchange_takes_its_subtree_and_moves_current_to_its_parent(
        self, client, app, fake_llm, conversation_id
    ):
        a, b, _c = branch(client, conversation_id, "a", "b", "c")

        assert client.delete(f"/conversations/{conversation_id}/messages/{b}").status_code == 204

        found = assert_counters_agree(app, conversation_id)
        assert (found["ids"], found["current"]) == ([a], a)

    def test_deleting_a_first_exchange_moves_current_to_the_newest_left(
        self, client, app, fake_llm, conversation_id
    ):
        (a,) = branch(client, conversation_id, "a")
        other_root = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": "x", "parent_id": None}
        ).json["id"]
        client.patch(f"/conversations/{conversation_id}", json={"current_message_id": a})

        assert client.delete(f"/conversations/{conversation_id}/messages/{a}").status_code == 204

        found = assert_counters_agree(app, conversation_id)
        assert (found["ids"], found["current"]) == ([other_root], other_root)

    def test_a_second_delete_of_the_same_exchange_is_404(
        self, client, app, fake_llm, conversation_id
    ):
        a, b = branch(client, conversation_id, "a", "b")
        assert client.delete(f"/conversations/{conversation_id}/messages/{b}").status_code == 204

        again = client.delete(f"/conversations/{conversation_id}/messages/{b}")

        assert again.status_code == 404
        assert again.json["message"] == (
            f"Message {b} does not exist in conversation {conversation_id}."
        )
        assert assert_counters_agree(app, conversation_id)["ids"] == [a]

    def test_another_users_exchange_is_404_and_kept(
        self, client, app, make_account, fake_llm, conversation_id
    ):
        (a,) = branch(client, conversation_id, "a")
        mallory = keyed_client(app, make_account("mallory").key)

        assert mallory.delete(f"/conversations/{conversation_id}/messages/{a}").status_code == 404
        assert mallory.delete(f"/conversations/{conversation_id}").status_code == 404
        assert assert_counters_agree(app, conversation_id)["ids"] == [a]


class TestUsageKept:
    def test_deletes_leave_the_report_as_it_was_and_a_rebuild_too(
        self, client, app, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        _a, b, _c = branch(client, conversation_id, "a", "b", "c")
        other = client.post("/conversations", json={"title": "other"}).json["id"]
        branch(client, other, "x", "y")
        before = total_usage(client)
        assert (before["exchanges"], before["total_tokens"]) == (5, 50)

        assert client.delete(f"/conversations/{conversation_id}/messages/{b}").status_code == 204
        assert total_usage(client) == before
        assert client.delete(f"/conversations/{other}").status_code == 204
        assert total_usage(client) == before
        # The four exchanges deleted, by the same key as usage_daily's.
        assert database.scalar(sa.select(sa.func.sum(UsageRemoved.calls))) == 4
        assert database.scalar(sa.select(sa.func.sum(UsageRemoved.total_tokens))) == 40

        result = app.test_cli_runner().invoke(args=["usage", "rebuild"])

        assert result.exit_code == 0, result.output
        assert total_usage(client) == before

    def test_a_rebuild_before_any_delete_counts_the_exchanges_alone(
        self, client, app, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["ok"], usage=USAGE)
        branch(client, conversation_id, "a")
        before = total_usage(client)

        assert app.test_cli_runner().invoke(args=["usage", "rebuild"]).exit_code == 0

        assert total_usage(client) == before
