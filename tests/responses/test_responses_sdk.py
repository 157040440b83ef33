"""The official openai SDK's Responses and Conversations clients, unchanged but for base_url
and key, against the service under real gunicorn on both engines: what the SDK receives is
what was saved, the stream rebuilds the stored Response, context follows the tree."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
import sqlalchemy as sa

from tests.clients import as_json, chat_requests
from tests.fake_llm import Behavior
from tests.openai_shapes import checked_async_http_client, checked_http_client
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until

MODEL = "fake-model"
ANSWER = "tok0 tok1 tok2 tok3 tok4 "
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Service:
    def __init__(self, web: WebProcess, engine: sa.Engine, keys: dict[str, str]) -> None:
        self.web, self.engine, self.keys = web, engine, keys

    def client(self, user: str = "alice") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.web.port}/v1",
            api_key=self.keys[user],
            max_retries=0,
            http_client=checked_http_client(),
        )

    def rows(self, sql: str, **params: object) -> list[sa.Row]:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).all()

    def message(self, response_id: str) -> sa.Row:
        (row,) = self.rows("SELECT * FROM messages WHERE id = :i", i=int(response_id[5:]))
        return row


@pytest.fixture(scope="module")
def service(backend, database_factory, llm_server, tmp_path_factory):
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url)
    release(env)
    keys = {name: create_user(env, name) for name in ("alice", "bob")}
    engine = sa.create_engine(url)
    with WebProcess(env, tmp_path_factory.mktemp("responses") / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {keys['alice']}"}
        yield Service(web, engine, keys)
    engine.dispose()


def test_a_plain_response_is_saved_as_received_and_retrieved_the_same(service, fake_llm):
    client = service.client()

    created = client.responses.create(model=MODEL, input="Hello", instructions="Be brief.")

    assert (created.status, created.output_text) == ("completed", ANSWER)
    assert created.id.startswith("resp_")
    assert client.responses.retrieve(created.id).to_dict() == created.to_dict()
    row = service.message(created.id)
    assert (row.prompt_content, row.response_content, row.system_prompt, row.endpoint) == (
        "Hello",
        ANSWER,
        "Be brief.",
        "responses",
    )
    assert (row.outcome, row.total_tokens) == ("complete", created.usage.total_tokens)
    (sent,) = chat_requests(fake_llm)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]


def test_the_stream_accumulator_rebuilds_the_stored_response(service, fake_llm):
    fake_llm.behavior = Behavior(tokens=["Hé", "llo ", "wörld ", "🌍"], reasoning=["hm", "m"])
    client = service.client()

    with client.responses.stream(model=MODEL, input="Hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()

    stored = client.responses.retrieve(final.id)
    as_dict = final.to_dict()
    for item in as_dict["output"]:
        for part in item.get("content") or []:
            part.pop("parsed", None)
    assert as_dict == stored.to_dict()
    assert final.output_text == "Héllo wörld 🌍"
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.reasoning_text.delta"] * 2,
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    row = service.message(final.id)
    assert (row.response_content, row.reasoning_content) == ("Héllo wörld 🌍", "hmm")


def test_a_refusal_and_usage_details_are_rebuilt_by_the_accumulator_as_stored(service, fake_llm):
    fake_llm.behavior = Behavior(
        tokens=[],
        refusal=["I can't ", "help with that."],
        usage_details={
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )
    client = service.client()

    with client.responses.stream(model=MODEL, input="Hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()

    stored = client.responses.retrieve(final.id)
    assert final.to_dict() == stored.to_dict()
    assert final.output[0].content[0].to_dict() == {
        "type": "refusal",
        "refusal": "I can't help with that.",
    }
    assert (
        final.usage.input_tokens_details.cached_tokens,
        final.usage.output_tokens_details.reasoning_tokens,
    ) == (4, 0)
    assert kinds.count("response.refusal.delta") == 2
    row = service.message(final.id)
    assert (row.refusal_content, row.cached_tokens, row.reasoning_tokens) == (
        "I can't help with that.",
        4,
        0,
    )


def test_a_function_tool_round_trip_with_previous_response_id(service, fake_llm):
    client = service.client()
    fake_llm.behavior = Behavior(
        tokens=[],
        tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Lyon"}'}],
        finish_reason="tool_calls",
    )
    first = client.responses.create(model=MODEL, input="Weather in Lyon?", tools=[TOOL])
    (call,) = first.output
    assert (call.type, call.call_id, call.name, call.arguments) == (
        "function_call",
        "call_1",
        "get_weather",
        '{"city":"Lyon"}',
    )
    fake_llm.behavior = Behavior(tokens=["21 C"])

    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21"}],
        tools=[TOOL],
    )

    assert second.output_text == "21 C"
    assert second.previous_response_id == first.id
    sent = chat_requests(fake_llm)[-1]
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21"},
    ]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert service.message(second.id).parent_id == int(first.id[5:])


def test_previous_response_id_over_three_turns_sends_the_chain_not_the_instructions(
    service, fake_llm
):
    client = service.client()
    ids = []
    previous = None
    for n, instructions in enumerate(("First rules.", None, "Third rules.")):
        fake_llm.behavior = Behavior(tokens=[f"answer{n}"])
        response = client.responses.create(
            model=MODEL,
            input=f"question{n}",
            previous_response_id=previous,
            **({"instructions": instructions} if instructions else {}),
        )
        ids.append(response.id)
        previous = response.id

    assert chat_requests(fake_llm)[-1]["messages"] == [
        {"role": "system", "content": "Third rules."},
        {"role": "user", "content": "question0"},
        {"role": "assistant", "content": "answer0"},
        {"role": "user", "content": "question1"},
        {"role": "assistant", "content": "answer1"},
        {"role": "user", "content": "question2"},
    ]
    rows = [service.message(i) for i in ids]
    assert [r.parent_id for r in rows] == [None, rows[0].id, rows[1].id]
    assert len({r.conversation_id for r in rows}) == 1


def test_a_conversation_is_the_rest_conversation_and_holds_the_responses(service, fake_llm):
    client = service.client()
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Remember: blue."}],
        metadata={"topic": "colours"},
    )
    rest_id = int(conversation.id.removeprefix("conv_"))
    status, body = service.web.request("GET", f"/conversations/{rest_id}")
    assert status == 200
    assert json.loads(body)["metadata"] == {"topic": "colours"}

    response = client.responses.create(
        model=MODEL, input="Which colour?", conversation=conversation.id
    )

    assert response.conversation.id == conversation.id
    assert chat_requests(fake_llm)[-1]["messages"] == [
        {"role": "user", "content": "Remember: blue."},
        {"role": "user", "content": "Which colour?"},
    ]
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [(item.type, item.role) for item in items] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert items[2].id == response.output[0].id
    assert items[2].content[0].text == response.output_text
    assert [i.id for i in client.conversations.items.list(conversation.id)] == [
        i.id for i in reversed(items)
    ]


def test_input_items_are_paged_and_responses_deleted(service, fake_llm):
    client = service.client()
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "input_text", "text": "two"}]},
        ],
    )

    pages = client.responses.input_items.list(response.id, limit=1, order="asc")
    texts = [item.content[0].text for item in pages]

    assert texts == ["one", "two"]
    deleted = client.responses.with_raw_response.delete(response.id)
    assert json.loads(deleted.text) == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_conversation_items_are_created_listed_retrieved_and_deleted(service, fake_llm):
    client = service.client()
    conversation = client.conversations.create()
    updated = client.conversations.update(conversation.id, metadata={"k": "v"})
    assert updated.metadata == {"k": "v"}
    assert client.conversations.retrieve(conversation.id).metadata == {"k": "v"}

    added = client.conversations.items.create(
        conversation.id,
        items=[
            {"role": "user", "content": "a"},
            {"type": "function_call_output", "call_id": "c1", "output": "b"},
        ],
    )

    first, second = added.data
    assert (first.type, second.type) == ("message", "function_call_output")
    got = client.conversations.items.retrieve(second.id, conversation_id=conversation.id)
    assert got.to_dict() == second.to_dict()
    after = client.conversations.items.delete(first.id, conversation_id=conversation.id)
    assert after.id == conversation.id
    assert [i.id for i in client.conversations.items.list(conversation.id)] == [second.id]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(first.id, conversation_id=conversation.id)
    assert client.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_another_users_ids_are_not_found(service, fake_llm):
    alice, bob = service.client("alice"), service.client("bob")
    response = alice.responses.create(model=MODEL, input="mine")
    conversation = alice.conversations.create()

    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as raised:
        bob.responses.create(model=MODEL, input="x", previous_response_id=response.id)
    assert raised.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        bob.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=MODEL, input="x", conversation=conversation.id)


def test_unsupported_features_are_a_400_naming_them(service, fake_llm):
    client = service.client()

    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}])

    assert raised.value.param == "tools"
    assert "built-in tool" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="x", background=True)
    assert raised.value.param == "background"
    assert chat_requests(fake_llm) == []


def test_store_false_is_accounted_but_keeps_no_content(service, fake_llm):
    client = service.client()

    response = client.responses.create(model=MODEL, input="secret", store=False)

    assert (response.output_text, response.store) == (ANSWER, False)
    row = service.message(response.id)
    assert (row.prompt_content, row.response_content, as_json(row.input_items)) == ("", "", [])
    assert (row.outcome, row.total_tokens) == ("complete", response.usage.total_tokens)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="x", previous_response_id=response.id)


def test_an_upstream_failure_before_the_first_byte_is_an_error_and_a_failed_exchange(
    service, fake_llm
):
    fake_llm.behavior = Behavior(error_status=503)
    client = service.client()

    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=MODEL, input="x")

    (row,) = service.rows(
        "SELECT outcome, status_code FROM messages WHERE endpoint = 'responses'"
        " ORDER BY id DESC LIMIT 1"
    )
    assert (row.outcome, row.status_code) == ("failed", 503)


def test_a_length_stop_is_an_incomplete_response_streamed_and_stored(service, fake_llm):
    fake_llm.behavior = Behavior(tokens=["Par", "is"], finish_reason="length")
    client = service.client()

    events = list(client.responses.create(model=MODEL, input="Capital?", stream=True))

    terminal = events[-1]
    assert terminal.type == "response.incomplete"
    assert terminal.response.incomplete_details.reason == "max_output_tokens"
    stored = client.responses.retrieve(terminal.response.id)
    assert stored.to_dict() == terminal.response.to_dict()
    assert stored.output_text == "Paris"


def test_an_answer_broken_off_ends_with_response_failed_as_stored(service, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=10, break_after=3)
    client = service.client()

    events = list(client.responses.create(model=MODEL, input="x", stream=True))

    terminal = events[-1]
    assert (terminal.type, terminal.response.status) == ("response.failed", "failed")
    assert terminal.response.error.code == "server_error"
    stored = client.responses.retrieve(terminal.response.id)
    assert stored.to_dict() == terminal.response.to_dict()
    row = service.message(stored.id)
    assert (row.outcome, row.status_code, row.response_content) == (
        "failed",
        502,
        "tok0 tok1 tok2 ",
    )


def test_a_client_that_hangs_up_is_client_closed_and_reads_as_cancelled(service, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=200, delay=0.02)
    client = service.client()
    raw = client.responses.with_raw_response.create(model=MODEL, input="x", stream=True)
    stream = raw.parse()
    received = [next(stream) for _ in range(6)]
    stream.close()
    message_id = raw.headers["x-message-id"]

    def ended() -> bool:
        return service.message(f"resp_{message_id}").outcome is not None

    assert wait_until(ended)
    row = service.message(f"resp_{message_id}")
    assert (row.outcome, row.status_code) == ("client_closed", 499)
    assert received[0].type == "response.created"
    assert client.responses.retrieve(f"resp_{message_id}").status == "cancelled"


def test_the_agents_sdk_runs_a_tool_and_continues_by_response_and_by_conversation(
    service, fake_llm
):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        fake_llm.behavior = Behavior(tokens=["Sunny ", "in ", city])
        return "21 C"

    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{service.web.port}/v1",
        api_key=service.keys["alice"],
        max_retries=0,
        http_client=checked_async_http_client(),
    )
    agent = Agent(
        name="weather",
        instructions="Be brief.",
        model=OpenAIResponsesModel(MODEL, client),
        tools=[get_weather],
    )
    fake_llm.behavior = Behavior(
        tokens=[],
        tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Lyon"}'}],
        finish_reason="tool_calls",
    )

    async def runs() -> list:
        first = await Runner.run(agent, "Weather in Lyon?")
        fake_llm.behavior = Behavior(tokens=["Yes."])
        second = Runner.run_streamed(agent, "Sure?", previous_response_id=first.last_response_id)
        async for _ in second.stream_events():
            pass
        conversation = await client.conversations.create()
        fake_llm.behavior = Behavior(tokens=["Hello."])
        third = await Runner.run(agent, "Hi", conversation_id=conversation.id)
        fake_llm.behavior = Behavior(tokens=["Bye."])
        fourth = await Runner.run(agent, "Bye", conversation_id=conversation.id)
        await client.close()
        return [first, second, third, fourth, conversation]

    first, second, third, fourth, conversation = asyncio.run(runs())

    assert asked == ["Lyon"]
    assert [first.final_output, second.final_output, third.final_output, fourth.final_output] == [
        "Sunny in Lyon",
        "Yes.",
        "Hello.",
        "Bye.",
    ]
    requests = chat_requests(fake_llm)
    assert requests[-3]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Lyon?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "assistant", "content": "Sunny in Lyon"},
        {"role": "user", "content": "Sure?"},
    ]  # fmt: skip
    assert requests[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    # The tool loop resent its history (no server state): it continues its first response.
    calling, answering = (service.message(r.response_id) for r in first.raw_responses)
    assert (answering.parent_id, answering.conversation_id) == (calling.id, calling.conversation_id)
    assert [item["type"] for item in as_json(answering.input_items)] == ["function_call_output"]
    assert service.message(second.last_response_id).parent_id == answering.id
    assert service.message(fourth.last_response_id).conversation_id == int(conversation.id[5:])


def test_rest_chat_completions_and_responses_exchanges_read_back_as_items(service, fake_llm):
    client = service.client()
    rest_id = service.web.create_conversation("mixed")
    status, _ = service.web.request(
        "POST", f"/conversations/{rest_id}/messages", {"prompt": "from REST"}
    )
    assert status == 201
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "from REST"},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": "from chat"},
        ],
        extra_headers={"X-Conversation-Id": str(rest_id)},
    )

    response = client.responses.create(
        model=MODEL, input="from responses", conversation=f"conv_{rest_id}"
    )

    items = list(client.conversations.items.list(f"conv_{rest_id}", order="asc"))
    assert [(item.role, item.content[0].text) for item in items] == [
        ("user", "from REST"),
        ("assistant", ANSWER),
        ("user", "from chat"),
        ("assistant", ANSWER),
        ("user", "from responses"),
        ("assistant", response.output_text),
    ]
    assert chat_requests(fake_llm)[-1]["messages"] == [
        {"role": "user", "content": "from REST"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "from chat"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "from responses"},
    ]
