"""Deleting one conversation item (DELETE /v1/conversations/{c}/items/{item}): exactly that
item's content, in its exchange's own format; every other item keeps its content and id; the
last one left makes the exchange a tombstone; nothing deleted is sent to the model again."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.models import Message
from tests.deletion.helpers import branch, last_sent, message_id, respond
from tests.fake_llm import Behavior

CALL = {"id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'}
IMAGE = "data:image/png;base64,iVBORw0KGgo="


def items(client, conversation_id: int) -> list[dict]:
    listed = client.get(
        f"/v1/conversations/conv_{conversation_id}/items", query_string={"order": "asc"}
    )
    assert listed.status_code == 200, listed.json
    return listed.json["data"]


def delete_item(client, conversation_id: int, item_id: str):
    return client.delete(f"/v1/conversations/conv_{conversation_id}/items/{item_id}")


def chat_with_a_tool_and_an_image(client, fake_llm) -> tuple[int, int]:
    """A /v1/chat/completions conversation whose second call sends the history: a user
    turn, the assistant's tool call, the tool's result, a user turn with text and an image.
    Its (conversation id, second exchange id)."""
    fake_llm.behavior = Behavior(tokens=[], tool_calls=[CALL], finish_reason="tool_calls")
    asked = [{"role": "user", "content": "look it up"}]
    first = client.post("/v1/chat/completions", json={"model": "m", "messages": asked})
    assert first.status_code == 200, first.json
    fake_llm.behavior = Behavior(tokens=["the answer"])
    history = [
        *asked,
        first.json["choices"][0]["message"],
        {"role": "tool", "tool_call_id": "call_1", "content": "tool result"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and this picture"},
                {"type": "image_url", "image_url": {"url": IMAGE}},
            ],
        },
    ]
    second = client.post("/v1/chat/completions", json={"model": "m", "messages": history})
    assert second.status_code == 200, second.json
    return int(second.headers["X-Conversation-Id"]), int(second.headers["X-Message-Id"])


class TestOneItem:
    def test_a_chat_completions_exchange_keeps_its_format_and_its_other_items(
        self, client, database, fake_llm
    ):
        cid, uid = chat_with_a_tool_and_an_image(client, fake_llm)
        before = items(client, cid)
        stored = database.get(Message, uid)
        assert [item["id"] for item in before][-3:] == [
            f"fco_{uid}i0",
            f"msg_{uid}i1",
            f"msg_{uid}o0",
        ]

        assert delete_item(client, cid, f"msg_{uid}o0").status_code == 200
        assert items(client, cid) == before[:-1]
        assert database.get(Message, uid).input_items == stored.input_items

        assert delete_item(client, cid, f"fco_{uid}i0").status_code == 200
        assert items(client, cid) == before[:-3] + before[-2:-1]
        row = database.get(Message, uid)
        assert row.input_items == [None, stored.input_items[1]]
        assert row.input_items[1]["content"][1]["image_url"]["url"] == IMAGE
        assert (row.prompt_content, row.response_content) == (stored.prompt_content, "")
        assert row.history_fingerprint is None
        assert row.deleted_at is None

    def test_each_output_item_erases_its_own_column_and_the_others_keep_their_ids(
        self, client, database, fake_llm
    ):
        second_call = {"id": "call_2", "name": "other", "arguments": "{}"}
        fake_llm.behavior = Behavior(
            reasoning=["thinking"], tokens=["text"], tool_calls=[CALL, second_call]
        )
        response = respond(client, input="go")
        uid = message_id(response["id"])
        cid = database.get(Message, uid).conversation_id
        layout = [item["id"] for item in response["output"]]
        assert layout == [f"rs_{uid}o0", f"msg_{uid}o1", f"fc_{uid}o2", f"fc_{uid}o3"]

        delete_item(client, cid, f"fc_{uid}o2")
        row = database.get(Message, uid)
        assert row.tool_calls[0] is None
        assert row.tool_calls[1]["id"] == "call_2"
        assert row.history_fingerprint is None
        delete_item(client, cid, f"rs_{uid}o0")
        delete_item(client, cid, f"msg_{uid}o1")

        row = database.get(Message, uid)
        assert (row.reasoning_content, row.response_content, row.refusal_content) == (
            None,
            "",
            None,
        )
        assert row.output_items == [None, None, None, "fc:1"]
        kept = client.get(f"/v1/responses/{response['id']}").json["output"]
        assert [(item["id"], item["call_id"]) for item in kept] == [(f"fc_{uid}o3", "call_2")]
        # An export keeps the null slots, and an import takes them back as they are.
        imported = client.post("/import", json=client.get(f"/conversations/{cid}/export").json)
        assert imported.status_code == 201, imported.json
        new_cid = imported.json["conversations"][0]["id"]
        (copy,) = client.get(f"/conversations/{new_cid}/messages").json
        assert copy["tool_calls"] == [None, row.tool_calls[1]]

    def test_a_deleted_item_is_404_and_a_second_delete_too(self, client, database, fake_llm):
        response = respond(client, input="go")
        uid = message_id(response["id"])
        cid = database.get(Message, uid).conversation_id

        assert delete_item(client, cid, f"msg_{uid}i0").status_code == 200
        again = delete_item(client, cid, f"msg_{uid}i0")

        assert again.status_code == 404
        assert again.json["error"]["message"] == (
            f"No item with id 'msg_{uid}i0' in conversation 'conv_{cid}'."
        )


class TestAllItems:
    def test_the_exchange_is_gone_from_every_read_and_from_what_the_model_is_sent(
        self, client, database, fake_llm
    ):
        cid = client.post("/conversations", json={"title": "t"}).json["id"]
        branch(client, cid, "first keptword")
        fake_llm.behavior = Behavior(tokens=["answer secretword"])
        response = respond(client, input="prompt secretword", conversation=f"conv_{cid}")
        uid = message_id(response["id"])

        for item_id in (f"msg_{uid}i0", f"msg_{uid}o0"):
            assert delete_item(client, cid, item_id).status_code == 200

        listed = client.get(f"/conversations/{cid}/messages").json
        assert [m["deleted"] for m in listed] == [False, True]
        assert (listed[1]["prompt_content"], listed[1]["response_content"]) == ("", "")
        assert "secretword" not in json.dumps(listed)
        assert client.get("/search", query_string={"q": "secretword"}).json["results"] == []
        assert "secretword" not in client.get("/export").get_data(as_text=True)
        assert client.get(f"/v1/responses/{response['id']}").status_code == 404
        fake_llm.behavior = Behavior(tokens=["ok"])
        branch(client, cid, "next prompt")
        assert "keptword" in last_sent(fake_llm)
        assert "secretword" not in last_sent(fake_llm)


class TestWhileStreaming:
    def test_an_item_of_an_exchange_in_progress_is_409_and_the_ending_keeps_all(
        self, client, database, fake_llm
    ):
        cid = client.post("/conversations", json={"title": "t"}).json["id"]
        fake_llm.behavior = Behavior(n_tokens=4, delay=0.02)
        response = client.post(
            "/v1/responses",
            json={"model": "m", "input": "hi", "conversation": f"conv_{cid}", "stream": True},
            buffered=False,
        )
        uid = int(response.headers["X-Message-Id"])
        pieces = iter(response.response)
        first = next(pieces)

        refused = [delete_item(client, cid, f"msg_{uid}{side}0") for side in "io"]
        rest = b"".join(pieces)
        response.close()

        for answer in refused:
            assert answer.status_code == 409
            assert answer.json["error"]["message"].startswith(f"Exchange {uid} is in progress")
        events = [
            json.loads(line[6:])
            for line in (first + rest).decode().splitlines()
            if line.startswith("data: ")
        ]
        assert events[-1]["type"] == "response.completed"
        assert [item["id"] for item in items(client, cid)] == [f"msg_{uid}i0", f"msg_{uid}o0"]


class TestLateEndings:
    """An ending that arrives after the exchange was ended by the reaper (its save waited out
    an outage, or was spooled and recovered) brings nothing deleted back."""

    def spool_ending(self, app, configure, tmp_path, uid: int) -> None:
        spool = tmp_path / "unsaved.jsonl"
        configure(UNSAVED_EXCHANGES_FILE=str(spool))
        ending = {
            "message_id": uid,
            "response_content": "late secretword",
            "output_items": ["message"],
            "is_success": True,
            "outcome": "complete",
            "status_code": 200,
            "total_tokens": 99,
        }
        spool.write_text(json.dumps(ending) + "\n")
        result = app.test_cli_runner().invoke(args=["messages", "recover"])
        assert "recovered 1 record(s); 0 kept" in result.output, result.output
        assert not spool.exists()

    def test_on_a_deleted_item_only_the_accounting_is_rewritten(
        self, app, client, configure, database, fake_llm, tmp_path
    ):
        response = respond(client, input="prompt keptword")
        uid = message_id(response["id"])
        cid = database.get(Message, uid).conversation_id
        database.execute("UPDATE messages SET outcome = 'interrupted' WHERE id = :id", id=uid)
        delete_item(client, cid, f"msg_{uid}o0")

        self.spool_ending(app, configure, tmp_path, uid)

        row = database.get(Message, uid)
        assert (row.response_content, row.output_items, row.total_tokens) == ("", [None], 99)
        assert row.prompt_content == "prompt keptword"

    def test_on_a_tombstone_only_the_accounting_is_rewritten(
        self, app, client, configure, database, fake_llm, tmp_path
    ):
        response = respond(client, input="prompt secretword")
        uid = message_id(response["id"])
        client.delete(f"/v1/responses/{response['id']}")

        self.spool_ending(app, configure, tmp_path, uid)

        row = database.get(Message, uid)
        assert (row.response_content, row.output_items, row.total_tokens) == ("", [], 99)
        assert row.deleted_at is not None
        assert (
            database.scalar(
                sa.select(sa.func.count()).where(Message.response_content.contains("secretword"))
            )
            == 0
        )
