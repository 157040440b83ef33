"""No-store keys (`flask keys create NAME --no-store`): every exchange made with one, on every
endpoint, is recorded and accounted (outcome, tokens, timings, usage, budget, metrics) and
its client gets its answer, but no text of it is written anywhere; it cannot be continued
by previous_response_id, nor is it threaded by fingerprint."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import Conversation, Message
from app.services import users as users_service
from tests.auth.test_keys import cli, last_line
from tests.conftest import keyed_client
from tests.deletion.canary import places_holding
from tests.deletion.helpers import branch
from tests.fake_llm import Behavior
from tests.generation import parse_sse, post_stream, stream_text
from tests.prometheus import samples, value

CANARY = "zqxnostore4h2"
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
TOOL_CALL = {"id": "call_1", "name": "look_up", "arguments": f'{{"q": "{CANARY}"}}'}
# Every column of an exchange that can hold text, and what a no-store exchange holds there.
NO_TEXT = {
    "prompt_content": "",
    "response_content": "",
    "reasoning_content": None,
    "refusal_content": None,
    "tool_calls": None,
    "request_params": {"store": False},
    "system_prompt": None,
    "input_items": [],
    "output_items": None,
    "history_fingerprint": None,
}


@pytest.fixture
def no_store(app, alice):
    """A client with a no-store key of alice's."""
    result = cli(app, "keys", "create", "alice", "--no-store")
    assert result.exit_code == 0, result.output
    return keyed_client(app, last_line(result))


def exchange(database, message_id: int) -> dict:
    """The exchange's text columns, and what records it."""
    columns = [getattr(Message, name) for name in NO_TEXT]
    found = database.scalar(sa.select(Message).where(Message.id == message_id))
    row = {column.key: getattr(found, column.key) for column in columns}
    row["recorded"] = (found.outcome, found.is_success, found.total_tokens is not None)
    row["timed"] = found.duration_ms is not None
    return row


def assert_no_text(database, message_id: int) -> None:
    row = exchange(database, message_id)
    assert {name: row[name] for name in NO_TEXT} == NO_TEXT
    assert row["recorded"] == ("complete", True, True)
    assert row["timed"]


def newest_message(database) -> int:
    return database.scalar(sa.select(sa.func.max(Message.id)))


def title(database, conversation_id: int) -> str | None:
    return database.scalar(sa.select(Conversation.title).where(Conversation.id == conversation_id))


class TestKeys:
    def test_create_and_list(self, app, alice):
        created = cli(app, "keys", "create", "alice", "--no-store")

        listed = [
            line.split("\t") for line in cli(app, "keys", "list", "alice").output.splitlines()
        ]
        assert created.exit_code == 0
        assert "a no-store key: no prompt or answer made with it is stored" in created.output
        assert listed[0][-1] == "store"
        assert [(line[0], line[-1]) for line in listed[1:]] == [
            (alice.key[:12], "yes"),
            (last_line(created)[:12], "no"),
        ]


class TestRest:
    def test_json_answers_the_client_and_stores_no_text(self, no_store, client, database, fake_llm):
        fake_llm.behavior = Behavior(
            tokens=[f"answer {CANARY}"], reasoning=[f"thought {CANARY}"], usage=USAGE
        )
        conversation = no_store.post("/conversations", json={}).json["id"]

        response = no_store.post(
            f"/conversations/{conversation}/messages",
            json={"prompt": f"prompt {CANARY}"},
            buffered=True,  # closed: its close hook would title the conversation
        )

        assert response.status_code == 201
        shown = response.json
        assert (shown["prompt_content"], shown["response_content"]) == (
            f"prompt {CANARY}",
            f"answer {CANARY}",
        )
        assert shown["reasoning_content"] == f"thought {CANARY}"
        assert shown["request_params"] == {"store": False}
        assert_no_text(database, shown["id"])
        assert title(database, conversation) is None
        listed = client.get(f"/conversations/{conversation}/messages").json
        assert [(m["prompt_content"], m["response_content"]) for m in listed] == [("", "")]
        (usage,) = client.get("/usage").json["rows"]
        assert (usage["exchanges"], usage["total_tokens"]) == (1, 10)

    def test_sse(self, no_store, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=["answer ", CANARY], usage=USAGE)
        conversation = no_store.post("/conversations", json={"title": "mine"}).json["id"]

        events = parse_sse(post_stream(no_store, conversation, f"prompt {CANARY}").data)

        assert [data["text"] for event, data in events if event == "delta"] == ["answer ", CANARY]
        assert events[-1][0] == "done"
        done = events[-1][1]["message"]
        assert done["response_content"] == f"answer {CANARY}"
        assert_no_text(database, done["id"])
        assert title(database, conversation) == "mine"  # set by the client: kept

    def test_text_stream(self, no_store, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=["answer ", CANARY], usage=USAGE)
        conversation = no_store.post("/conversations", json={}).json["id"]

        response = stream_text(no_store, conversation, f"prompt {CANARY}")

        assert response.get_data(as_text=True) == f"answer {CANARY}"
        assert_no_text(database, newest_message(database))
        assert title(database, conversation) is None

    def test_later_prompts_send_no_history_of_it(self, no_store, client, fake_llm):
        conversation = client.post("/conversations", json={"title": "t"}).json["id"]
        branch(client, conversation, "kept prompt")
        branch(no_store, conversation, f"prompt {CANARY}")
        branch(client, conversation, "next")

        sent = fake_llm.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == ["kept prompt", "next"]

    def test_it_cannot_be_regenerated(self, no_store, fake_llm):
        conversation = no_store.post("/conversations", json={"title": "t"}).json["id"]
        (message_id,) = branch(no_store, conversation, f"prompt {CANARY}")

        response = no_store.post(
            f"/conversations/{conversation}/messages/{message_id}/regenerate", json={}
        )

        assert response.status_code == 409
        assert "kept no prompt" in response.json["message"]

    def test_the_daily_budget_counts_it(self, no_store, configure, fake_llm):
        configure(TOKEN_BUDGET_DAILY=100)
        fake_llm.behavior = Behavior(usage={"total_tokens": 60})
        conversation = no_store.post("/conversations", json={"title": "t"}).json["id"]

        def ask():
            return no_store.post(f"/conversations/{conversation}/messages", json={"prompt": "p"})

        statuses = [ask().status_code for _ in range(3)]

        assert statuses == [201, 201, 429]
        assert len(fake_llm.requests) == 2

    def test_metrics_count_it(self, no_store, anonymous, fake_llm):
        conversation = no_store.post("/conversations", json={"title": "t"}).json["id"]
        fake_llm.behavior = Behavior(n_tokens=3, usage=USAGE)
        before = samples(anonymous.get("/metrics").get_data(as_text=True))

        branch(no_store, conversation, "p")

        after = samples(anonymous.get("/metrics").get_data(as_text=True))
        labels = {"endpoint": "messages", "outcome": "complete"}
        name = "convstore_exchanges_total"
        assert value(after, name, **labels) - value(before, name, **labels) == 1


def completion(client, messages, **extra):
    return client.post("/v1/chat/completions", json={"model": "m", "messages": messages, **extra})


HISTORY = [
    {"role": "system", "content": f"system {CANARY}"},
    {"role": "user", "content": f"question {CANARY}"},
    {"role": "assistant", "content": "earlier answer"},
    {"role": "user", "content": f"follow-up {CANARY}"},
]


class TestChatCompletions:
    def test_recorded_without_text(self, no_store, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"], tool_calls=[TOOL_CALL])

        tool = {"type": "function", "function": {"name": "look_up", "description": CANARY}}

        response = completion(no_store, HISTORY, user=CANARY, tools=[tool])

        assert response.status_code == 200, response.json
        message = response.json["choices"][0]["message"]
        assert message["content"] == f"answer {CANARY}"
        assert message["tool_calls"][0]["function"]["arguments"] == TOOL_CALL["arguments"]
        message_id = int(response.headers["X-Message-Id"])
        row = exchange(database, message_id)
        assert {name: row[name] for name in NO_TEXT} == NO_TEXT
        assert row["recorded"][0] is not None
        assert title(database, int(response.headers["X-Conversation-Id"])) is None

    def test_streamed(self, no_store, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=["answer ", CANARY])

        response = completion(no_store, HISTORY, stream=True)

        assert CANARY in response.get_data(as_text=True)
        assert_no_text(database, int(response.headers["X-Message-Id"]))

    def test_never_threaded_by_fingerprint(self, no_store, client, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=["earlier answer"])
        stored = completion(client, HISTORY[:2])
        first = completion(no_store, HISTORY[:2])
        again = completion(no_store, HISTORY[:2])
        not_continued = completion(no_store, HISTORY)
        continued = completion(client, HISTORY)

        def conversation(response) -> int:
            return int(response.headers["X-Conversation-Id"])

        # The stored key's history threads (the same conversation); a no-store call is found
        # by no fingerprint and leaves none: each one a conversation of its own.
        assert conversation(continued) == conversation(stored)
        no_store_conversations = {conversation(r) for r in (first, again, not_continued)}
        assert len(no_store_conversations) == 3
        assert conversation(stored) not in no_store_conversations
        fingerprinted = sa.select(sa.func.count()).where(Message.history_fingerprint.is_not(None))
        assert database.scalar(fingerprinted) == 2  # the stored key's two calls
        no_store_ids = [int(r.headers["X-Message-Id"]) for r in (first, again, not_continued)]
        assert database.scalar(fingerprinted.where(Message.id.in_(no_store_ids))) == 0

    def test_a_named_conversation_takes_it(self, no_store, database, fake_llm):
        conversation = no_store.post("/conversations", json={"title": "t"}).json["id"]

        response = no_store.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": HISTORY[:2]},
            headers={"X-Conversation-Id": str(conversation)},
        )

        assert int(response.headers["X-Conversation-Id"]) == conversation
        assert_no_text(database, int(response.headers["X-Message-Id"]))


class TestResponses:
    def test_made_as_store_false(self, no_store, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"], usage=USAGE)

        response = no_store.post(
            "/v1/responses",
            json={"model": "m", "input": f"input {CANARY}", "instructions": f"be {CANARY}"},
        )

        assert response.status_code == 200, response.json
        body = response.json
        assert body["store"] is False
        assert body["output"][0]["content"][0]["text"] == f"answer {CANARY}"
        message_id = int(body["id"].removeprefix("resp_"))
        assert_no_text(database, message_id)
        assert no_store.get(f"/v1/responses/{body['id']}").status_code == 404

    def test_previous_response_id_is_404(self, no_store, client, fake_llm):
        made = no_store.post("/v1/responses", json={"model": "m", "input": "a"}).json["id"]
        completed = completion(no_store, HISTORY[:2]).headers["X-Message-Id"]
        conversation = no_store.post("/conversations", json={"title": "t"}).json["id"]
        (rest,) = branch(no_store, conversation, "p")

        for response_id in (made, f"resp_{completed}", f"resp_{rest}"):
            for who in (no_store, client):  # the same user's stored key too
                continued = who.post(
                    "/v1/responses",
                    json={"model": "m", "input": "b", "previous_response_id": response_id},
                )
                assert continued.status_code == 404, (response_id, continued.json)
                assert continued.json["error"]["param"] == "previous_response_id"

    def test_a_conversation_is_refused(self, no_store, client, fake_llm):
        conversation = client.post("/v1/conversations", json={}).json["id"]

        response = no_store.post(
            "/v1/responses", json={"model": "m", "input": "a", "conversation": conversation}
        )

        assert response.status_code == 400
        assert response.json["error"]["param"] == "conversation"
        assert "no-store" in response.json["error"]["message"]


class TestRefusedText:
    def test_conversation_items(self, no_store, client):
        item = {"type": "message", "role": "user", "content": CANARY}
        created = no_store.post("/v1/conversations", json={"items": [item]})
        conversation = client.post("/v1/conversations", json={}).json["id"]
        added = no_store.post(f"/v1/conversations/{conversation}/items", json={"items": [item]})

        for refused in (created, added):
            assert refused.status_code == 400
            assert refused.json["error"]["param"] == "items"
        assert no_store.post("/v1/conversations", json={}).status_code == 200

    def test_import(self, no_store, database):
        document = {"format": "convstore", "version": 1, "conversations": []}

        response = no_store.post("/import", json=document)

        assert response.status_code == 403
        assert "no-store" in response.json["message"]


def test_no_text_of_it_is_anywhere(pooled_app, fake_llm):
    """The canary in a prompt, an answer, reasoning, a tool call, a system prompt, request
    parameters and a Responses input, all made with a no-store key: in no table (PostgreSQL:
    every text column; SQLite: the file's and the WAL's bytes), even mid-stream when the
    checkpointer writes what was relayed so far."""
    with pooled_app.app_context():
        key = users_service.create_key("alice", no_store=True).secret
    no_store = keyed_client(pooled_app, key)
    conversation = no_store.post("/conversations", json={}).json["id"]
    fake_llm.behavior = Behavior(
        tokens=[f"answer {CANARY} "] * 20, reasoning=[f"thought {CANARY}"], delay=0.02
    )
    stream = post_stream(no_store, conversation, f"prompt {CANARY}", buffered=False)
    body = iter(stream.response)
    next(body)
    next(body)
    pooled_app.extensions["live_exchanges"].tick(reap=False)  # a checkpoint mid-stream
    assert places_holding(pooled_app, CANARY) == []
    rest = b"".join(body)
    stream.close()
    assert CANARY.encode() in rest
    fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"], tool_calls=[TOOL_CALL])
    assert completion(no_store, HISTORY, user=CANARY).status_code == 200
    response = no_store.post("/v1/responses", json={"model": "m", "input": f"input {CANARY}"})
    assert response.status_code == 200
    stream_text(no_store, conversation, f"prompt {CANARY}")

    assert places_holding(pooled_app, CANARY) == []
    # The same user's other key stores it: the search for it finds it then.
    stored = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    assert completion(stored, HISTORY).status_code == 200
    assert places_holding(pooled_app, CANARY) != []
