"""/v1/responses and /v1/conversations in process, on both engines: failures, paging and
ids in OpenAI's error shape, and what each exchange keeps."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

MODEL = "fake-model"


def create(client, **body):
    return client.post("/v1/responses", json={"model": MODEL, "input": "hi", **body})


def test_an_answer_broken_off_without_stream_is_a_502_and_a_failed_exchange(
    client, fake_llm, database
):
    fake_llm.behavior = Behavior(n_tokens=10, break_after=3)

    response = create(client)

    assert response.status_code == 502
    assert response.json["error"]["type"] == "server_error"
    row = database.get(Message, int(response.headers["X-Message-Id"]))
    assert (row.outcome, row.status_code, row.response_content) == (
        "failed",
        502,
        "tok0 tok1 tok2 ",
    )


def test_max_output_tokens_is_held_to_the_cap_and_echoed_as_sent(client, configure, fake_llm):
    configure(MAX_OUTPUT_TOKENS=50)

    response = create(client, max_output_tokens=500)

    assert response.headers["X-Max-Output-Tokens"] == "50"
    assert response.json["max_output_tokens"] == 50
    assert fake_llm.requests[0].body["max_tokens"] == 50


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/responses/resp_999", 404),
        ("/v1/responses/not-an-id", 404),
        ("/v1/responses/resp_01", 404),
        ("/v1/responses/resp_99999999999999999999", 404),
        ("/v1/conversations/conv_999", 404),
        ("/v1/conversations/conv_x/items", 404),
        ("/v1/responses/{resp}?stream=true", 400),
        ("/v1/responses/{resp}/input_items?after=msg_1i9", 400),
        ("/v1/responses/{resp}/input_items?limit=101", 400),
        ("/v1/conversations/{conv}/items/msg_1o0", 404),
        ("/v1/conversations/{conv}/items/fc_{n}i0", 404),
    ],
)
def test_unknown_ids_are_404_and_bad_queries_400_in_openai_shape(client, fake_llm, path, status):
    created = create(client).json
    conversation = client.post("/v1/conversations", json={"items": []}).json
    url = path.format(resp=created["id"], conv=conversation["id"], n=created["id"][5:])

    response = client.get(url)

    assert response.status_code == status
    assert set(response.json["error"]) == {"message", "type", "param", "code"}


def test_an_admin_reads_any_users_response_as_rest_lets_them(app, client, make_account, fake_llm):
    created = create(client).json
    admin = keyed_client(app, make_account("root", admin=True).key)

    assert admin.get(f"/v1/responses/{created['id']}").json == created


def test_a_rest_exchange_reads_as_a_response(client, fake_llm):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    message = client.post(
        f"/conversations/{conversation_id}/messages", json={"prompt": "from REST"}
    ).json

    response = client.get(f"/v1/responses/resp_{message['id']}").json

    assert (response["status"], response["output"][0]["content"][0]["text"]) == (
        "completed",
        message["response_content"],
    )
    items = client.get(f"/v1/responses/resp_{message['id']}/input_items").json
    assert items["data"][0]["content"] == [{"type": "input_text", "text": "from REST"}]


def test_checkpoints_write_no_text_of_a_store_false_response(pooled_app, fake_llm):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    fake_llm.behavior = Behavior(n_tokens=40, delay=0.05)
    streams = [
        client.post(
            "/v1/responses",
            json={"model": MODEL, "input": "hi", "stream": True, "store": store},
            buffered=False,
        )
        for store in (True, False)
    ]
    bodies = [iter(stream.response) for stream in streams]
    for body in bodies:
        # created, in_progress, the message's added events and its first delta, written.
        while b"output_text.delta" not in next(body):
            pass
        next(body)
    live = pooled_app.extensions["live_exchanges"]

    checkpointed, _ = live.tick(reap=False)

    with pooled_app.app_context():
        rows = db.session.execute(
            sa.select(
                Message.prompt_content, Message.response_content, Message.heartbeat_at
            ).order_by(Message.id)
        ).all()
    for stream in streams:
        stream.close()
    assert checkpointed == 2
    (kept_prompt, kept_text, _), (secret_prompt, secret_text, beat) = rows
    assert (kept_prompt, kept_text.startswith("tok0 ")) == ("hi", True)
    assert (secret_prompt, secret_text, beat is not None) == ("", "", True)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ({"items": [{"type": "web_search_call", "id": "ws"}]}, "items"),
    ],
)
def test_conversation_limits_are_a_400_naming_the_field(client, body, param):
    response = client.post("/v1/conversations", json=body)

    assert response.status_code == 400
    assert response.json["error"]["param"] == param


def test_an_item_reference_is_the_stored_item_and_continues_its_response(
    client, fake_llm, database
):
    first = create(client, input="Question?").json
    answer_id = first["output"][0]["id"]

    second = create(
        client,
        input=[
            {"type": "message", "role": "user", "content": "Question?"},
            {"type": "item_reference", "id": answer_id},
            {"role": "user", "content": "And then?"},
        ],
    )
    unknown = create(client, input=[{"id": "msg_999o0"}])

    assert second.status_code == 200
    assert fake_llm.requests[-1].body["messages"] == [
        {"role": "user", "content": "Question?"},
        {"role": "assistant", "content": first["output"][0]["content"][0]["text"]},
        {"role": "user", "content": "And then?"},
    ]
    row = database.get(Message, int(second.json["id"][5:]))
    assert row.parent_id == int(first["id"][5:])
    assert (unknown.status_code, unknown.json["error"]["param"]) == (404, "input")


@pytest.mark.parametrize(("truncation", "kept"), [("auto", ["3", "4"]), ("disabled", list("1234"))])
def test_truncation_auto_sends_the_last_history_max_messages_exchanges(
    client, configure, fake_llm, truncation, kept
):
    configure(HISTORY_MAX_MESSAGES=2)
    previous = None
    for turn in "1234":
        previous = create(client, input=turn, previous_response_id=previous).json["id"]

    create(client, input="5", previous_response_id=previous, truncation=truncation)

    sent = fake_llm.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == [*kept, "5"]


def test_include_reasoning_encrypted_content_is_answered_and_other_extras_refused_by_name(
    client, fake_llm
):
    fake_llm.behavior = Behavior(tokens=["Hi"], reasoning=["hm"])

    # What pydantic-ai sends with every OpenAI reasoning model's name.
    response = create(client, include=["reasoning.encrypted_content"])
    refused = create(
        client, include=["reasoning.encrypted_content", "message.output_text.logprobs"]
    )

    assert response.status_code == 200
    reasoning = response.json["output"][0]
    assert (reasoning["type"], reasoning["encrypted_content"], reasoning["content"]) == (
        "reasoning",
        None,
        [{"type": "reasoning_text", "text": "hm"}],
    )
    assert (refused.status_code, refused.json["error"]["param"]) == (400, "include")
    assert "'message.output_text.logprobs' is not supported" in refused.json["error"]["message"]


LOOKUP = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
# As the upstream wrote them; clients resend them re-encoded from the parsed JSON.
ARGUMENTS = '{ "q" :"d\\u00e9j\\u00e0 vu" }'


def tool_loop(fake_llm) -> None:
    fake_llm.behavior = Behavior(
        tokens=["Seen."],
        tool_calls=[{"id": "call_1", "name": "lookup", "arguments": ARGUMENTS}],
        tool_loop=True,
    )


def resent_call(output: str) -> list[dict]:
    """A function call and its output as pydantic-ai and Vercel's ai resend them: no item
    id, the arguments re-encoded."""
    return [
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"q":"déjà vu"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": output},
    ]


def test_a_history_resent_without_item_ids_continues_the_exchange_that_ended_it(
    app, client, make_account, fake_llm, database
):
    tool_loop(fake_llm)
    asked = [{"role": "user", "content": "Look up déjà vu"}]
    first = create(client, input=asked, tools=LOOKUP).json
    history = [*asked, *resent_call("result")]

    second = create(client, input=history, tools=LOOKUP).json
    third = create(
        client,
        input=[
            *history,
            {"role": "assistant", "content": "Seen."},
            {"role": "user", "content": "?"},
        ],
        tools=LOOKUP,
    ).json
    bobs = create(keyed_client(app, make_account("bob").key), input=history, tools=LOOKUP).json

    rows = [database.get(Message, int(r["id"][5:])) for r in (first, second, third, bobs)]
    assert [row.parent_id for row in rows] == [None, rows[0].id, rows[1].id, None]
    assert len({row.conversation_id for row in rows[:3]}) == 1
    assert rows[3].conversation_id != rows[0].conversation_id  # histories are per owner
    assert [row.input_items for row in rows[1:3]] == [
        [{"type": "function_call_output", "call_id": "call_1", "output": "result"}],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "?"}]}],
    ]
    # The context is the input as sent.
    assert fake_llm.requests[1].body["messages"][1]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"q":"déjà vu"}',
    }


def test_an_answer_resent_without_its_id_after_replayed_ones_is_followed_not_branched(
    client, fake_llm, database
):
    # Vercel's ai: earlier answers by item_reference, the last turn's tool call without id.
    first = create(client, input="Question?").json
    tool_loop(fake_llm)
    turn = [
        {"role": "user", "content": "Question?"},
        {"type": "item_reference", "id": first["output"][0]["id"]},
        {"role": "user", "content": "Look it up"},
    ]
    second = create(client, input=turn, tools=LOOKUP).json

    third = create(client, input=[*turn, *resent_call("result")], tools=LOOKUP).json

    rows = [database.get(Message, int(r["id"][5:])) for r in (first, second, third)]
    assert [row.parent_id for row in rows] == [None, rows[0].id, rows[1].id]
    assert rows[2].input_items == [
        {"type": "function_call_output", "call_id": "call_1", "output": "result"}
    ]


def sse_events(body: bytes) -> list[dict]:
    """The data of each event of a Responses stream, in order."""
    return [
        json.loads(block.split("\ndata: ", 1)[1]) for block in body.decode().split("\n\n") if block
    ]


DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


def test_usage_details_the_upstream_reports_are_the_responses_kept_and_retrieved(
    client, fake_llm, database
):
    fake_llm.behavior = Behavior(tokens=["Hi."], usage_details=DETAILS)

    body = create(client, stream=True).data

    final = sse_events(body)[-1]["response"]
    assert final["usage"] == {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 2,
    }
    assert client.get(f"/v1/responses/{final['id']}").json == final
    row = database.get(Message, int(final["id"][5:]))
    assert (row.cached_tokens, row.reasoning_tokens) == (2, 3)


def test_usage_details_the_upstream_does_not_report_are_zero_and_kept_null(
    client, fake_llm, database
):
    fake_llm.behavior = Behavior(tokens=["Hi."])

    response = create(client).json

    assert (
        response["usage"]["input_tokens_details"],
        response["usage"]["output_tokens_details"],
    ) == ({"cached_tokens": 0, "cache_write_tokens": 0}, {"reasoning_tokens": 0})
    row = database.get(Message, int(response["id"][5:]))
    assert (row.cached_tokens, row.reasoning_tokens) == (None, None)


REFUSAL = "I can't help with that."


def test_a_refusal_is_streamed_as_refusal_events_stored_and_retrieved_the_same(
    client, fake_llm, database
):
    fake_llm.behavior = Behavior(tokens=[], refusal=["I can't ", "help with that."])

    events = sse_events(create(client, stream=True).data)

    final = events[-1]["response"]
    (message,) = final["output"]
    uid = message["id"]
    part = {"type": "refusal", "refusal": REFUSAL}
    assert message["content"] == [part]
    assert [(e["type"], e.get("delta") or e.get("refusal") or e.get("part")) for e in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", None),
        ("response.content_part.added", {"type": "refusal", "refusal": ""}),
        ("response.refusal.delta", "I can't "),
        ("response.refusal.delta", "help with that."),
        ("response.refusal.done", REFUSAL),
        ("response.content_part.done", part),
        ("response.output_item.done", None),
        ("response.completed", None),
    ]
    delta = events[4]
    assert {k: delta[k] for k in ("item_id", "output_index", "content_index")} == {
        "item_id": uid,
        "output_index": 0,
        "content_index": 0,
    }
    assert client.get(f"/v1/responses/{final['id']}").json == final
    row = database.get(Message, int(final["id"][5:]))
    assert (row.response_content, row.refusal_content) == ("", REFUSAL)
    items = client.get(f"/v1/conversations/conv_{row.conversation_id}/items?order=asc").json
    assert items["data"][-1] == message


def test_a_refusal_in_a_whole_chat_completion_is_kept_and_reads_as_a_refusal_part(
    client, fake_llm, database
):
    fake_llm.behavior = Behavior(tokens=[], refusal=[REFUSAL])
    completion = client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    message_id = int(completion.headers["X-Message-Id"])

    response = client.get(f"/v1/responses/resp_{message_id}").json

    assert completion.json["choices"][0]["message"]["refusal"] == REFUSAL
    assert response["output"][0]["content"] == [{"type": "refusal", "refusal": REFUSAL}]
    row = database.get(Message, message_id)
    assert (row.response_content, row.refusal_content) == ("", REFUSAL)
