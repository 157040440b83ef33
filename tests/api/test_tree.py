"""A conversation is a tree of exchanges: edits and regenerations branch, one branch is
current, and the LLM sees only the path to the new exchange's parent."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import Conversation
from tests.generation import parse_sse


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "t", "model_type": "fake-model"}).json["id"]


def send(client, conversation_id, prompt, **body):
    response = client.post(
        f"/conversations/{conversation_id}/messages", json={"prompt": prompt, **body}
    )
    assert response.status_code == 201, response.json
    return response.json


def regenerate(client, conversation_id, message_id, **body):
    return client.post(
        f"/conversations/{conversation_id}/messages/{message_id}/regenerate", json=body
    )


def listed(client, conversation_id, **query):
    response = client.get(f"/conversations/{conversation_id}/messages", query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def prompts(messages):
    return [m["prompt_content"] for m in messages]


def sent_to_llm(fake_llm):
    """The user turns of the last chat completion the LLM received."""
    (*_, last) = [r for r in fake_llm.requests if r.path == "/v1/chat/completions"]
    return [m["content"] for m in last.body["messages"] if m["role"] == "user"]


def conversation(client, conversation_id):
    return client.get(f"/conversations/{conversation_id}").json


@pytest.fixture
def tree(client, fake_llm, conversation_id):
    """a ─ b ─ c, then b regenerated (b2) and b's prompt edited (b3, current):
    three levels, three siblings under a."""
    a = send(client, conversation_id, "one")
    b = send(client, conversation_id, "two")
    c = send(client, conversation_id, "three")
    b2 = regenerate(client, conversation_id, b["id"]).json
    b3 = send(client, conversation_id, "two, edited", parent_id=a["id"])
    return {"a": a, "b": b, "c": c, "b2": b2, "b3": b3}


class TestBranches:
    def test_each_exchange_follows_the_current_one(self, client, fake_llm, conversation_id):
        a = send(client, conversation_id, "one")
        b = send(client, conversation_id, "two")

        assert (a["parent_id"], b["parent_id"]) == (None, a["id"])
        assert (a["siblings"], b["siblings"]) == (0, 0)
        assert sent_to_llm(fake_llm) == ["one", "two"]
        after = conversation(client, conversation_id)
        assert (after["current_message_id"], after["message_count"]) == (b["id"], 2)

    def test_regenerate_and_edit_make_siblings_and_the_newest_is_current(
        self, client, tree, conversation_id
    ):
        a, b, c, b2, b3 = (tree[k] for k in ("a", "b", "c", "b2", "b3"))

        assert b2["prompt_content"] == "two"
        assert b2["parent_id"] == b3["parent_id"] == b["parent_id"] == a["id"]
        assert (b2["siblings"], b3["siblings"]) == (1, 2)
        assert prompts(listed(client, conversation_id)) == ["one", "two, edited"]
        everything = listed(client, conversation_id, branch="all")
        assert [(m["id"], m["parent_id"], m["siblings"]) for m in everything] == [
            (a["id"], None, 0),
            (b["id"], a["id"], 2),
            (c["id"], b["id"], 0),
            (b2["id"], a["id"], 2),
            (b3["id"], a["id"], 2),
        ]
        after = conversation(client, conversation_id)
        assert (after["current_message_id"], after["message_count"]) == (b3["id"], 5)

    def test_the_llm_sees_only_the_path_to_the_parent(
        self, client, fake_llm, tree, conversation_id
    ):
        # The regeneration was sent a's exchange and b's prompt, not b's answer nor c.
        send(client, conversation_id, "four")

        assert sent_to_llm(fake_llm) == ["one", "two, edited", "four"]

    def test_a_regeneration_is_sent_the_history_before_it(
        self, client, fake_llm, tree, conversation_id
    ):
        regenerate(client, conversation_id, tree["c"]["id"])

        assert sent_to_llm(fake_llm) == ["one", "two", "three"]

    def test_a_leaf_names_another_branch(self, client, tree, conversation_id):
        branch = listed(client, conversation_id, leaf=tree["c"]["id"])

        assert prompts(branch) == ["one", "two", "three"]
        assert [m["siblings"] for m in branch] == [0, 2, 0]

    def test_switching_branches_moves_what_is_listed_and_what_follows(
        self, client, fake_llm, tree, conversation_id
    ):
        response = client.patch(
            f"/conversations/{conversation_id}", json={"current_message_id": tree["c"]["id"]}
        )
        d = send(client, conversation_id, "four")

        assert response.status_code == 200
        assert response.json["current_message_id"] == tree["c"]["id"]
        assert d["parent_id"] == tree["c"]["id"]
        assert sent_to_llm(fake_llm) == ["one", "two", "three", "four"]
        assert prompts(listed(client, conversation_id)) == ["one", "two", "three", "four"]

    def test_the_text_stream_continues_the_current_branch(
        self, client, fake_llm, tree, conversation_id
    ):
        client.patch(
            f"/conversations/{conversation_id}", json={"current_message_id": tree["b2"]["id"]}
        )

        response = client.get(
            "/text/generate/stream",
            query_string={"prompt": "go on", "conversation_id": conversation_id},
            buffered=True,
        )

        assert response.status_code == 200
        assert sent_to_llm(fake_llm) == ["one", "two", "go on"]
        assert prompts(listed(client, conversation_id)) == ["one", "two", "go on"]

    def test_a_null_parent_starts_a_new_first_exchange(
        self, client, fake_llm, tree, conversation_id
    ):
        root = send(client, conversation_id, "one, edited", parent_id=None)

        assert (root["parent_id"], root["siblings"]) == (None, 1)
        assert sent_to_llm(fake_llm) == ["one, edited"]
        assert prompts(listed(client, conversation_id)) == ["one, edited"]

    def test_a_streamed_regeneration_ends_with_the_saved_sibling(
        self, client, tree, conversation_id
    ):
        response = regenerate(client, conversation_id, tree["c"]["id"], stream=True)

        events = parse_sse(response.data)
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        (done,) = [data for event, data in events if event == "done"]
        assert done["message"]["prompt_content"] == "three"
        assert (done["message"]["parent_id"], done["message"]["siblings"]) == (
            tree["b"]["id"],
            1,
        )
        assert conversation(client, conversation_id)["current_message_id"] == done["message"]["id"]


class TestRefusals:
    def test_a_parent_of_another_conversation_is_422_and_nothing_is_saved(
        self, client, fake_llm, tree, conversation_id
    ):
        other = client.post("/conversations", json={"title": "o"}).json["id"]
        elsewhere = send(client, other, "elsewhere")

        response = client.post(
            f"/conversations/{conversation_id}/messages",
            json={"prompt": "p", "parent_id": elsewhere["id"]},
        )

        assert response.status_code == 422
        assert "parent_id" in response.json["errors"]["json"]
        assert conversation(client, conversation_id)["message_count"] == 5

    def test_another_conversations_exchange_cannot_be_made_current(
        self, client, fake_llm, tree, conversation_id
    ):
        other = client.post("/conversations", json={"title": "o"}).json["id"]
        elsewhere = send(client, other, "elsewhere")

        response = client.patch(
            f"/conversations/{conversation_id}", json={"current_message_id": elsewhere["id"]}
        )

        assert response.status_code == 422
        assert "current_message_id" in response.json["errors"]["json"]
        assert conversation(client, conversation_id)["current_message_id"] == tree["b3"]["id"]

    def test_a_leaf_of_another_conversation_is_422(self, client, tree, conversation_id):
        response = client.get(
            f"/conversations/{conversation_id}/messages", query_string={"leaf": 10**12}
        )

        assert response.status_code == 422

    def test_regenerating_an_unknown_or_someone_elses_exchange_is_404(
        self, client, fake_llm, tree, conversation_id, make_account, app
    ):
        from tests.conftest import keyed_client

        bob = keyed_client(app, make_account("bob").key)

        unknown = regenerate(client, conversation_id, 10**12)
        theirs = regenerate(bob, conversation_id, tree["b"]["id"])

        assert (unknown.status_code, theirs.status_code) == (404, 404)
        assert conversation(client, conversation_id)["message_count"] == 5


class TestDeletingASubtree:
    def test_the_current_exchange_moves_to_the_parent_when_it_was_below(
        self, client, tree, conversation_id
    ):
        a, b = tree["a"], tree["b"]
        client.patch(
            f"/conversations/{conversation_id}", json={"current_message_id": tree["c"]["id"]}
        )

        response = client.delete(f"/conversations/{conversation_id}/messages/{b['id']}")

        assert response.status_code == 204
        after = conversation(client, conversation_id)
        assert (after["current_message_id"], after["message_count"]) == (a["id"], 3)
        remaining = listed(client, conversation_id, branch="all")
        assert [m["id"] for m in remaining] == [a["id"], tree["b2"]["id"], tree["b3"]["id"]]
        assert prompts(listed(client, conversation_id)) == ["one"]

    def test_the_current_exchange_stays_when_it_was_elsewhere(self, client, tree, conversation_id):
        response = client.delete(f"/conversations/{conversation_id}/messages/{tree['b']['id']}")

        assert response.status_code == 204
        after = conversation(client, conversation_id)
        assert (after["current_message_id"], after["message_count"]) == (tree["b3"]["id"], 3)

    def test_deleting_a_first_exchange_leaves_the_newest_other_one_current(
        self, client, fake_llm, tree, conversation_id
    ):
        root = send(client, conversation_id, "again", parent_id=None)

        response = client.delete(f"/conversations/{conversation_id}/messages/{root['id']}")

        assert response.status_code == 204
        assert conversation(client, conversation_id)["current_message_id"] == tree["b3"]["id"]

    def test_deleting_the_root_deletes_the_whole_tree(
        self, client, database, tree, conversation_id
    ):
        response = client.delete(f"/conversations/{conversation_id}/messages/{tree['a']['id']}")

        assert response.status_code == 204
        after = conversation(client, conversation_id)
        assert (after["current_message_id"], after["message_count"]) == (None, 0)
        assert listed(client, conversation_id, branch="all") == []

    def test_an_unknown_message_is_404(self, client, tree, conversation_id):
        response = client.delete(f"/conversations/{conversation_id}/messages/{10**12}")

        assert response.status_code == 404
        assert conversation(client, conversation_id)["message_count"] == 5

    def test_a_deep_branch_goes_with_its_conversation(self, client, database, conversation_id):
        # SQLite runs ON DELETE CASCADE recursively and gives up past 1,000 levels: a parent
        # with a cascade would make this conversation impossible to delete.
        from app.extensions import db
        from app.models import Message

        # Ended exchanges: one in progress would refuse the delete.
        (first,) = database.add(
            Message(conversation_id=conversation_id, prompt_content="p0", is_success=True)
        )
        rows = [
            {"id": first + n, "parent_id": first + n - 1, "conversation_id": conversation_id}
            for n in range(1, 1100)
        ]
        with database.app.app_context():
            db.session.execute(sa.insert(Message).values(prompt_content="p", is_success=True), rows)
            db.session.commit()

        assert client.delete(f"/conversations/{conversation_id}").status_code == 204
        assert database.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_the_conversation_counts_and_dates_its_activity(
    client, fake_llm, database, conversation_id
):
    created = conversation(client, conversation_id)

    send(client, conversation_id, "one")

    after = conversation(client, conversation_id)
    assert created["message_count"] == 0
    assert after["message_count"] == 1
    assert after["last_activity_at"] > created["last_activity_at"]
    stored = database.get(Conversation, conversation_id)
    assert stored.current_message_id == after["current_message_id"]


def test_the_history_bound_counts_successful_exchanges_of_the_branch_only(
    client, fake_llm, configure, conversation_id
):
    from tests.fake_llm import Behavior

    configure(HISTORY_MAX_MESSAGES=2)
    a = send(client, conversation_id, "one")
    send(client, conversation_id, "off the branch")
    fake_llm.behavior = Behavior(error_status=500)
    failed = client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": "failed", "parent_id": a["id"]},
    )
    fake_llm.behavior = Behavior()
    failed_id = conversation(client, conversation_id)["current_message_id"]
    send(client, conversation_id, "three", parent_id=failed_id)

    send(client, conversation_id, "four")

    assert failed.status_code == 502
    # The failed exchange is walked through, not sent, and not counted against the bound.
    assert sent_to_llm(fake_llm) == ["one", "three", "four"]
    send(client, conversation_id, "five")
    assert sent_to_llm(fake_llm) == ["three", "four", "five"]
